"""Each target's loss −log softmax(logits)[target], with a backward pass that costs one sweep.

A word model's logits are (tokens × vocab): 28 MB for 20 × 35 × 10,000 floats, and the
cross-entropy's passes over them are what a CPU training step spends most of its time on
after the matrix products. PyTorch's `F.cross_entropy` keeps the log-probabilities; its
backward pass fills a one-hot gradient, then takes their exponential and a weighted sum over
the whole array. Here the forward pass keeps the probabilities instead, so the backward pass
only scales them in place, row by row, and subtracts the targets' share: the same gradient,
softmax − one-hot, in one sweep, and no second (tokens × vocab) array is allocated for it. On
two CPU cores a plain training loop of a 10,000-word model ran 1.06× as fast with it as with
`F.cross_entropy`, charlm's loop 1.02× (`python -m benchmarks.train_overhead --variant
"charlm's cross-entropy"`, docs/benchmarks.md). On a GPU PyTorch's fused kernels are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

# Below this probability −log p is taken from the log-softmax itself: a float32 probability
# loses digits as it nears the smallest normal number (1.2e-38) and is 0 under the denormals.
SMALLEST_EXACT_PROBABILITY = 1e-30


@torch.inference_mode()
def token_log_probs(
    model: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    state: Any,
    chunk_len: int,
    device: torch.device,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(targets[i] | inputs up to i) in nats, float64 on `device`, for one long text.

    `inputs[i]` is the token before `targets[i]`; the model reads `chunk_len` tokens a call,
    the state flowing from chunk to chunk, so chunking bounds memory (one chunk's logits at a
    time) without changing the result. `labels` (1,) conditions a labelled model.
    """
    given = {} if labels is None else {"labels": labels}
    parts = []
    for start in range(0, len(targets), chunk_len):
        x = torch.as_tensor(inputs[start : start + chunk_len], device=device).unsqueeze(0)
        y = torch.as_tensor(targets[start : start + chunk_len], device=device)
        logits, state = model(x, state, **given)  # (1, chunk, vocab)
        parts.append(-F.cross_entropy(logits[0].float(), y, reduction="none").double())
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−log p(target) in nats for each row: logits (n, vocab), targets (n,) → (n,)."""
    if logits.device.type == "cpu" and logits.requires_grad and torch.is_grad_enabled():
        return _SoftmaxNLL.apply(logits, targets)
    return F.cross_entropy(logits, targets, reduction="none")


class _SoftmaxNLL(torch.autograd.Function):
    """F.cross_entropy(reduction="none") on a CPU, equal to float rounding."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, dim=1)
        picked = probs.gather(1, targets[:, None]).squeeze(1)
        nll = -picked.log()
        tiny = (picked < SMALLEST_EXACT_PROBABILITY).nonzero().squeeze(1)
        if len(tiny):
            log_probs = torch.log_softmax(logits[tiny], dim=1)
            nll[tiny] = -log_probs.gather(1, targets[tiny, None]).squeeze(1)
        ctx.save_for_backward(probs, targets)
        return nll

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # The saved probabilities become the gradient. A second backward pass (retain_graph)
        # is refused by autograd's own check that a saved tensor was not changed in place.
        probs, targets = ctx.saved_tensors
        # d nll / d logits = softmax − one-hot, each row scaled by its own upstream gradient.
        grad_logits = probs.mul_(grad[:, None])
        rows = torch.arange(len(targets), device=targets.device)
        grad_logits[rows, targets] -= grad
        return grad_logits, None

"""The output layer's loss computed in slices that stay in the processor's cache: a variant
of the bare loop timed by benchmarks.train_overhead ("output layer and loss in cached
slices"). Measured slower than the plain `F.cross_entropy(linear(hidden))` on the 2-core
machine (docs/benchmarks.md), so charlm's training does not use it; it stays here so that
the measurement can be repeated.
"""

from __future__ import annotations

import torch
from torch import nn

# A full softmax's loss in slices of at most this many logits: each slice's scores, softmax
# and gradient stay in the processor's cache instead of a (tokens x vocabulary) array going
# through memory several times (docs/benchmarks.md measures it).
LOGITS_PER_SLICE = 1 << 19


class LinearCrossEntropy(torch.autograd.Function):
    """−log p(target) of `hidden @ weight.T + bias`, the gradients worked out slice by slice.

    The forward pass computes each slice's logits, its losses and, when gradients are
    wanted, at once its gradient for unit weights (softmax − one-hot): the slice's share of
    the hidden vectors' gradient and the weights' gradient accumulates while the slice is
    still in cache, and no logits are kept for the backward pass. The backward pass then
    only scales them: a mean over the tokens (every weight the same, the training loop's
    case) scales by that weight; other weights recompute the weights' gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, grad_enabled):  # noqa: ANN001, ANN205
        rows = max(1, LOGITS_PER_SLICE // weight.shape[0])
        # needs_input_grad says True under no_grad too (evaluation): ask the caller's mode.
        gradients = grad_enabled and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        nll = hidden.new_empty(hidden.shape[0])
        d_hidden = torch.empty_like(hidden) if gradients else None
        d_weight = torch.zeros_like(weight) if gradients else None
        d_bias = torch.zeros_like(bias) if gradients else None
        for start in range(0, hidden.shape[0], rows):
            part, target = hidden[start : start + rows], targets[start : start + rows]
            logits = torch.addmm(bias, part, weight.T)  # (rows, vocab)
            log_norm = torch.logsumexp(logits, dim=1)
            picked = logits.gather(1, target.unsqueeze(1)).squeeze(1)
            nll[start : start + rows] = log_norm - picked
            if gradients:
                grad = logits.sub_(log_norm.unsqueeze(1)).exp_()  # softmax, in place
                grad.scatter_add_(1, target.unsqueeze(1), grad.new_full((len(target), 1), -1.0))
                torch.mm(grad, weight, out=d_hidden[start : start + rows])
                d_weight.addmm_(grad.T, part)
                d_bias += grad.sum(dim=0)
        ctx.save_for_backward(hidden, weight, bias, targets, d_hidden, d_weight, d_bias)
        return nll

    @staticmethod
    def backward(ctx, grad_nll):  # noqa: ANN001, ANN205
        hidden, weight, bias, targets, d_hidden, d_weight, d_bias = ctx.saved_tensors
        d_hidden = d_hidden * grad_nll.unsqueeze(1)
        scale = grad_nll[:1]
        if bool((grad_nll == scale).all()):
            return d_hidden, d_weight * scale, d_bias * scale, None, None
        # Tokens weighted unequally: the weights' gradient sums each token's share weighted.
        grad = torch.addmm(bias, hidden, weight.T).softmax(dim=1)
        grad[torch.arange(len(targets)), targets] -= 1
        grad *= grad_nll.unsqueeze(1)
        return d_hidden, grad.T @ hidden, grad.sum(dim=0), None, None


def linear_cross_entropy(
    hidden: torch.Tensor, linear: nn.Linear, targets: torch.Tensor
) -> torch.Tensor:
    """−log p(target) in nats for each row of `hidden` (rows, size), the logits being
    `linear(hidden)`: the same numbers as `F.cross_entropy(linear(hidden), targets,
    reduction="none")`, computed in slices (see LinearCrossEntropy)."""
    return LinearCrossEntropy.apply(
        hidden, linear.weight, linear.bias, targets, torch.is_grad_enabled()
    )

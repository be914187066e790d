"""charlm's CPU cross-entropy gives PyTorch's losses and gradients, improbable targets too."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from charlm.models.losses import token_nll


def logits_and_targets(rows: int = 12, vocab: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=generator) * 4
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    # Two targets far below the rest: probabilities of about e^-200 and e^-90, where a float32
    # probability is zero or has lost its digits.
    logits[0, targets[0]] -= 200
    logits[1, targets[1]] -= 90
    return logits, targets


def loss_and_gradient(loss_fn, logits, targets, upstream):
    logits = logits.clone().requires_grad_()
    nll = loss_fn(logits, targets)
    (nll * upstream).sum().backward()
    return nll.detach(), logits.grad


def test_losses_and_gradients_equal_pytorchs():
    logits, targets = logits_and_targets()
    upstream = torch.rand(len(targets), generator=torch.Generator().manual_seed(1))
    upstream[3] = 0.0  # a masked position: no gradient from it
    ours = loss_and_gradient(token_nll, logits, targets, upstream)
    theirs = loss_and_gradient(
        lambda x, y: F.cross_entropy(x, y, reduction="none"), logits, targets, upstream
    )
    assert ours[0][0] > 190 and ours[0][1] > 80  # the improbable targets' losses are finite
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-6, atol=1e-7)
    assert not ours[1][3].any()


def test_without_gradients_it_is_pytorchs_own():
    logits, targets = logits_and_targets()
    with torch.no_grad():
        nll = token_nll(logits.requires_grad_(), targets)
    assert torch.equal(nll, F.cross_entropy(logits.detach(), targets, reduction="none"))


def test_a_second_backward_pass_is_refused():
    # The backward pass turns the saved probabilities into the gradient in place.
    logits, targets = logits_and_targets()
    loss = token_nll(logits.requires_grad_(), targets).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()

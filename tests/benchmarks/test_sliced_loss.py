"""The bare-loop variant's sliced loss computes the cross-entropy of the logits and its
gradients (benchmarks/sliced_loss.py): the variant changes the speed, not the arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from benchmarks import sliced_loss


@pytest.mark.parametrize("weighting", ["mean", "weighted"])
def test_the_sliced_loss_and_its_gradients_are_the_cross_entropy_of_the_logits(
    monkeypatch, weighting
):
    monkeypatch.setattr(sliced_loss, "LOGITS_PER_SLICE", 64)  # slices of 3 rows for 20 tokens
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 20)
    hidden = torch.randn(10, 6, requires_grad=True)
    targets = torch.randint(0, 20, (10,))
    weights = torch.rand(10) if weighting == "weighted" else torch.full((10,), 0.1)
    results = []
    for loss in (
        lambda: F.cross_entropy(linear(hidden), targets, reduction="none"),
        lambda: sliced_loss.linear_cross_entropy(hidden, linear, targets),
    ):
        hidden.grad, linear.weight.grad, linear.bias.grad = None, None, None
        nll = loss()
        (nll * weights).sum().backward()
        results.append([nll.detach(), hidden.grad, linear.weight.grad, linear.bias.grad])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)
    with torch.no_grad():  # evaluation: the losses alone
        torch.testing.assert_close(
            sliced_loss.linear_cross_entropy(hidden, linear, targets), results[0][0]
        )

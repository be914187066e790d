"""Gradient-norm clipping, g ← min(1, θ/‖g‖)·g: by itself, or inside fused Adam's step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from charlm.training.schedules import build_optimizer, clip_gradients

# The CPU everywhere; a GPU's fused Adam too where there is one (a GPU session runs it).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _model_with_gradients(seed: int = 0, device: str = "cpu") -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(device)
    (model(torch.randn(4, 6, device=device)) ** 2).sum().mul(10).backward()
    return model


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_clip_gradients_returns_the_norm_and_clips_like_clip_grad_norm_(name):
    ours, plain = _model_with_gradients(), _model_with_gradients()
    optimizer = build_optimizer(ours.parameters(), name, lr=0.1)
    expected = nn.utils.clip_grad_norm_(plain.parameters(), 0.5)
    norm = clip_gradients(optimizer, ours.parameters(), 0.5, in_step=False)
    assert norm.item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() > 0.5  # the clipping was needed
    for mine, theirs in zip(ours.parameters(), plain.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_adam_takes_the_clipping_into_its_step(device):
    ours, plain = _model_with_gradients(device=device), _model_with_gradients(device=device)
    optimizer = build_optimizer(ours.parameters(), "adam", lr=0.1)
    reference = torch.optim.Adam(plain.parameters(), lr=0.1)
    assert optimizer.defaults["fused"]
    raw = [p.grad.clone() for p in ours.parameters()]
    norm = clip_gradients(optimizer, ours.parameters(), 0.5)
    # The gradients are left as they are; the step divides them by ‖g‖/θ.
    for grad, kept in zip(raw, (p.grad for p in ours.parameters())):
        assert torch.equal(grad, kept)
    assert optimizer.grad_scale.item() == pytest.approx(norm.item() / 0.5, rel=1e-5)
    nn.utils.clip_grad_norm_(plain.parameters(), 0.5)
    optimizer.step()
    reference.step()
    for mine, theirs in zip(ours.parameters(), plain.parameters()):
        torch.testing.assert_close(mine, theirs)


def test_a_gradient_under_the_threshold_is_not_scaled_up():
    model = _model_with_gradients()
    optimizer = build_optimizer(model.parameters(), "adam", lr=0.1)
    norm = clip_gradients(optimizer, model.parameters(), 1e6)
    assert norm.item() < 1e6 and optimizer.grad_scale.item() == 1.0

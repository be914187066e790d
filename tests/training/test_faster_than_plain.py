"""charlm's training step is faster than the plain formulation but computes the same thing:
its fused Adam with the clipping in its step, and its loss (model(x, targets=y)), give the
plain loop's losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from charlm.models import ModelConfig, build_model, detach_state
from charlm.training.schedules import build_optimizer, clip_gradients

VOCAB, BATCH, SEQ = 2000, 8, 40  # a word-sized output layer, where fused Adam helps most
CLIP = 0.05  # under the gradient's norm (0.06–0.07) at every step: the clipping is tested too


@pytest.mark.slow  # 100 training steps of each loop
def test_losses_equal_the_plain_loop_over_100_steps():
    torch.manual_seed(0)
    config = ModelConfig(VOCAB, embed_size=16, hidden_size=16, num_layers=2, dropout=0.0)
    ours, plain = build_model(config), build_model(config)
    plain.load_state_dict(ours.state_dict())
    ours_optimizer = build_optimizer(ours.parameters(), "adam", lr=2e-3)
    assert ours_optimizer.defaults["fused"]
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=2e-3)
    ids = torch.randint(
        0, VOCAB, (BATCH, 100 * SEQ + 1), generator=torch.Generator().manual_seed(1)
    )
    ours_state = plain_state = None
    clipped = 0
    for step in range(100):
        x, y = ids[:, step * SEQ : (step + 1) * SEQ], ids[:, step * SEQ + 1 : (step + 1) * SEQ + 1]
        nll, ours_state = ours(x, ours_state, targets=y)
        ours_optimizer.zero_grad(set_to_none=True)
        nll.mean().backward()
        norm = clip_gradients(ours_optimizer, ours.parameters(), CLIP)
        ours_optimizer.step()
        logits, plain_state = plain(x, plain_state)
        plain_loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        plain_optimizer.zero_grad(set_to_none=True)
        plain_loss.backward()
        plain_norm = nn.utils.clip_grad_norm_(plain.parameters(), CLIP)
        plain_optimizer.step()
        ours_state, plain_state = detach_state(ours_state), detach_state(plain_state)
        assert abs(nll.mean().item() - plain_loss.item()) < 1e-5, step
        assert abs(norm.item() - plain_norm.item()) < 1e-4 * plain_norm.item(), step
        clipped += plain_norm.item() > CLIP
    assert clipped == 100

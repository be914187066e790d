"""Optimizers, gradient clipping and learning-rate schedules.

    lr(step) = lr · warm-up(step) · shape(progress)

warm-up rises linearly from lr/warmup to lr over the first `warmup` steps. The shape is 1 for
`constant`; for `cosine` it falls from 1 to `min_lr_ratio` along half a cosine as the run's
progress goes from 0 to 1 — progress in steps, or in training time when the run has a
`--max-time` deadline, so the schedule ends exactly at the deadline; for `plateau` it is
multiplied by `plateau_factor` each time validation perplexity has not improved for
`plateau_patience` evaluations in a row; for `step` it is multiplied by `decay_factor` once
per epoch after epoch `decay_start` (Zaremba et al. 2014: lr 1, halved each epoch after the
4th) — epochs of the run, or under a deadline equal shares of the deadline, one per epoch.

A schedule is a small object with JSON state, so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from charlm.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "plateau", "step")


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter] | Iterable[dict],
    name: str,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam, AdamW (decoupled weight decay) or SGD with momentum, over parameters or
    parameter groups.

    Adam and AdamW use PyTorch's fused kernel (one pass over each parameter instead of
    several) where it runs, on the CPU and CUDA: the same update, measurably faster for big
    embedding and output matrices (docs/benchmarks.md).
    """
    parameters = list(parameters)
    if name in ("adam", "adamw"):
        kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return kind(parameters, lr=lr, weight_decay=weight_decay, fused=_fusable(parameters))
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _fusable(parameters: list) -> bool | None:
    """True where PyTorch's fused Adam runs: float parameters on the CPU or CUDA. The
    parameters may come in groups (dicts with "params": the discriminative rates)."""
    tensors = [
        tensor
        for item in parameters
        for tensor in (item["params"] if isinstance(item, dict) else [item])
    ]
    fits = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in tensors)
    return True if tensors and fits else None


def clip_gradients(
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.nn.Parameter],
    max_norm: float,
    *,
    in_step: bool = True,
) -> torch.Tensor:
    """g ← min(1, θ/‖g‖)·g over all gradients together; returns ‖g‖ before the clipping.

    Fused Adam reads each gradient once anyway and divides it by `grad_scale` as it does (the
    attribute through which PyTorch's GradScaler unscales gradients in the same kernel), so
    with `in_step` (the caller runs no GradScaler, which would set `grad_scale` itself) the
    factor is left to that step: g / max(1, ‖g‖/θ), one pass over every gradient fewer. The
    same update to float rounding; in a plain loop of a 10,000-word model, 1.01–1.05× the
    speed of fused Adam after `clip_grad_norm_` (docs/benchmarks.md).
    """
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    fused = all(group.get("fused") for group in optimizer.param_groups)
    if in_step and fused and grads:
        # clip_grad_norm_ multiplies by θ/(‖g‖ + 1e-6), clamped at 1: divide by its inverse.
        optimizer.grad_scale = torch.clamp((norm + 1e-6) / max_norm, min=1.0)
    else:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


class LRSchedule:
    """The learning rate for each step; `on_eval` feeds reduce-on-plateau."""

    def __init__(
        self,
        name: str,
        lr: float,
        *,
        warmup: int = 0,
        min_lr_ratio: float = 0.1,
        plateau_factor: float = 0.5,
        plateau_patience: int = 1,
        decay_factor: float = 0.5,
        decay_start: int = 4,
    ) -> None:
        if name not in SCHEDULES:
            raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
        self.name = name
        self.lr = lr
        self.warmup = warmup
        self.min_lr_ratio = min_lr_ratio
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.decay_factor = decay_factor
        self.decay_start = decay_start
        self.factor = 1.0  # what reduce-on-plateau has multiplied the rate by so far
        self.best = math.inf
        self.bad_evals = 0

    def lr_at(self, step: int, progress: float, epoch: int = 1) -> float:
        """The rate for optimizer step `step` (1-based) in epoch `epoch` (1-based), with
        `progress` ∈ [0, 1] of the run done."""
        rate = self.lr
        if self.warmup and step <= self.warmup:
            rate *= step / self.warmup
        if self.name == "cosine":
            p = min(1.0, max(0.0, progress))
            shape = 0.5 * (1.0 + math.cos(math.pi * p))
            rate *= self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape
        elif self.name == "plateau":
            rate *= self.factor
        elif self.name == "step":
            rate *= self.decay_factor ** max(0, epoch - self.decay_start)
        return rate

    def on_eval(self, val_perplexity: float) -> bool:
        """Record a validation result; True when the rate was just reduced."""
        if self.name != "plateau":
            return False
        if val_perplexity < self.best:
            self.best, self.bad_evals = val_perplexity, 0
            return False
        self.bad_evals += 1
        if self.bad_evals < self.plateau_patience:
            return False
        self.factor *= self.plateau_factor
        self.bad_evals = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        best = self.best if math.isfinite(self.best) else None  # JSON has no infinity
        return {"factor": self.factor, "best": best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.factor = float(state["factor"])
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.bad_evals = int(state["bad_evals"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float, trainable: int | None = None) -> None:
    """Set every group's rate: `lr` times its `lr_scale` (discriminative rates); with
    `trainable`, only that many groups from the top learn, the rest are frozen at rate 0."""
    for depth, group in enumerate(reversed(optimizer.param_groups)):
        frozen = trainable is not None and depth >= trainable
        group["lr"] = 0.0 if frozen else lr * group.get("lr_scale", 1.0)


def discriminative_groups(
    layers: list[list[torch.nn.Parameter]], factor: float
) -> list[dict[str, Any]]:
    """Parameter groups for layers listed bottom to top, each at 1/`factor` of the rate of
    the layer above it (ULMFiT: lower layers hold more general features, so change less)."""
    top = len(layers) - 1
    # A layer without parameters of its own (a one-hot input, a tied embedding) keeps its
    # place in the count but not a group: an optimizer refuses empty ones.
    return [{"params": ps, "lr_scale": factor ** -(top - i)} for i, ps in enumerate(layers) if ps]

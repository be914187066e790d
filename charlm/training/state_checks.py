"""Every part of a saved training state is checked before a resumed run takes its first step.

A checkpoint may come from elsewhere or be damaged, and what PyTorch does with a bad value is
rarely an error at the moment it is loaded: a moment buffer of the wrong shape fails inside
the optimizer step, a string step count at the first `+= 1`, NaN betas make every weight NaN.
So each value is compared with what this run would have saved itself: the counters by their
type and range, the optimizer's settings with a fresh optimizer's, its moments with the
parameters' shapes, the hidden state with the model's, the random state with the generator's.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import torch

from charlm.checkpoint import TrainingState
from charlm.errors import CheckpointError
from charlm.models import RNNLM
from charlm.training.config import RunCounters

# The optimizer state each parameter has once it has taken a step.
_MOMENTS = {
    "Adam": {"step", "exp_avg", "exp_avg_sq"},
    "AdamW": {"step", "exp_avg", "exp_avg_sq"},
    "SGD": {"momentum_buffer"},
}
_UNIT_INTERVAL = {"betas", "momentum", "dampening"}


def check_training_state(
    state: TrainingState,
    model: RNNLM,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    short_batches: bool = False,
) -> None:
    """Raise CheckpointError naming the first value of `state` this run could not have saved.
    `short_batches`: the carried state may have fewer rows than `batch_size` (examples)."""
    meta, tensors = state.meta, dict(state.tensors)
    try:
        problem = (
            _counters(meta)
            or recorder_problem(meta)
            or _schedule(meta.get("schedule"))
            or _optimizer(meta.get("optimizer"), tensors, optimizer)
            or _hidden(tensors, model, batch_size, short_batches)
            or _rng(tensors)
            or _scaler(meta.get("scaler"))
            or (f"unexpected tensors {sorted(tensors)[:3]}" if tensors else None)
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a structure gone wrong
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise CheckpointError(
            f"the saved training state is damaged ({problem}); it cannot be resumed: start a "
            "new run from the weights with --init-from"
        )


def _number(value: Any, low: float = -math.inf, whole: bool = False) -> bool:
    """Whether `value` is a finite number (a whole one if `whole`) of at least `low`."""
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        return False
    return math.isfinite(value) and value >= low


def _counters(meta: dict[str, Any]) -> str | None:
    for f in fields(RunCounters):
        value, kind = meta.get(f.name), str(f.type)
        if kind.endswith("| None") and value is None:
            continue
        ok = (
            isinstance(value, bool)
            if kind == "bool"
            else _number(value, low=0, whole=kind.startswith("int"))
        )
        if not ok:
            return f"{f.name} is {value!r}"
    return None


# The meters' second entry sums gradient norms: +inf once a step's norm overflowed, which
# clipping survives and the run goes on from (charlm saves such a meter; it must resume).
GRAD_SUM = 1


def recorder_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the saved loss meters of `meta`, or None."""
    for name, length in (("epoch_meter", 4), ("window", 4), ("window_start", 2)):
        values = meta.get(name)
        if not isinstance(values, list) or len(values) != length:
            return f"{name} is {values!r}"
        overflowed = name != "window_start" and values[GRAD_SUM] == math.inf
        if not all(
            _number(v, low=0) or (overflowed and i == GRAD_SUM) for i, v in enumerate(values)
        ):
            return f"{name} holds {values!r}"
    return None


def _schedule(schedule: Any) -> str | None:
    if not isinstance(schedule, dict):
        return f"schedule is {schedule!r}"
    best = schedule.get("best")
    if not _number(schedule.get("factor"), low=0) or schedule["factor"] == 0:
        return f"schedule factor is {schedule.get('factor')!r}"
    if not (best is None or _number(best)) or not _number(schedule.get("bad_evals"), 0, True):
        return f"schedule is {schedule!r}"
    return None


def _optimizer(saved: Any, tensors: dict, optimizer: torch.optim.Optimizer) -> str | None:
    fresh = optimizer.state_dict()["param_groups"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(fresh):
        return "the optimizer has no parameter groups, or not this model's"
    for number, (group, expected) in enumerate(zip(groups, fresh, strict=True), start=1):
        # Gradual unfreezing holds the lower groups at rate 0 for a while; the top one, the
        # output layer, always learns: a rate of 0 there is damage.
        problem = _group(group, expected, frozen_ok=number < len(groups))
        if problem:
            return problem
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    values: dict[int, dict[str, Any]] = {}
    for index, entries in saved["state"].items():
        values.setdefault(int(index), {}).update(entries)
    for name in [n for n in tensors if n.startswith("optimizer.")]:
        _, index, key = name.split(".", 2)
        values.setdefault(int(index), {})[key] = tensors.pop(name)
    wanted = _MOMENTS.get(type(optimizer).__name__)
    for index, entries in values.items():
        if not 0 <= index < len(parameters):
            return f"optimizer state for parameter {index}, which the model does not have"
        if wanted is not None and set(entries) != wanted:
            return f"optimizer state {sorted(entries)} for parameter {index}"
        for key, value in entries.items():
            problem = _moment(f"optimizer.{index}.{key}", value, parameters[index], key)
            if problem:
                return problem
    return None


def _group(group: Any, expected: dict[str, Any], frozen_ok: bool = False) -> str | None:
    if not isinstance(group, dict) or group.get("params") != expected["params"]:
        return "the optimizer's parameters are not this model's"
    for key, value in group.items():
        like = expected.get(key)
        if key == "params" or (like is None and value is None):
            continue
        numbers = value if isinstance(value, list) else [value]
        if isinstance(like, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) and (like is None or isinstance(like, bool))
        else:
            ok = all(_number(v, low=0) for v in numbers) and (
                not isinstance(like, (list, tuple)) or len(numbers) == len(like)
            )
        if ok and key in _UNIT_INTERVAL:
            ok = all(v < 1 for v in numbers)
        if not ok or (key == "lr" and value == 0 and not frozen_ok):
            return f"optimizer setting {key} is {value!r}"
    return None


def _moment(name: str, value: Any, parameter: torch.Tensor, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        return None if _number(value, low=0) else f"{name} is {value!r}"
    shape = () if key == "step" else tuple(parameter.shape)
    if tuple(value.shape) != shape and not (key == "step" and value.numel() == 1):
        return f"{name} has shape {tuple(value.shape)}, the parameter needs {shape}"
    if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
        return f"{name} holds values that are not finite numbers"
    return None


def _hidden(tensors: dict, model: RNNLM, batch_size: int, short: bool = False) -> str | None:
    parts = [tensors.pop(f"hidden.{i}") for i in range(2) if f"hidden.{i}" in tensors]
    if not parts:
        return None
    rows = parts[0].shape[1] if short and parts[0].dim() == 3 else batch_size
    expected = model.begin_state(
        rows if 1 <= rows <= batch_size else batch_size, torch.device("cpu")
    )
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    shapes, needed = [tuple(t.shape) for t in parts], [tuple(t.shape) for t in expected]
    if shapes != needed:
        return f"the hidden state has shapes {shapes}, this model needs {needed}"
    if not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in parts):
        return "the hidden state holds values that are not finite numbers"
    return None


def _rng(tensors: dict) -> str | None:
    for name, size in (("rng.torch", torch.get_rng_state().numel()), ("rng.cuda", None)):
        value = tensors.pop(name, None)
        if value is None:
            continue
        if value.dtype != torch.uint8 or value.dim() != 1 or size not in (None, value.numel()):
            return f"{name} is not a random generator's state"
    return None


def _scaler(scaler: Any) -> str | None:
    if scaler == {}:
        return None
    if not isinstance(scaler, dict) or not all(_number(v, low=0) for v in scaler.values()):
        return f"the loss scaler's state is {scaler!r}"
    return None

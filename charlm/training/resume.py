"""What a run needs beyond the weights to continue exactly where it stopped.

A `TrainingState` is JSON (`meta`: counters, iterator position, schedule, early stopping, the
optimizer's hyper-parameters, the loss scaler) plus named tensors (`tensors`: the optimizer's
moment buffers, the random-number generator states, the carried hidden state). The checkpoint
stores the tensors in safetensors and the JSON in config.json: nothing is pickled.
"""

from __future__ import annotations

from typing import Any

import torch

from charlm.models import State

TRAINING_STATE_VERSION = 1


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict]:
    """The optimizer's state split into JSON and tensors named `optimizer.<param>.<key>`."""
    full = optimizer.state_dict()
    json_state: dict[str, dict[str, Any]] = {}
    tensors = {}
    for index, values in full["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                json_state.setdefault(str(index), {})[key] = value
    return {"param_groups": full["param_groups"], "state": json_state}, tensors


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for index, values in meta["state"].items():
        state.setdefault(int(index), {}).update(values)
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    # load_state_dict moves the buffers to each parameter's device and dtype.
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """The global generators dropout draws from (torch's CPU one, and the GPU's when used)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"].to(torch.uint8), device)


def state_tensors(state: State | None) -> dict[str, torch.Tensor]:
    """The carried hidden state (an RNN/GRU tensor or an LSTM pair) as named tensors."""
    if state is None:
        return {}
    parts = (state,) if isinstance(state, torch.Tensor) else tuple(state)
    return {f"hidden.{i}": s.detach().to("cpu").contiguous() for i, s in enumerate(parts)}


def restore_hidden(tensors: dict[str, torch.Tensor], device: torch.device) -> State | None:
    parts = [tensors[f"hidden.{i}"].to(device) for i in range(2) if f"hidden.{i}" in tensors]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else tuple(parts)

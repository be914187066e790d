"""What a run needs beyond the weights to continue exactly where it stopped.

A `TrainingState` is JSON (`meta`: counters, iterator position, schedule, early stopping, the
optimizer's hyper-parameters, the loss scaler) plus named tensors (`tensors`: the optimizer's
moment buffers, the random-number generator states, the carried hidden state). The checkpoint
stores the tensors in safetensors and the JSON in config.json: nothing is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from charlm.checkpoint import Checkpoint
from charlm.corpus.encodings import canonical_encoding
from charlm.data import DataOptions
from charlm.errors import CharlmError, CheckpointError, ConfigError
from charlm.models import State

TRAINING_STATE_VERSION = 1
_LISTED = 5  # books named one by one when a resumed run says what it reads


def resumed_inputs(
    base: Checkpoint, book: Any, data: DataOptions, say: Callable[[str], None]
) -> tuple[Any, DataOptions]:
    """The books and data options a resumed run was started with, as far as they are safe.

    A checkpoint may come from elsewhere, so what it names is taken literally: its books and
    validation and test files must be files that exist here (no directory, glob or catalogue
    name is expanded or downloaded), and the run says which it reads. Where the token cache
    and the corpora live, and whether to cache, are this run's (`data`, from the command line
    and the environment), never the checkpoint's. Books given with --resume replace its own.
    """
    saved = base.config.get("data") or {}
    options = saved.get("options") if isinstance(saved, dict) else None
    if isinstance(options, dict):
        try:
            stored = DataOptions.from_dict(options)
            stored.splits()
            if stored.encoding is not None:
                canonical_encoding(stored.encoding)
        except (CharlmError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{base.path}: the saved data options are damaged ({exc})"
            ) from exc
        data = replace(
            stored,
            val_file=_stored_file(base, stored.val_file, "validation file"),
            test_file=_stored_file(base, stored.test_file, "test file"),
            cache_dir=data.cache_dir,
            corpus_dir=data.corpus_dir,
            use_cache=data.use_cache,
        )
    if not book:
        # A run of examples may have read a directory (one file or subdirectory a label).
        book = [
            _stored_file(base, path, "book", directory_ok=data.example_unit is not None)
            for path in _saved_inputs(saved)
        ]
        files = [*book, *(p for p in (data.val_file, data.test_file) if p)]
        if files:
            more = f" and {len(files) - _LISTED} more" if len(files) > _LISTED else ""
            say(f"resuming {base.path}: it reads {', '.join(files[:_LISTED])}{more}")
    return book, data


def _saved_inputs(saved: Any) -> list[Any]:
    """What the run read: the files or directories of examples it was given, else its books."""
    if not isinstance(saved, dict):
        return []
    inputs = saved.get("inputs")
    if isinstance(inputs, list):
        return inputs
    books = saved.get("books")
    return [
        entry.get("path") if isinstance(entry, dict) else None
        for entry in (books if isinstance(books, list) else [])
    ]


def _stored_file(base: Checkpoint, path: Any, what: str, directory_ok: bool = False) -> str | None:
    """A file named by the checkpoint: a path to a regular file that exists (or, where
    `directory_ok`, a directory), or nothing."""
    if path is None:
        return None
    found = isinstance(path, str) and (
        os.path.isfile(path) or (directory_ok and os.path.isdir(path))
    )
    if not found:
        remedy = (
            f"give the books again: charlm train --resume {base.path} BOOK..."
            if what == "book"
            else f"put it back, or start a new run: charlm train BOOK --init-from {base.path}"
        )
        raise ConfigError(
            f"{base.path} names {path!r} as its {what}, which is not a file here (a checkpoint "
            f"names files, never globs or catalogue names, nor directories except those of "
            f"examples); {remedy}"
        )
    return path


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

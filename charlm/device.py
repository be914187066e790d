"""Choosing the torch device."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from charlm.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; asking for a missing one is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use cpu")
    if name == "mps" and not _mps_available():
        raise ConfigError("--device mps was asked for but Apple's MPS is not available; use cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; use {', '.join(DEVICE_CHOICES)}") from exc


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads for tensor maths (None leaves PyTorch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def mixed_precision(
    precision: str, device: torch.device
) -> tuple[Callable[[], AbstractContextManager], torch.amp.GradScaler]:
    """An autocast context factory and a gradient scaler for `precision` (fp32, bf16, fp16)."""
    # bf16 autocast also runs on CPUs (fast where they have bf16 instructions); oneDNN has no
    # fp16 LSTM on CPU, so fp16 stays a GPU option.
    if (precision == "fp16" and device.type != "cuda") or (
        precision == "bf16" and device.type not in ("cuda", "cpu")
    ):
        raise ConfigError(f"--precision {precision} needs a CUDA GPU; use fp32 or bf16")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16_lstm():
        raise ConfigError(
            "--precision bf16: this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX): "
            "PyTorch's LSTM has no bf16 kernel here and the other cells run slower than in "
            "fp32; use fp32"
        )
    # fp16 needs its loss scaled up so that small gradients do not round to zero; bf16 has
    # fp32's range and does not.
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext, scaler
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def cpu_has_bf16_lstm() -> bool:
    """Whether an LSTM runs under bfloat16 autocast on this CPU: oneDNN builds its bf16 LSTM
    only for CPUs with bfloat16 instructions, and raises elsewhere (e.g. on AVX2 machines)."""
    layer = torch.nn.LSTM(1, 1)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            layer(torch.zeros(1, 1, 1))
    except RuntimeError:
        return False
    return True


# How PyTorch words an allocation failure: CUDA, Apple's MPS, and the CPU allocator.
_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is a failed memory allocation (on any device)."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(p in str(exc).lower() for p in _OOM_PHRASES)


def out_of_memory_message(exc: BaseException, advice: str) -> str:
    """One line about an allocation failure: how much was asked for, and what to change."""
    asked = re.search(r"(?:tried to allocate|allocate)\s+([\d.]+\s*\w+)", str(exc), re.IGNORECASE)
    where = "the GPU" if isinstance(exc, torch.cuda.OutOfMemoryError) else "the device"
    size = f" (it asked for {asked.group(1)} more)" if asked else ""
    return f"{where} ran out of memory{size}; {advice}"

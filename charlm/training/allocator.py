"""Keep the C allocator from giving a training step's big buffers back to the system.

glibc's malloc serves a request above its mmap threshold (128 KiB at start, raised as such
blocks are freed, at most 32 MiB) with fresh pages from the kernel, and unmaps them again on
free. A training step allocates and frees the same large buffers every time (a word model's
logits alone are batch · seq · vocab floats: 28 MB for 20 × 35 × 10,000; oneDNN's workspace
for one LSTM layer of 2 × 256 at 32 × 100 tokens is 51 MB), so every step page-faults them
back in, and how often depends on the process's history. Serving every block from the heap
(no mmap at all: no threshold reaches 51 MB), and letting the heap keep some free memory,
reuses the pages instead: on two CPU cores a 2 × 256 character LSTM then trained 1.33× faster
than with glibc's defaults and a 10,000-word model 1.25× (docs/benchmarks.md). The word
tokenizer's encoder, whose blocks allocate arrays of megabytes each, measured about 5% faster
with it too (within run-to-run noise).

A block freed in the middle of the heap is not handed back until the heap's free top passes
the trim threshold, so a process that trains keeps what its steps freed: its peak memory grew
by 4–9% on those two models and by a third on a 2 × 512 LSTM. Where a step's logits alone
pass the largest threshold, blocks that large, of other sizes again when the validation text
is scored, fragment a heap that never unmaps them: the default word model of WikiText-2
(33,156 words at 32 × 100, 424 MB of logits) peaked at 3.17 GB without mmap instead of 1.70,
for a gain that is small where the logits are the big blocks (the 10,000-word model: 1.02×
over the thresholds alone). Such models keep the mmap (`tuning_for`).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536  # glibc's own: mmap allowed
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory the heap keeps before returning it

# (mallopt parameter, value) pairs. The first tuning keeps blocks up to the threshold's maximum
# in the heap; the blocks above it (oneDNN's LSTM workspace) are still mapped and unmapped at
# every step, which the second stops. benchmarks/malloc.py measures each against the other.
_THRESHOLDS = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
HEAP_UP_TO_THRESHOLD = (*_THRESHOLDS, (M_MMAP_MAX, DEFAULT_MMAP_MAX))
TUNING = (*_THRESHOLDS, (M_MMAP_MAX, 0))


def glibc() -> ctypes.CDLL | None:
    """The C library this process already uses, when it is glibc; else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # musl has a mallopt too, which does nothing: only glibc's is worth calling.
    return libc if hasattr(libc, "gnu_get_libc_version") else None


Settings = tuple[tuple[int, int], ...]


def tuning_for(step_logits_bytes: int) -> Settings:
    """Every block from the heap (TUNING), unless a training step's logits alone pass the
    largest mmap threshold: then blocks above it keep being mapped (see above)."""
    return TUNING if step_logits_bytes <= MMAP_THRESHOLD else HEAP_UP_TO_THRESHOLD


def keep_freed_memory(settings: Settings = HEAP_UP_TO_THRESHOLD) -> bool:
    """Tune glibc's malloc for a training loop (process-wide, like the thread count): by
    default the thresholds alone, which suit any process; a training loop passes what
    `tuning_for` its model says.

    Returns whether it applied: False where the C library is not glibc (macOS, Windows,
    musl), which then keeps its own behaviour.
    """
    libc = glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Each call, not short-circuited: mallopt returns 0 for a value glibc refuses.
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])

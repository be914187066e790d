"""Data-parallel training across processes, launched by `torchrun`.

torchrun starts one process per GPU (or CPU worker) and sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address. Every process runs the same loop on the same global batches; rank r
keeps rows [r·B/W, (r+1)·B/W) of each (B, T) batch. Because a sequential batch's row b always
continues row b of the previous batch, each rank's rows form whole streams and its carried
hidden state stays correct. DistributedDataParallel averages the gradients, so a step equals
a single-process step on the whole batch (without dropout, whose masks are drawn per rank).
Only rank 0 logs and saves.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charlm.errors import ConfigError
from charlm.models import State


@dataclass
class DistContext:
    """Where this process sits among `world_size` data-parallel workers."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous rows of a (batch, ...) tensor."""
        if not self.enabled:
            return batch
        rows = batch.shape[0] // self.world_size
        return batch[self.rank * rows : (self.rank + 1) * rows]

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ConfigError(
                f"--batch-size {batch_size} must be a multiple of the {self.world_size} "
                "processes, so each takes the same number of streams"
            )

    def all_max(self, values: list[float], device: torch.device) -> list[float]:
        """The element-wise maximum over ranks (every rank must call it at the same step)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def all_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return tensor
        tensor = tensor.detach().clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor / self.world_size

    def gather_state(self, state: State | None) -> State | None:
        """The whole batch's carried state from every rank's rows (for a checkpoint)."""
        if not self.enabled or state is None:
            return state
        if isinstance(state, tuple):
            return tuple(self.gather_state(s) for s in state)
        parts = [torch.empty_like(state) for _ in range(self.world_size)]
        dist.all_gather(parts, state.contiguous())
        return torch.cat(parts, dim=1)  # (layers, batch, hidden): rows are dimension 1

    def shard_state(self, state: State | None) -> State | None:
        """This rank's rows of a whole-batch carried state (after a resume)."""
        if not self.enabled or state is None:
            return state
        if isinstance(state, tuple):
            return tuple(self.shard_state(s) for s in state)
        rows = state.shape[1] // self.world_size
        return state[:, self.rank * rows : (self.rank + 1) * rows].contiguous()


# What torchrun sets for every worker; the rendezvous needs all of them.
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def from_environment() -> DistContext:
    """The context torchrun describes in the environment; one process when it did not."""
    world_size = _whole_number("WORLD_SIZE", "1", low=1)
    if world_size == 1:
        return DistContext()
    missing = [name for name in LAUNCH_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world_size} is set but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: start several processes with "
            "torchrun (it sets them all), or unset WORLD_SIZE to train in one process"
        )
    rank = _whole_number("RANK", "0", low=0)
    if rank >= world_size:
        raise ConfigError(f"RANK={rank} must be below WORLD_SIZE={world_size}")
    return DistContext(rank, world_size, _whole_number("LOCAL_RANK", "0", low=0))


def _whole_number(name: str, default: str, low: int) -> int:
    text = os.environ.get(name, default).strip()
    if not text.isdigit() or int(text) < low:
        raise ConfigError(
            f"{name}={text!r} in the environment is not a whole number of at least {low}; "
            "torchrun sets it, so unset it or launch with torchrun"
        )
    return int(text)


@contextlib.contextmanager
def process_group(context: DistContext, device: torch.device) -> Iterator[torch.device]:
    """Join the process group (NCCL on GPUs, gloo on CPUs) for the block, with this rank's
    device, and leave it however the block ends."""
    if not context.enabled:
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    # DistributedDataParallel imports torch._dynamo. Imported once a process group exists,
    # it keeps references to the group (torch 2.x), so destroy_process_group cannot free it:
    # gloo's threads then live until the interpreter exits and race the C++ runtime's own
    # teardown, and now and then a rank aborts with "terminate called without an active
    # exception" (see benchmarks/ddp_soak.py). Imported first, it holds nothing.
    importlib.import_module("torch._dynamo")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    except BaseException:
        # No barrier: the other ranks may be stopped anywhere. Still leave the group, or
        # this process aborts at exit.
        dist.destroy_process_group()
        raise
    # Leave together: a rank that tears gloo down while another still talks to it aborts.
    dist.barrier()
    dist.destroy_process_group()

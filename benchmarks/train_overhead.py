"""Training overhead and compute efficiency: charlm's training loop against a bare loop.

    python -m benchmarks.train_overhead                  # configs a, b, c at 1 and all threads
    python -m benchmarks.train_overhead --configs a --threads 2 --repeats 7
    python -m benchmarks.train_overhead --variants       # also try layouts, optimizers, oneDNN
    python -m benchmarks.train_overhead --quick          # a tiny model: a smoke run for CI
    python -m benchmarks.train_overhead --precision bf16 # both in bf16, and the bare loop in fp32
    python -m benchmarks.train_overhead --device cuda --configs a,b,c,d  # cuDNN on a GPU

For each configuration, in one process and alternating, this runs

* charlm: `charlm.training.train` as `charlm train` runs it — the sequential iterator over a
  token array, the carried and detached state, the learning-rate schedule, the metrics log
  written to a file every 10 steps, the Rich progress display (drawing to /dev/null) and the
  stop checks;
* bare: the same network written out here — embedding → nn.LSTM → linear → cross-entropy →
  backward → clip → Adam — over one pre-cut tensor, with nothing else in the loop;
* on a CPU in fp32, the same bare loop in a fresh process of its own, as a user's script runs
  it. In the shared process the bare loop runs under the malloc tuning that charlm's first run
  applied process-wide (charlm/training/allocator.py), so the first ratio compares the loops
  alone; the second is what a user who writes the loop gets against `charlm train`.

Both train with dropout 0, Adam at 2e-3 and clip 1 (charlm's Adam is PyTorch's fused one,
which also does the clipping's scaling, and its loss its own; the bare loop's Adam is the
default, after `clip_grad_norm_`, its loss `F.cross_entropy`). Throughput is tokens per
second between the end of the warm-up steps and the last step; the figure is the median of
the repeats and the ratio charlm / bare of the medians (target >= 0.95: the iterator,
logging and display cost under 5%). Token ids are random: speed does not depend on them.

Compute efficiency uses the standard count: 8·H·(I+H) FLOPs per LSTM layer per token forward,
2·H·V for the output layer, ×3 for forward plus backward; achieved GFLOP/s over the rate of a
large fp32 matrix product measured here at the same thread setting: the faster of `torch.mm`
(MKL) and oneDNN's matmul, since the LSTM kernels are oneDNN's.

With `--device cuda` both sides run on the GPU (cuDNN's LSTM), the clocks are read after
`torch.cuda.synchronize()`, and the rate is that of an 8192 × 8192 fp32 `torch.mm` on the
GPU (TF32 as PyTorch's defaults leave it: off). Configuration d is a GPU-sized one: Zaremba
et al.'s medium LSTM (2 × 650) over a 10,000-word vocabulary at batch 64.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.nn import functional as F

from benchmarks.common import (
    RESULTS_DIR,
    BenchmarkCommand,
    machine_info,
    matmul_rates,
    median,
    names_from,
    print_table,
    results_option,
    write_results,
)
from benchmarks.sliced_loss import linear_cross_entropy
from charlm.device import resolve_device
from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.models.losses import token_nll
from charlm.training import TrainConfig, train
from charlm.training.metrics_log import MetricsLog
from charlm.training.progress import RichReporter
from charlm.training.schedules import clip_gradients

RESULTS = RESULTS_DIR / "train_overhead.json"
LOG_EVERY = 10  # charlm's default; timing windows start and end on a metrics record


@dataclass(frozen=True)
class Shape:
    """One benchmark configuration: the network and the batch."""

    name: str
    vocab: int
    embed: int
    hidden: int
    layers: int
    batch: int
    seq: int
    steps: int  # timed steps per repeat (a multiple of LOG_EVERY)
    warmup: int = LOG_EVERY

    def forward_flops_per_token(self) -> int:
        """8·H·(I+H) per LSTM layer (four gates, a multiply and an add per weight) + 2·H·V."""
        flops = 0
        for layer in range(self.layers):
            inputs = self.embed if layer == 0 else self.hidden
            flops += 8 * self.hidden * (inputs + self.hidden)
        return flops + 2 * self.hidden * self.vocab

    def train_flops_per_token(self) -> int:
        return 3 * self.forward_flops_per_token()  # backward ≈ twice the forward

    @property
    def label(self) -> str:
        return (
            f"{self.name}: V={self.vocab} E={self.embed} {self.layers}x{self.hidden} "
            f"B={self.batch} T={self.seq}"
        )


CONFIGS = {
    "a": Shape("a", vocab=65, embed=64, hidden=256, layers=2, batch=32, seq=100, steps=40),
    "b": Shape("b", vocab=65, embed=64, hidden=512, layers=2, batch=64, seq=100, steps=20),
    "c": Shape("c", vocab=10_000, embed=200, hidden=200, layers=2, batch=20, seq=35, steps=60),
    # Larger, for a GPU: the medium LSTM of Zaremba et al. (2 × 650) at batch 64.
    "d": Shape("d", vocab=10_000, embed=650, hidden=650, layers=2, batch=64, seq=35, steps=40),
}
QUICK = Shape("quick", vocab=20, embed=8, hidden=16, layers=1, batch=4, seq=8, steps=10)
LR, CLIP = 2e-3, 1.0
CPU = torch.device("cpu")


def token_ids(shape: Shape) -> np.ndarray:
    """Enough random ids for every step of one epoch of the sequential iterator."""
    steps = shape.warmup + shape.steps + 1
    length = shape.batch * shape.seq * (steps + 1) + 1
    return np.random.default_rng(0).integers(0, shape.vocab, length, dtype=np.int64)


# ---- charlm's loop ---------------------------------------------------------------------


def clocks(device: torch.device = CPU) -> tuple[float, float]:
    """Wall time, and this process's CPU time, once `device` has finished what it was given.
    On a machine shared with other work the CPU time is the steadier measure of a one-thread
    run on the CPU (on an idle machine they agree); on a GPU only the wall time means much."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


def rates(tokens: int, start: tuple[float, float], end: tuple[float, float]) -> tuple:
    """Tokens per second of wall time and of CPU time between two `clocks()` readings."""
    return tokens / (end[0] - start[0]), tokens / (end[1] - start[1])


class TimedLog:
    """The real metrics log, plus the clocks when each record was written."""

    def __init__(self, path: Path, device: torch.device = CPU) -> None:
        self.log, self.device = MetricsLog(path), device
        self.times: dict[int, tuple[float, float]] = {}

    def write(self, record: dict[str, Any]) -> None:
        self.log.write(record)
        self.times[record["step"]] = clocks(self.device)


def charlm_run(
    shape: Shape,
    ids: np.ndarray,
    workdir: Path,
    precision: str = "fp32",
    device: torch.device = CPU,
) -> tuple[float, float]:
    """Tokens per second (wall, CPU) of `charlm.training.train` after the warm-up steps."""
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            shape.vocab,
            embed_size=shape.embed,
            hidden_size=shape.hidden,
            num_layers=shape.layers,
            dropout=0.0,
        )
    )
    config = TrainConfig(
        batch_size=shape.batch,
        seq_len=shape.seq,
        epochs=1,
        lr=LR,
        clip=CLIP,
        max_steps=shape.warmup + shape.steps,
        log_every=LOG_EVERY,
        precision=precision,
    )
    log = TimedLog(workdir / "metrics.jsonl", device)
    # The live display as a terminal shows it (a refresh thread, redrawn 4 times a second),
    # drawn into /dev/null.
    with open(os.devnull, "w") as sink:
        console = Console(file=sink, force_terminal=True, width=120)
        with RichReporter(console) as reporter:
            train(model, ids, None, config, device=device, reporter=reporter, metrics=log)
    end = shape.warmup + shape.steps
    return rates(shape.steps * shape.batch * shape.seq, log.times[shape.warmup], log.times[end])


# ---- the bare loop ---------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A change to the bare loop that keeps the model and its arithmetic the same."""

    name: str
    batch_first: bool = True  # False: time-major tensors, as the LSTM kernels want them
    optimizer: str = "default"  # "foreach" or "fused" Adam
    mkldnn: bool = True  # oneDNN kernels allowed
    compiled: bool = False  # torch.compile the forward pass
    output_chunks: int = 1  # >1: the output layer and loss over this many slices of the batch
    output: str = "linear"  # "sliced": benchmarks/sliced_loss.py; "conv1d": a 1x1 conv1d;
    # "charlm": charlm's own cross-entropy (charlm/models/losses.py)
    precision: str = "fp32"  # "bf16": autocast, as `charlm train --precision bf16` runs
    clip_in_step: bool = False  # fused Adam scales the gradients as it reads them


BARE = Variant("bare")
VARIANTS = [
    Variant("time-major tensors", batch_first=False),
    Variant("Adam foreach=True", optimizer="foreach"),
    Variant("Adam fused=True", optimizer="fused"),
    Variant("oneDNN off", mkldnn=False),
    Variant("torch.compile", compiled=True),
    Variant("output layer in 4 chunks", output_chunks=4),
    Variant("output layer and loss in cached slices", output="sliced"),
    Variant("output layer as a 1x1 conv1d (oneDNN)", output="conv1d"),
    Variant("sliced output layer and fused Adam", output="sliced", optimizer="fused"),
    Variant("charlm's cross-entropy", output="charlm"),
    Variant("fused Adam, clipping in its step", optimizer="fused", clip_in_step=True),
    # Not the same arithmetic: bfloat16 matrix products (AMX or AVX-512 BF16 on CPUs).
    Variant("bf16 autocast", precision="bf16"),
]


class BareLM(nn.Module):
    def __init__(self, shape: Shape, batch_first: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(shape.vocab, shape.embed)
        self.lstm = nn.LSTM(shape.embed, shape.hidden, shape.layers, batch_first=batch_first)
        self.head = nn.Linear(shape.hidden, shape.vocab)

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        h, state = self.lstm(self.embedding(x), state)
        return self.head(h), state

    def chunked_loss(
        self, x: torch.Tensor, y: torch.Tensor, state: Any, chunks: int
    ) -> tuple[torch.Tensor, Any]:
        """The same mean cross-entropy, with the output layer applied to one slice of the
        hidden vectors at a time: the (tokens × vocab) logits never exist all at once."""
        h, state = self.lstm(self.embedding(x), state)
        h, y = h.reshape(-1, h.shape[-1]), y.reshape(-1)
        total = sum(
            F.cross_entropy(self.head(part), target, reduction="sum")
            for part, target in zip(h.chunk(chunks), y.chunk(chunks))
        )
        return total / y.numel(), state

    def sliced_loss(self, x: torch.Tensor, y: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """The same mean cross-entropy through benchmarks/sliced_loss.py: logits,
        softmax and gradients slice by slice while each slice is in cache."""
        h, state = self.lstm(self.embedding(x), state)
        nll = linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.head, y.reshape(-1))
        return nll.mean(), state

    def conv_loss(self, x: torch.Tensor, y: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """The same mean cross-entropy with the output layer as a 1 x 1 convolution over
        time, which PyTorch runs on oneDNN rather than MKL's matrix product."""
        h, state = self.lstm(self.embedding(x), state)  # (batch, seq, hidden)
        weight = self.head.weight.unsqueeze(-1)  # (vocab, hidden, 1)
        logits = F.conv1d(h.transpose(1, 2), weight, self.head.bias)  # (batch, vocab, seq)
        return F.cross_entropy(logits, y), state


class BareLoop:
    """The bare loop's state; `step()` trains on the next batch."""

    def __init__(
        self, shape: Shape, ids: np.ndarray, variant: Variant = BARE, device: torch.device = CPU
    ) -> None:
        torch.manual_seed(0)
        self.shape, self.variant, self.device = shape, variant, device
        self.model = BareLM(shape, variant.batch_first).to(device)
        kwargs = {variant.optimizer: True} if variant.optimizer != "default" else {}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR, **kwargs)
        self.forward = torch.compile(self.model) if variant.compiled else self.model
        # Row b of the batch reads stream b; batch k is columns [kT, (k+1)T) (+1 for targets).
        span = (len(ids) - 1) // shape.batch
        self.streams = torch.from_numpy(ids[: shape.batch * span].reshape(shape.batch, span))
        self.targets = torch.from_numpy(ids[1 : shape.batch * span + 1].reshape(shape.batch, span))
        if not variant.batch_first:  # (time, batch)
            self.streams, self.targets = self.streams.T.contiguous(), self.targets.T.contiguous()
        self.streams, self.targets = self.streams.to(device), self.targets.to(device)
        self.batches = (len(ids) - 1) // (shape.batch * shape.seq)
        self.state, self.count = None, 0

    def step(self) -> None:
        shape, variant, model = self.shape, self.variant, self.model
        cols = slice(
            self.count % self.batches * shape.seq, (self.count % self.batches + 1) * shape.seq
        )
        self.count += 1
        x, y = (self.streams[:, cols], self.targets[:, cols]) if variant.batch_first else (
            self.streams[cols], self.targets[cols])  # fmt: skip
        state = None if self.state is None else tuple(s.detach() for s in self.state)
        off = torch.backends.mkldnn.flags(enabled=False) if not variant.mkldnn else None
        bf16 = variant.precision == "bf16"
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        with off or contextlib.nullcontext():
            with autocast:  # the forward pass only, as PyTorch recommends
                if variant.output_chunks > 1:
                    loss, state = model.chunked_loss(x, y, state, variant.output_chunks)
                elif variant.output == "sliced":
                    loss, state = model.sliced_loss(x, y, state)
                elif variant.output == "conv1d":
                    loss, state = model.conv_loss(x, y, state)
                elif variant.output == "charlm":
                    logits, state = self.forward(x, state)
                    loss = token_nll(logits.reshape(-1, shape.vocab), y.reshape(-1)).mean()
                else:
                    logits, state = self.forward(x, state)
                    loss = F.cross_entropy(logits.reshape(-1, shape.vocab), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if variant.clip_in_step:  # charlm's way: the scaling left to fused Adam's pass
                clip_gradients(self.optimizer, model.parameters(), CLIP)
            else:
                nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            self.optimizer.step()
        self.state = state


def bare_run(
    shape: Shape, ids: np.ndarray, variant: Variant = BARE, device: torch.device = CPU
) -> tuple[float, float]:
    """Tokens per second (wall, CPU) of the bare loop after the warm-up steps."""
    loop = BareLoop(shape, ids, variant, device)
    for _ in range(shape.warmup):
        loop.step()
    start = clocks(device)
    for _ in range(shape.steps):
        loop.step()
    return rates(shape.steps * shape.batch * shape.seq, start, clocks(device))


def bare_in_own_process(shape: Shape) -> tuple[float, float]:
    """Tokens per second (wall, CPU) of the bare loop in a fresh Python process at this
    process's thread count: a user's own script, with glibc's malloc as it comes."""
    command = [sys.executable, "-m", "benchmarks.train_overhead", "--bare-child", shape.name,
               "--threads", str(torch.get_num_threads())]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"the bare child failed: {done.stderr.strip()[-300:]}")
    wall, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, cpu


# ---- the measurements ------------------------------------------------------------------


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(
    shape: Shape, repeats: int, peak: float, precision: str = "fp32", device: torch.device = CPU
) -> dict[str, Any]:
    """charlm and bare at `precision`, in turns (each round starting with the next), `repeats`
    times each after one untimed run of each; below fp32, the bare loop in fp32 too."""
    ids = token_ids(shape)
    with tempfile.TemporaryDirectory() as tmp:
        same = Variant("bare", precision=precision)
        sides = {"charlm": lambda: charlm_run(shape, ids, Path(tmp), precision, device),
                 "bare": lambda: bare_run(shape, ids, same, device)}  # fmt: skip
        if precision != "fp32":
            sides["bare fp32"] = lambda: bare_run(shape, ids, device=device)
        elif device.type == "cpu":
            sides["bare, own process"] = lambda: bare_in_own_process(shape)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for run in sides.values():  # warm-up: allocator, thread pool, lazy imports
            run()
        names = list(sides)
        for round_ in range(repeats):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                runs[name].append(sides[name]())
    wall = {name: [w for w, _ in r] for name, r in runs.items()}
    pairs = [c / b for c, b in zip(wall["charlm"], wall["bare"])]
    cpu = {name: [c for _, c in r] for name, r in runs.items()}
    charlm_rate, bare_rate = median(wall["charlm"]), median(wall["bare"])
    flops = shape.train_flops_per_token()
    tokens = shape.batch * shape.seq
    against_fp32 = {}
    if "bare fp32" in wall:  # what the lower precision gains over the plain fp32 loop
        fp32_rate = median(wall["bare fp32"])
        against_fp32 = {
            "bare_fp32_tokens_per_s": fp32_rate,
            "ratio_to_fp32": charlm_rate / fp32_rate,
        }
    own_process = {}
    if "bare, own process" in wall:  # against a user's script: a fresh process, glibc's malloc
        alone = median(wall["bare, own process"])
        own_process = {
            "bare_own_process_tokens_per_s": alone,
            "bare_own_process_runs": wall["bare, own process"],
            "ratio_to_own_process": charlm_rate / alone,
            "own_process_pair_ratios": [
                c / b for c, b in zip(wall["charlm"], wall["bare, own process"])
            ],
        }
    return {
        "config": shape.name,
        "shape": " ".join(
            [shape.label]
            + ([precision] if precision != "fp32" else [])
            + ([device.type] if device.type != "cpu" else [])
        ),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "device": device.type,
        "charlm_tokens_per_s": charlm_rate,
        "bare_tokens_per_s": bare_rate,
        "ratio": charlm_rate / bare_rate,
        # What charlm's loop adds to each step, in milliseconds (negative: it is faster).
        "overhead_ms_per_step": 1000 * tokens * (1 / charlm_rate - 1 / bare_rate),
        "pair_ratios": pairs,
        # Steadier on a busy machine: each round's two runs were close in time, while the two
        # medians above may come from different rounds.
        "pair_ratio_median": median(pairs),
        "charlm_runs": wall["charlm"],
        "bare_runs": wall["bare"],
        # The same per second of CPU time, the steadier figure on a shared machine.
        "charlm_cpu_tokens_per_s": median(cpu["charlm"]),
        "bare_cpu_tokens_per_s": median(cpu["bare"]),
        "cpu_ratio": median(cpu["charlm"]) / median(cpu["bare"]),
        "cpu_pair_ratios": [c / b for c, b in zip(cpu["charlm"], cpu["bare"])],
        "train_flops_per_token": flops,
        "charlm_gflops": charlm_rate * flops / 1e9,
        "bare_gflops": bare_rate * flops / 1e9,
        "matmul_gflops": peak,
        "charlm_efficiency": charlm_rate * flops / 1e9 / peak,
        "bare_efficiency": bare_rate * flops / 1e9 / peak,
        **against_fp32,
        **own_process,
    }


def measure_variants(
    shape: Shape, repeats: int, variants: list[Variant] = VARIANTS, device: torch.device = CPU
) -> list[dict[str, Any]]:
    """Each variant of the bare loop against the plain one, interleaved step by step: every
    round steps each loop once (in a rotating order), so a change in the machine's load
    falls on all of them alike. `repeats` x 10 rounds after the warm-up steps; the figures
    are median step times."""
    ids = token_ids(shape)
    loops, rows = {"bare": BareLoop(shape, ids, device=device)}, []
    for variant in variants:
        try:
            loops[variant.name] = BareLoop(shape, ids, variant, device)
            loops[variant.name].step()  # compiles, where it does
        except Exception as exc:  # a variant this torch build lacks is reported, not fatal
            loops.pop(variant.name, None)
            rows.append({"config": shape.name, "variant": variant.name, "error": str(exc)})
    for loop in loops.values():
        for _ in range(shape.warmup):
            loop.step()
    names = list(loops)
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_ in range(repeats * 10):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = clocks(device)
            loops[name].step()
            end = clocks(device)
            seconds[name].append((end[0] - start[0], end[1] - start[1]))
    tokens = shape.batch * shape.seq

    def rate(name: str, clock: int) -> float:
        return tokens / median([times[clock] for times in seconds[name]])

    for name in names[1:]:
        rows.append(
            {
                "config": shape.name,
                "threads": torch.get_num_threads(),
                "device": device.type,
                "variant": name,
                "bare_tokens_per_s": rate("bare", 0),
                "variant_tokens_per_s": rate(name, 0),
                "speedup": rate(name, 0) / rate("bare", 0),
                "bare_cpu_tokens_per_s": rate("bare", 1),
                "variant_cpu_tokens_per_s": rate(name, 1),
                "cpu_speedup": rate(name, 1) / rate("bare", 1),
                "steps": len(seconds[name]),
            }
        )
    return rows


def default_threads() -> list[int]:
    cores = os.cpu_count() or 1
    return sorted({1, max(1, cores // 2), cores})


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny model and few steps (for CI).")
@click.option(
    "--configs",
    default="a,b,c",
    show_default=True,
    callback=names_from(CONFIGS),
    help="Which configurations: a (char, 2x256), b (char, 2x512, batch 64), c (word, 10k), "
    "d (word, 2x650, batch 64: for a GPU).",
)
@click.option(
    "--threads",
    "thread_list",
    default=None,
    callback=names_from((), numbers=True),
    help="Comma-separated torch.set_num_threads settings to try.  [default: 1, half and all "
    "of the cores]",
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs."
)
@click.option(
    "--variants",
    is_flag=True,
    default=False,
    show_default=True,
    help="Also time changes to the bare loop that keep the model identical (layout, Adam "
    "implementation, oneDNN, torch.compile, a chunked output layer), at the largest "
    "--threads setting.",
)
@click.option(
    "--variant",
    "chosen",
    multiple=True,
    type=click.Choice([v.name for v in VARIANTS]),
    help="Time only this variant (implies --variants); repeatable.  [default: all]",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="charlm's --precision, and the bare loop's (bf16: autocast); with bf16 the bare loop "
    "also runs in fp32, for the ratio a user of a CPU with bf16 instructions gains.",
)
@click.option(
    "--device",
    "device_name",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where both loops run: cuda times cuDNN's LSTM on the GPU (one --threads setting: "
    "all the cores, unless given).",
)
@results_option(RESULTS)
@click.option("--bare-child", default=None, hidden=True)
def main(
    quick: bool,
    configs: str,
    thread_list: str | None,
    repeats: int,
    variants: bool,
    chosen: tuple[str, ...],
    precision: str,
    device_name: str,
    out: Path,
    bare_child: str | None,
) -> None:
    """Time charlm's training loop against a bare PyTorch loop, and both against the CPU."""
    if bare_child:  # one run of the bare loop, in this fresh process (bare_in_own_process)
        shape = QUICK if bare_child == QUICK.name else CONFIGS[bare_child]
        with threads(int(thread_list or torch.get_num_threads())):
            print(json.dumps(bare_run(shape, token_ids(shape))))
        return
    try:
        device = resolve_device(device_name)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    shapes = [QUICK] if quick else [CONFIGS[name.strip()] for name in configs.split(",")]
    settings = [int(t) for t in thread_list.split(",")] if thread_list else default_threads()
    if quick or (device.type == "cuda" and not thread_list):
        settings = settings[-1:] if device.type == "cuda" else settings[:1]
    repeats = min(repeats, 2) if quick else repeats
    size = 256 if quick else 8192 if device.type == "cuda" else 2048
    rows, variant_rows, rates = [], [], {}
    for n in settings:
        with threads(n):
            rates[n] = matmul_rates(size, device=device)
            peak = max(rates[n].values())
            for shape in shapes:
                rows.append(measure(shape, repeats, peak, precision, device))
                if (variants or chosen) and n == max(settings):  # one setting: they take long
                    picked = [v for v in VARIANTS if not chosen or v.name in chosen]
                    variant_rows += measure_variants(shape, repeats, picked, device)
    report(rows, variant_rows, rates)
    command = machine_info()["command"]
    for row in rows + variant_rows:
        row["command"], row["repeats"] = command, repeats
    new = {
        "quick": quick,
        "device": device.type,
        "matmul_gflops": {str(n): max(r.values()) for n, r in rates.items()},
        "matmul_rates": {str(n): r for n, r in rates.items()},
        "rows": rows,
        "variants": variant_rows,
    }
    write_results(out, merge_results(out, new))
    print(f"wrote {out}")


def merge_results(out: Path, new: dict[str, Any]) -> dict[str, Any]:
    """`new` over the results already in `out`: a row measured again (same configuration,
    threads and variant) replaces the old one, the others stay, so one configuration can be
    re-measured alone (`--configs c --repeats 7`)."""
    try:
        old = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return new
    if old.get("quick") != new["quick"]:
        return new

    def merged(name: str) -> list[dict[str, Any]]:
        def key(row: dict) -> tuple:
            return (
                row["config"],
                row.get("threads"),
                row.get("variant"),
                row.get("precision", "fp32"),
                row.get("device", "cpu"),
            )

        rows = {key(r): r for r in old.get(name, [])} | {key(r): r for r in new[name]}
        return list(rows.values())

    return {
        **new,
        "matmul_gflops": {**old.get("matmul_gflops", {}), **new["matmul_gflops"]},
        "matmul_rates": {**old.get("matmul_rates", {}), **new["matmul_rates"]},
        "rows": merged("rows"),
        "variants": merged("variants"),
    }


def report(rows: list[dict], variant_rows: list[dict], rates: dict[int, dict]) -> None:
    for n, by_library in rates.items():
        each = ", ".join(f"{name} {rate:,.0f}" for name, rate in by_library.items())
        print(f"fp32 matmul at {n} threads, GFLOP/s: {each}")
    print()
    print_table(
        [
            "config",
            "threads",
            "charlm tok/s",
            "bare tok/s",
            "ratio",
            "pairs",
            "CPU-time ratio",
            "+ms/step",
            "GFLOP/s",
            "of mm peak",
            "bare alone tok/s",
            "ratio to bare alone",
        ],  # fmt: skip
        [
            (
                r["shape"],
                r["threads"],
                r["charlm_tokens_per_s"],
                r["bare_tokens_per_s"],
                f"{r['ratio']:.3f}",
                f"{r['pair_ratio_median']:.3f}",
                f"{r['cpu_ratio']:.3f}",
                f"{r['overhead_ms_per_step']:+.2f}",
                f"{r['charlm_gflops']:.1f}",
                f"{r['charlm_efficiency']:.1%}",
                r.get("bare_own_process_tokens_per_s", "-"),
                f"{r['ratio_to_own_process']:.3f}" if "ratio_to_own_process" in r else "-",
            )
            for r in rows
        ],
    )
    for r in rows:
        if "ratio_to_fp32" in r:
            print(
                f"{r['config']} at {r['precision']}: charlm {r['charlm_tokens_per_s']:,.0f} tok/s, "
                f"the bare fp32 loop {r['bare_fp32_tokens_per_s']:,.0f}: {r['ratio_to_fp32']:.3f}x"
            )
    if variant_rows:
        print()
        print_table(
            ["config", "threads", "variant of the bare loop", "tok/s", "speed-up", "CPU-time"],
            [
                (
                    r["config"],
                    r.get("threads", "-"),
                    r["variant"],
                    r.get("variant_tokens_per_s"),
                    f"{r['speedup']:.3f}" if "speedup" in r else r["error"][:40],
                    f"{r['cpu_speedup']:.3f}" if "cpu_speedup" in r else "",
                )
                for r in variant_rows
            ],
        )


if __name__ == "__main__":
    main()

"""What every benchmark script shares: the machine it ran on, where results go, JSON, medians.

Results go to benchmarks/results/<name>.json (git-ignored); `python -m benchmarks.report`
turns them into the tables of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import torch

from charlm.errors import CharlmError

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
# The shared corpora beside the project; CHARLM_SHARED_CORPORA points elsewhere (a copy
# carried to another machine, say).
CORPORA = Path(os.environ.get("CHARLM_SHARED_CORPORA") or ROOT.parent / "shared" / "corpora")


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), or what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine a figure comes from: CPU, cores, threads, torch, GPU."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": gpu,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m", _module_name(), *map(shlex.quote, sys.argv[1:])]),
    }


def _module_name() -> str:
    path = Path(sys.argv[0])
    return f"benchmarks.{path.stem}" if path.suffix == ".py" else path.name


def write_results(out: Path, results: dict[str, Any]) -> Path:
    """`results` with the machine description, as JSON at `out` (non-finite numbers → null).

    A --quick run's results never take the place of a full run's in benchmarks/results:
    there they go to NAME.quick.json, which the report does not read."""
    if results.get("quick") and out.parent.resolve() == RESULTS_DIR.resolve():
        if not out.name.endswith(".quick.json"):
            out = out.with_suffix(".quick.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), **results}
    out.write_text(json.dumps(finite(payload), indent=2) + "\n", encoding="utf-8")
    return out


def finite(value: Any) -> Any:
    """`value` with every non-finite float (anywhere inside) replaced by None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def matmul_rates(
    size: int = 2048, repeats: int = 5, device: torch.device | None = None
) -> dict[str, float]:
    """This machine's fp32 matrix-multiply rate in GFLOP/s through each library torch ships:
    `torch.mm` (the BLAS, MKL on x86) and oneDNN's matmul, which the LSTM kernels use. They
    can differ by 2x: MKL takes a slower path on AMD processors. The median of `repeats`
    (size × size) @ (size × size) products after a warm-up, at the current thread setting.
    On a CUDA `device`: `torch.mm` there (cuBLAS), each product waited for."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    if device is not None and device.type == "cuda":
        a, b = a.to(device), b.to(device)

        def product() -> None:
            torch.mm(a, b)
            torch.cuda.synchronize(device)

        return {"torch.mm (cuda)": _gflops(product, 2 * size**3, repeats)}
    rates = {"torch.mm": _gflops(lambda: torch.mm(a, b), 2 * size**3, repeats)}
    try:  # oneDNN's own matmul, reached through the mkldnn tensor layout
        a_dnn, b_dnn = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
        linear = torch._C._nn.mkldnn_linear
        rates["oneDNN"] = _gflops(lambda: linear(a_dnn, b_dnn, None), 2 * size**3, repeats)
    except (AttributeError, RuntimeError):  # a build without oneDNN: torch.mm alone
        pass
    return rates


def _gflops(run: Callable[[], Any], flops: float, repeats: int) -> float:
    run()  # warm-up: thread pool, caches, page faults, oneDNN's kernel generation
    times = [timed(run)[1] for _ in range(repeats)]
    return flops / median(times) / 1e9


class BenchmarkCommand(click.Command):
    """A benchmark's command: charlm's own errors (a missing corpus, no CUDA, a bad value)
    and a missing file are one line and exit 1, as in charlm itself, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CharlmError as exc:
            raise click.ClickException(str(exc)) from exc
        except FileNotFoundError as exc:
            raise click.ClickException(f"{exc.filename}: no such file") from exc


def results_option(default: Path) -> Callable[[Callable], Callable]:
    """The `--out` option every benchmark takes: where its JSON results go."""
    return click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=True,
        help="Where to write the JSON results.",
    )


def threads_option() -> Callable[[Callable], Callable]:
    """`--threads`: the CPU threads of the benchmark's trainings (torch's own choice when
    not given)."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="CPU threads.  [default: torch's]",
    )


def names_from(known: Iterable[str], numbers: bool = False) -> Callable[..., str]:
    """A Click callback for a comma-separated option: each name one of `known` (or with
    `numbers`, each a whole number from 1), else a usage error naming the bad one. The value
    stays the string the script splits."""
    allowed = list(known)

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return value
        names = [name.strip() for name in value.split(",")]
        if numbers:
            bad = [name for name in names if not (name.isdigit() and int(name) >= 1)]
            wanted = "whole numbers from 1, comma-separated"
        else:
            bad = [name for name in names if name not in allowed]
            wanted = f"comma-separated names of {', '.join(allowed)}"
        if bad:
            raise click.BadParameter(f"{', '.join(map(repr, bad))}: give {wanted}")
        return value

    return check


def device_option() -> Callable[[Callable], Callable]:
    """`--device`: where the benchmark trains (auto: CUDA when present, else the CPU)."""
    return click.option(
        "--device", default="auto", show_default=True, help="Where to train: auto, cpu or cuda."
    )


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files (no display), or None when matplotlib is absent:
    the plots are extras, the tables and JSON are the results."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(values[1:], widths[1:]))])

    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    """`run()` and its wall time in seconds."""
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start

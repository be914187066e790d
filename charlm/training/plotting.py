"""Training curves from metrics logs: a perplexity figure and a summary of each run.

Reads `metrics.jsonl` from checkpoint directories, so it works on runs still in progress.
matplotlib is an optional extra: `pip install 'charlm[plot]'`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlm.errors import CharlmError, CheckpointError
from charlm.imagefiles import check_image_path
from charlm.training.metrics_log import METRICS_LOG_NAME, read_metrics


@dataclass
class Run:
    """One run's metrics log, split into training and evaluation records."""

    name: str
    train: list[dict[str, Any]]
    evals: list[dict[str, Any]]

    @property
    def classifier(self) -> bool:
        """A classifier's run: its evaluations measure accuracy, and its loss is over labels."""
        return any(r.get("val_accuracy") is not None for r in self.evals)

    def finite_evals(self) -> list[dict[str, Any]]:
        return [r for r in self.evals if r.get("val_perplexity") is not None]

    def best(self) -> dict[str, Any]:
        """The evaluation the run kept as its best: the most accurate for a classifier (the
        lower loss between equals), the lowest perplexity otherwise; {} before any."""
        finite = self.finite_evals()
        if not finite:
            return {}
        if self.classifier:
            return max(finite, key=lambda r: (r.get("val_accuracy") or 0, -r["val_perplexity"]))
        return min(finite, key=lambda r: r["val_perplexity"])

    def summary(self) -> dict[str, Any]:
        last = self.train[-1] if self.train else {}
        finite = self.finite_evals()
        best = self.best()
        rates = sorted(r["tokens_per_s"] for r in self.train if r.get("tokens_per_s"))
        return {
            "run": self.name,
            "steps": max((r["step"] for r in self.train + self.evals), default=None),
            "train_perplexity": last.get("train_perplexity"),
            "val_perplexity": finite[-1]["val_perplexity"] if finite else None,
            "best_val_perplexity": best.get("val_perplexity"),
            "best_step": best.get("step"),
            # A classifier's loss is over its labels: no bits per character of text.
            "val_bpc": finite[-1].get("val_bpc") if finite and not self.classifier else None,
            "val_accuracy": finite[-1].get("val_accuracy") if finite else None,
            "best_val_accuracy": best.get("val_accuracy"),
            "tokens_per_s": rates[len(rates) // 2] if rates else None,  # the median
            "elapsed_s": last.get("elapsed_s"),
        }


def load_run(checkpoint: str | os.PathLike) -> Run:
    """The metrics log of a checkpoint directory (or a metrics.jsonl file itself)."""
    path = Path(checkpoint)
    # A log named by the user may be a link (their choice); one inside a checkpoint may not.
    log = path.resolve() if path.is_file() else path / METRICS_LOG_NAME
    if not log.is_file():
        if not path.exists():
            raise CheckpointError(f"{path} does not exist")
        if (path.parent / METRICS_LOG_NAME).is_file():  # e.g. a run's best/
            raise CheckpointError(
                f"{path} has no {METRICS_LOG_NAME}; the run it belongs to has: plot {path.parent}"
            )
        raise CheckpointError(f"{path} has no {METRICS_LOG_NAME}; was it written by charlm train?")
    records = [r for r in read_metrics(log) if _well_formed(r)]
    name = (path.parent if path.is_file() else path).name
    train = [r for r in records if r.get("train_perplexity") is not None]
    evals = [r for r in records if "val_loss" in r]
    if not train and not evals:
        raise CheckpointError(f"{log} holds no records yet")
    return Run(name, train, evals)


_NUMBERS = (
    "elapsed_s",
    "train_perplexity",
    "val_loss",
    "val_perplexity",
    "val_bpc",
    "val_accuracy",
    "tokens_per_s",
)


def _well_formed(record: dict[str, Any]) -> bool:
    """A record whose step and plotted values are numbers (a damaged log may hold others)."""
    if not isinstance(record.get("step"), int) or isinstance(record.get("step"), bool):
        return False
    return all(
        record[k] is None or isinstance(record[k], (int, float)) and not isinstance(record[k], bool)
        for k in _NUMBERS
        if k in record
    )


def perplexity_text(value: float) -> str:
    """A perplexity to 3 decimals, or in scientific form when it is huge (a diverged run's
    10^19 would otherwise be 20 digits)."""
    return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.3e}"


def default_plot_path(checkpoints: list[str | os.PathLike]) -> Path:
    """Where `charlm plot` writes when not told: inside the checkpoint for one run, and for
    several a file in the current directory named after them, so that plotting other runs
    never replaces an earlier figure."""
    paths = [Path(c) for c in checkpoints]
    if len(paths) == 1:
        folder = paths[0].parent if paths[0].is_file() else paths[0]
        return folder / "perplexity.png"
    names = [(p.parent if p.is_file() else p).resolve().name or "run" for p in paths]
    stem = "-vs-".join(names)
    if len(stem) > 80:  # a name that still fits a file system, and says how many
        stem = f"{names[0][:40]}-and-{len(names) - 1}-more"
    return Path(f"perplexity-{stem}.png")


def plot_runs(runs: list[Run], out: str | os.PathLike, *, x: str = "step") -> Path:
    """Draw `runs` (see `perplexity_figure`) into the image file `out`."""
    out = check_image_path(out, "--out")
    figure = perplexity_figure(runs, x=x)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return out


def perplexity_figure(runs: list[Run], *, x: str = "step") -> Any:
    """A matplotlib Figure: training (solid) and validation (dashed, dots) perplexity of
    `runs`, a star at each run's best validation perplexity; `x` is "step" or "time"."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import LogFormatter, MaxNLocator
    except ImportError as exc:
        raise CharlmError("charlm plot needs matplotlib: pip install 'charlm[plot]'") from exc
    key = {"step": "step", "time": "elapsed_s"}[x]
    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)  # a canvas of its own: no pyplot, no global figure state
    axes = figure.add_subplot()
    for index, run in enumerate(runs):
        _draw_run(axes, run, key, colour=f"C{index % 10}")
    axes.set_yscale("log")
    # Plain numbers (30, 200) rather than powers of ten (3×10¹) on the log axis.
    axes.yaxis.set_major_formatter(_plain_log_formatter(LogFormatter))
    axes.yaxis.set_minor_formatter(_plain_log_formatter(LogFormatter))
    if x == "step":
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 2.5
    axes.set_xlabel("training step" if x == "step" else "training time (s)")
    axes.set_ylabel("perplexity (log scale)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _plain_log_formatter(log_formatter: type) -> Any:
    """matplotlib's choice of which log-axis ticks to label, written as plain numbers."""

    class PlainLogFormatter(log_formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    return PlainLogFormatter(labelOnlyBase=False)


def _draw_run(axes: Any, run: Run, key: str, colour: str) -> None:
    if run.train:
        axes.plot(
            [r[key] for r in run.train],
            [r["train_perplexity"] for r in run.train],
            color=colour,
            linewidth=1.2,
            alpha=0.8,
            label=f"{run.name} train",
        )
    evals = run.finite_evals()
    if not evals:
        return
    axes.plot(
        [r[key] for r in evals],
        [r["val_perplexity"] for r in evals],
        color=colour,
        linestyle="--",
        marker="o",
        markersize=3,
        label=f"{run.name} validation",
    )
    best = run.best()
    accuracy = best.get("val_accuracy") if run.classifier else None
    score = (
        f"{accuracy:.1%} accurate"
        if accuracy is not None
        else perplexity_text(best["val_perplexity"])
    )
    axes.plot(
        [best[key]],
        [best["val_perplexity"]],
        color=colour,
        marker="*",
        markersize=14,
        markeredgecolor="black",
        linestyle="none",
        label=f"{run.name} best: {score} at step {best['step']:,}",
    )

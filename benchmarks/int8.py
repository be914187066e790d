"""int8 sampling on a CPU: tokens per second and bits per character against float32.

    python -m benchmarks.int8                                  # trains the models it lacks
    python -m benchmarks.int8 --checkpoint lstm=DIR --checkpoint gru=DIR --score-chars 20000
    python -m benchmarks.int8 --quick                          # tiny models: a smoke run

The models are 2 x 512 character models (LSTM, GRU, RNN) trained on Tiny Shakespeare's first
90% (nanoGPT's split). A cell without a --checkpoint is trained for --train-time with charlm's
defaults into benchmarks/results/checkpoints/int8/<cell> (kept and reused by later runs);
the comparison needs a trained model, not a good one. The LSTM is also run as charlm's
scratch implementation (`load(..., impl="scratch")`), whose int8 load is refused (int8 runs
PyTorch's kernels, not the scratch equations): its row gives the float32 speeds and the refusal.

For each model, in one process, interleaved over --repeats rounds (medians reported):

* the network's batch-1 step alone (`model.step`, µs), float32 and int8: a token's time
  less drawing and decoding, so their ratio is the most int8 can gain in tokens/s.
* batch-1 tokens per second of `Sampler.generate` (temperature 0.8, --tokens tokens after a
  short prefix), several ways: "layer", float32 with each token through the recurrent layer's
  own call (`nn.LSTM(x, state)`, how charlm sampled before issue 22); "cell", one step through
  PyTorch's cell functions on the layer's own weights (charlm's step until the layers
  stepped on their weights laid out for it); "float32", charlm's sampler now
  (charlm/models/stepping.py); "int8", `load(..., quantize="int8")`, whose character-sized
  output layer stays float32, the whole step (embedding, layers, output layer) taken by
  charlm's C step (int8_step.py) where it was built; "int8 layers", the same with only the
  layers in C (how int8 stepped before the whole step was); "int8 torch", the same int8
  model stepped through PyTorch's int8 operators alone (`quantize(..., native=False)`: how
  int8 stepped before the C step); "int8 all",
  every layer int8 (`quantize(..., min_weights=0)`, how int8 ran before its output layer
  stayed float32). The same with `num_samples=16` (batch 16).
* batch-1 time of an output layer alone, float32 against int8, for 512 inputs and a few
  vocabulary sizes: where an int8 product starts to pay for its fixed cost per call.
* the int8 model's step alone at 1 to 16 rows, the whole step in C against PyTorch's int8
  operators: where the C step stops being the faster (int8_step.MAX_ROWS).
* bits per character of the held-out last 10% read in order, its state carried
  (`Sampler.score`), float32 against int8, on the first --score-chars characters; and of
  its first 2,000 characters stepped one token at a time, as sampling runs the network.

Targets (issue 22): int8 >= 3.5x the float32 sampler's tokens/s at batch 1, bits per
character within 1% of float32. The table goes to stdout, everything to
benchmarks/results/int8.json.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    print_table,
    results_option,
    write_results,
)
from benchmarks.earlier_steps import CellSteps, LayerCalls
from benchmarks.shakespeare_5min import nanogpt_split, run_charlm_train
from benchmarks.train_overhead import threads
from charlm.corpus import read_book
from charlm.errors import ConfigError
from charlm.models import int8_step
from charlm.models.quantized import Int8Linear, quantize
from charlm.models.stepping import FusedWeights
from charlm.sampling import Sampler, load

BOOK = CORPORA / "tinyshakespeare" / "input.txt"
RESULTS = RESULTS_DIR / "int8.json"
CELLS = ("lstm", "gru", "rnn")
PREFIX = "ROMEO:\n"
TEMPERATURE = 0.8
BATCH = 16
STEPPED_CHARS = 2_000
ROWS = (1, 2, 3, 4, 6, 8, 16)
FULL = {"tokens": 300, "batch_tokens": 60, "train_args": []}
TINY = ["--hidden", "32", "--embed", "8", "--seq-len", "32", "--batch-size", "8"]
QUICK = {"tokens": 20, "batch_tokens": 5, "characters": 30_000, "train_args": TINY}


def samplers(checkpoint: Path, impl: str | None) -> tuple[dict[str, Sampler], str | None]:
    """The ways to sample the model of `checkpoint`, and why int8 is not one (or None)."""
    float32 = load(checkpoint, device="cpu", impl=impl)
    ways = {"layer": Sampler(LayerCalls(float32.model), float32.tokenizer)}
    if FusedWeights.fits(float32.model.rnn):  # the step it replaced, beside it
        ways["cell"] = Sampler(CellSteps(float32.model), float32.tokenizer)
    ways["float32"] = float32
    try:
        ways["int8"] = load(checkpoint, device="cpu", impl=impl, quantize="int8")
    except ConfigError as exc:  # the scratch implementation: refused, and the reason kept
        return ways, str(exc)
    if ways["int8"].model.token_step is not None:  # its layers alone in C, beside it
        layers_only = quantize(float32.model, "int8")
        layers_only.token_step = None
        ways["int8 layers"] = Sampler(layers_only, float32.tokenizer)
    by_torch = quantize(float32.model, "int8", native=False)
    ways["int8 torch"] = Sampler(by_torch, float32.tokenizer)
    if isinstance(ways["int8"].model.head, nn.Linear):  # kept float32: time it int8 too
        every_layer = quantize(float32.model, "int8", min_weights=0)
        ways["int8 all"] = Sampler(every_layer, float32.tokenizer)
    return ways, None


def output_layer_times(repeats: int, hidden: int = 512, steps: int = 300) -> list[dict]:
    """Median batch-1 µs of an output layer of `hidden` inputs, float32 and int8, for a
    character and a few word vocabulary sizes (random weights: the time does not depend on
    them)."""
    rows = []
    x = torch.randn(1, hidden)
    for vocab in (65, 256, 1024, 4096, 10_000):
        layers = {"float32": nn.Linear(hidden, vocab)}
        layers["int8"] = Int8Linear(layers["float32"])
        times: dict[str, list[float]] = {name: [] for name in layers}
        with torch.inference_mode():
            for _ in range(repeats):
                for name, layer in layers.items():
                    start = time.perf_counter()
                    for _ in range(steps):
                        layer(x)
                    times[name].append((time.perf_counter() - start) / steps * 1e6)
        row = {name: statistics.median(t) for name, t in times.items()}
        rows.append({"inputs": hidden, "outputs": vocab, "weights": hidden * vocab, **row})
    return rows


def tokens_per_second(
    sampler: Sampler, tokens: int, num_samples: int, seed: int
) -> tuple[float, float]:
    """Tokens per second of wall time, and per second of this process's CPU time: on a
    machine shared with other work the second is the steadier figure (at one thread both
    are the same on an idle machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    sampler.generate(PREFIX, tokens, TEMPERATURE, seed, num_samples=num_samples)
    count = tokens * num_samples
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def speeds(ways: dict[str, Sampler], tokens: int, num_samples: int, repeats: int) -> dict:
    """Median tokens/s of each way, interleaved (each round starts with another way)."""
    names = list(ways)
    for name in names:  # warm-up: thread pool, allocator, oneDNN's kernel generation
        tokens_per_second(ways[name], max(2, tokens // 10), num_samples, 0)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            runs[name].append(tokens_per_second(ways[name], tokens, num_samples, round_))
    return {
        name: {
            "median": statistics.median(wall for wall, _ in r),
            "cpu_median": statistics.median(cpu for _, cpu in r),
            "runs": r,
        }
        for name, r in runs.items()
    }


def step_microseconds(model: nn.Module, repeats: int, steps: int = 200) -> float:
    """Median time of one batch-1 `step` of the network alone, in µs: no drawing, no
    decoding. It is the part of a token's time that int8 shortens, so the ratio of two
    models' steps bounds the ratio of their samplers' tokens/s."""
    token = torch.zeros(1, dtype=torch.long)
    times = []
    with torch.inference_mode():
        _, state = model.step(token)  # warm-up, and the state the steps carry
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                _, state = model.step(token, state)
            times.append((time.perf_counter() - start) / steps * 1e6)
    return statistics.median(times)


def steps_by_rows(ways: dict[str, Sampler], repeats: int, steps: int = 100) -> list[dict]:
    """Median µs of one step of the int8 model at each of ROWS rows: the whole step in C
    (called directly, whatever rows `takes` allows) against PyTorch's int8 operators, where
    the C step is built; the crossover sets int8_step.MAX_ROWS."""
    if ways["int8"].model.token_step is None or "int8 torch" not in ways:
        return []
    table = []
    with torch.inference_mode():
        for rows in ROWS:
            calls = row_steps(ways["int8"].model, ways["int8 torch"].model, rows)
            times: dict[str, list[float]] = {name: [] for name in calls}
            for round_ in range(repeats):
                for name in list(calls)[round_ % 2 :] + list(calls)[: round_ % 2]:
                    start = time.perf_counter()
                    for _ in range(steps):
                        calls[name]()
                    times[name].append((time.perf_counter() - start) / steps * 1e6)
            table.append({"rows": rows, **{n: statistics.median(t) for n, t in times.items()}})
    return table


def row_steps(in_c: nn.Module, by_torch: nn.Module, rows: int) -> dict[str, Callable[[], Any]]:
    """A step of `rows` rows each way: the C step itself, and PyTorch's operators."""
    tokens, state = torch.zeros(rows, dtype=torch.long), by_torch.begin_state(rows)
    return {
        "c": lambda: in_c.token_step(tokens, state),
        "torch": lambda: by_torch.step(tokens, state),
    }


def stepped_bits(sampler: Sampler, text: str) -> float:
    """Bits per character of `text` with the network stepped one token at a time, as a
    sampler runs it (`Sampler.score` reads whole sequences through the layers instead)."""
    ids = torch.tensor(sampler.tokenizer.encode(text))
    nats, state = 0.0, None
    with torch.inference_mode():
        for t in range(len(ids) - 1):
            scores, state = sampler.model.step(ids[t : t + 1], state)
            nats -= scores.log_softmax(-1)[0, ids[t + 1]].item()
    return nats / len(text[1:]) / math.log(2)


def measure(cell: str, impl: str | None, checkpoint: Path, held_out: str, settings: dict,
            repeats: int) -> dict[str, Any]:  # fmt: skip
    ways, refused = samplers(checkpoint, impl)
    one = speeds(ways, settings["tokens"], 1, repeats)
    many = speeds(ways, settings["batch_tokens"], BATCH, repeats)
    model = cell + (f" ({impl})" if impl else "")
    if refused is not None:
        return {"model": model, "threads": torch.get_num_threads(), "int8_refused": refused,
                "tokens_per_s": {name: one[name]["median"] for name in one},
                "tokens_per_cpu_s": {name: one[name]["cpu_median"] for name in one},
                "float32_vs_layer": one["float32"]["median"] / one["layer"]["median"]}  # fmt: skip
    bpc = {name: ways[name].score(held_out).bits_per_character for name in ("float32", "int8")}
    stepped = {name: stepped_bits(ways[name], held_out[:STEPPED_CHARS]) for name in bpc}
    step_us = {name: step_microseconds(ways[name].model, repeats) for name in ("float32", "int8")}
    by_rows = steps_by_rows(ways, repeats)
    ratio = lambda a, b, key="median": one[a][key] / one[b][key]  # noqa: E731
    return {
        "model": model,
        "threads": torch.get_num_threads(),
        "tokens_per_s": {name: one[name]["median"] for name in one},
        "tokens_per_cpu_s": {name: one[name]["cpu_median"] for name in one},
        "tokens_per_s_runs": {name: one[name]["runs"] for name in one},
        f"batch{BATCH}_tokens_per_s": {name: many[name]["median"] for name in many},
        f"batch{BATCH}_tokens_per_cpu_s": {name: many[name]["cpu_median"] for name in many},
        "int8_vs_float32": ratio("int8", "float32"),
        "int8_vs_layer": ratio("int8", "layer"),
        "float32_vs_layer": ratio("float32", "layer"),
        "float32_vs_cell": ratio("float32", "cell") if "cell" in one else None,
        "int8_vs_int8_all": ratio("int8", "int8 all") if "int8 all" in one else None,
        "int8_vs_int8_torch": ratio("int8", "int8 torch"),
        "int8_vs_int8_layers": ratio("int8", "int8 layers") if "int8 layers" in one else None,
        "cpu_int8_vs_float32": ratio("int8", "float32", "cpu_median"),
        "cpu_int8_vs_layer": ratio("int8", "layer", "cpu_median"),
        "cpu_float32_vs_layer": ratio("float32", "layer", "cpu_median"),
        "step_us": step_us,
        "step_float32_vs_int8": step_us["float32"] / step_us["int8"],
        "int8_step_us_by_rows": by_rows,
        "bits_per_char": bpc,
        "bpc_change_percent": 100 * (bpc["int8"] / bpc["float32"] - 1),
        "stepped_bits_per_char": stepped,
        "stepped_bpc_change_percent": 100 * (stepped["int8"] / stepped["float32"] - 1),
        "score_chars": len(held_out),
    }


def trained(cell: str, given: dict[str, Path], work: Path, texts: tuple[str, str],
            train_time: str, settings: dict) -> Path:  # fmt: skip
    """The checkpoint of `cell`: given, kept from an earlier run, or trained now."""
    if cell in given:
        return given[cell]
    checkpoint = work / cell
    if (checkpoint / "config.json").is_file():
        return checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        train_file, val_file = Path(tmp) / "train.txt", Path(tmp) / "val.txt"
        train_file.write_text(texts[0], encoding="utf-8")
        val_file.write_text(texts[1], encoding="utf-8")
        run_charlm_train(["train", str(train_file), "--val", str(val_file), "--model", cell,
                          "--max-time", train_time, "--out", str(checkpoint), "--overwrite",
                          "--no-cache", *settings["train_args"]])  # fmt: skip
    return checkpoint


def parse_checkpoints(values: tuple[str, ...]) -> dict[str, Path]:
    given = {}
    for value in values:
        cell, _, path = value.partition("=")
        if cell not in CELLS or not path:
            raise click.BadParameter(f"{value!r}: give CELL=DIR, CELL one of {', '.join(CELLS)}")
        if not (Path(path) / "config.json").is_file():
            raise click.BadParameter(f"{path} is not a charlm checkpoint (no config.json)")
        given[cell] = Path(path)
    return given


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="Tiny models and few tokens (a smoke run).")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="CELL=DIR",
    help="A trained 2 x 512 model to use for CELL (lstm, gru, rnn); repeatable.  [default: "
    "train one]",
)
@click.option("--cells", default=",".join(CELLS), show_default=True, help="Which cells to run.")
@click.option("--train-time", default="3m", show_default=True, help="Training time per model.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--score-chars",
    type=click.IntRange(min=100),
    default=None,
    help="Score the first this many held-out characters.  [default: all 111,540]",
)
@click.option("--threads", "thread_count", type=click.IntRange(min=1), default=1, show_default=True)
@results_option(RESULTS)
def main(quick: bool, checkpoints: tuple[str, ...], cells: str, train_time: str, repeats: int,
         score_chars: int | None, thread_count: int, out: Path) -> None:  # fmt: skip
    """Time int8 sampling against float32, and compare their bits per character."""
    settings = QUICK if quick else FULL
    given = parse_checkpoints(checkpoints)
    text = read_book(BOOK).text[: settings.get("characters")]
    texts = nanogpt_split(text)
    held_out = texts[1][: score_chars or (2_000 if quick else None)]
    work = out.parent / "checkpoints" / ("int8-quick" if quick else "int8")
    rows = []
    with threads(thread_count):
        for cell in [c.strip() for c in cells.split(",")]:
            checkpoint = trained(cell, given, work, texts, "3s" if quick else train_time, settings)
            for impl in (None, "scratch") if cell == "lstm" else (None,):
                rows.append(measure(cell, impl, checkpoint, held_out, settings,
                                    min(repeats, 2) if quick else repeats))  # fmt: skip
                report(rows[-1:])
        heads = output_layer_times(min(repeats, 2) if quick else repeats)
    write_results(out, {"quick": quick, "settings": settings, "rows": rows,
                        "output_layers": heads, "c_step": int8_step.kernel()})  # fmt: skip
    print()
    report(rows)
    print()
    print_table(
        ["output layer", "weights", "float32 µs", "int8 µs", "float32 / int8"],
        [(f"{h['inputs']} x {h['outputs']:,}", f"{h['weights']:,}", f"{h['float32']:.1f}",
          f"{h['int8']:.1f}", f"{h['float32'] / h['int8']:.2f}x") for h in heads],
    )  # fmt: skip
    by_rows = [(r["model"], s) for r in rows for s in r.get("int8_step_us_by_rows", [])]
    if by_rows:
        print()
        print_table(
            ["model", "rows", "int8 step µs: C", "PyTorch's operators", "PyTorch / C"],
            [(model, s["rows"], f"{s['c']:,.0f}", f"{s['torch']:,.0f}",
              f"{s['torch'] / s['c']:.2f}x") for model, s in by_rows],
        )  # fmt: skip
    print(f"int8's C step: {int8_step.kernel() or 'not built (PyTorch operators alone)'}")
    print(f"wrote {out}")


def report(rows: list[dict]) -> None:
    """Batch-1 tokens/s (wall; per CPU-second in brackets), batch 16, bits per character."""

    def both(row: dict, name: str) -> str:
        return f"{row['tokens_per_s'][name]:,.0f} ({row['tokens_per_cpu_s'][name]:,.0f})"

    def ratio(row: dict, key: str) -> str:
        return f"{row[key]:.2f}x ({row['cpu_' + key]:.2f}x)"

    for row in rows:
        if "int8_refused" in row:
            print(f"{row['model']}: float32 {both(row, 'float32')} tok/s, layer "
                  f"{both(row, 'layer')}; int8 refused: {row['int8_refused']}")  # fmt: skip
    rows = [row for row in rows if "int8_refused" not in row]
    if not rows:
        return
    print_table(
        ["model", "threads", "layer tok/s", "cell fn tok/s", "float32 tok/s", "int8 tok/s",
         "int8 layers tok/s", "int8 torch tok/s", "int8 all tok/s", "int8/float32",
         "int8/int8 layers", "int8/int8 torch",
         "int8/layer", "step µs float32 / int8", f"b{BATCH} float32", f"b{BATCH} int8",
         "bpc float32", "bpc int8", "bpc change", "stepped bpc change"],
        [
            (
                r["model"], r["threads"], both(r, "layer"),
                both(r, "cell") if "cell" in r["tokens_per_s"] else "-",
                both(r, "float32"), both(r, "int8"),
                both(r, "int8 layers") if "int8 layers" in r["tokens_per_s"] else "-",
                both(r, "int8 torch"),
                both(r, "int8 all") if "int8 all" in r["tokens_per_s"] else "-",
                ratio(r, "int8_vs_float32"),
                f"{r['int8_vs_int8_layers']:.2f}x" if r["int8_vs_int8_layers"] else "-",
                f"{r['int8_vs_int8_torch']:.2f}x",
                ratio(r, "int8_vs_layer"),
                f"{r['step_us']['float32']:,.0f} / {r['step_us']['int8']:,.0f} "
                f"({r['step_float32_vs_int8']:.2f}x)",
                r[f"batch{BATCH}_tokens_per_s"]["float32"], r[f"batch{BATCH}_tokens_per_s"]["int8"],
                f"{r['bits_per_char']['float32']:.4f}", f"{r['bits_per_char']['int8']:.4f}",
                f"{r['bpc_change_percent']:+.3f}%",
                f"{r['stepped_bpc_change_percent']:+.3f}%",
            )
            for r in rows
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

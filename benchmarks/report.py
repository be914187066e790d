"""Collect the benchmarks' JSON results into Markdown tables.

    python -m benchmarks.report            # print the tables
    python -m benchmarks.report --write    # write them to docs/benchmarks-tables.md

--write replaces only what lies between the markers of its --doc (a new file gets them), so
it never touches docs/benchmarks.md, whose measurements carry their analysis by hand.

Reads benchmarks/results/{train_overhead,ptb_zaremba,wikitext2,timemachine_textbook,
shakespeare_5min}.json. A recipe with no result yet gets a row that says "not yet run", never
a number; each table names the machine and the command its figures came from.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from benchmarks.common import RESULTS_DIR, ROOT, BenchmarkCommand, median, pyplot
from benchmarks.wikitext2 import compare_softmaxes

DOC = ROOT / "docs" / "benchmarks-tables.md"
CURVES = ROOT / "docs" / "word-level-curves.png"
SHAKESPEARE_PLOT = ROOT / "docs" / "shakespeare-5min.png"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
NOT_RUN = "not yet run"
TABLES_HEAD = """# Benchmark tables

Written by `python -m benchmarks.report --write` from benchmarks/results/*.json: the figures
as the scripts last recorded them. [benchmarks.md](benchmarks.md) holds the measurements
quoted with their machines, commands and analysis.
"""


def load(name: str, results: Path = RESULTS_DIR) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def machine_name(machine: dict[str, Any]) -> str:
    gpu = machine.get("gpu") or "none"
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}, "
        f"GPU {gpu}"
    )


def commands_block(machine: str, commands: Iterable[str]) -> list[str]:
    """'Machine: ... Commands:' and the commands, one indented line each (a code block)."""
    return [f"Machine: {machine}. Commands:", "", *(f"    {c}" for c in sorted(set(commands))), ""]


def provenance(runs: dict[str, dict]) -> list[str]:
    """Which machines the runs came from, and the commands that made them."""
    machines = [r["machine"] for r in runs.values() if r.get("machine")]
    if not machines:
        return []
    names = sorted({machine_name(m) for m in machines})
    dates = sorted(m.get("date", "") for m in machines)
    where = f"{'; '.join(names)}; runs from {dates[0]} to {dates[-1]}"
    return commands_block(where, (m.get("command", "") for m in machines))


def overhead_section(data: dict | None) -> list[str]:
    lines = ["### Training overhead and compute efficiency", ""]
    if data is None:
        rows = [(name, NOT_RUN, "", "", "", "", "", "", "", "") for name in ("a", "b", "c")]
    else:
        rows = [
            (
                r["shape"],
                str(r["threads"]),
                fmt(r["charlm_tokens_per_s"], ",.0f"),
                fmt(r["bare_tokens_per_s"], ",.0f"),
                fmt(r["ratio"], ".3f"),
                fmt(r.get("overhead_ms_per_step"), "+.2f"),
                fmt(r["charlm_gflops"], ".1f"),
                fmt(r["charlm_efficiency"], ".1%"),
                fmt(r.get("bare_own_process_tokens_per_s"), ",.0f"),
                fmt(r.get("ratio_to_own_process"), ".3f"),
            )
            for r in data["rows"]
        ]
    # "alone": the bare loop in a fresh process, under glibc's malloc as a user's script is.
    headers = ["config", "threads", "charlm tok/s", "bare tok/s", "ratio (≥ 0.95)",
               "charlm's ms/step", "GFLOP/s", "of matmul rate", "bare alone tok/s",
               "ratio to bare alone"]  # fmt: skip
    lines += table(headers, rows)
    if data is not None:
        lines += ["", matmul_line(data), "", *overhead_provenance(data)]
        if data.get("variants"):
            lines += ["Changes to the bare loop that keep the model (`--variants`):", "", *table(
                ["config", "threads", "change to the bare loop", "tok/s", "speed-up"],
                [(v["config"], fmt(v.get("threads"), "d"), v["variant"],
                  fmt(v.get("variant_tokens_per_s"), ",.0f"),
                  fmt(v.get("speedup"), ".3f") if "speedup" in v else v.get("error", "")[:60])
                 for v in data["variants"]],
            )]  # fmt: skip
    return lines + [""]


def overhead_provenance(data: dict) -> list[str]:
    """The machine, and every command whose rows the tables show."""
    machine = data.get("machine") or {}
    fallback = machine.get("command", "")
    commands = (r.get("command", fallback) for r in data["rows"] + data.get("variants", []))
    return commands_block(f"{machine_name(machine)}; {machine.get('date')}", commands)


def malloc_section(runs: Sequence[dict | None]) -> list[str]:
    """charlm's malloc tuning against glibc's defaults and its first version, from
    benchmarks.malloc."""
    found = [d for d in runs if d]
    if not found:
        return []
    settings = list(found[0]["rows"][0]["tokens_per_s"])
    others = [s for s in settings if s != "tuned"]
    rows = [
        (r["config"], fmt(r["threads"], "d"), fmt(r["rounds"], "d"),
         *(fmt(r["tokens_per_s"][s], ",.0f") for s in settings),
         *(fmt(r["speedup"][s], ".3f") for s in others),
         *(fmt(r["peak_rss_mib"][s], ",.0f") for s in settings))
        for d in found for r in d["rows"]
    ]  # fmt: skip
    headers = ["config", "threads", "rounds", *(f"{s} tok/s" for s in settings),
               *(f"tuned / {s}" for s in others), *(f"{s} peak MiB" for s in settings)]  # fmt: skip
    lines = ["### glibc's malloc: charlm's tuning against the defaults", ""]
    lines += [*table(headers, rows), ""]
    commands = (d["machine"]["command"] for d in found)
    return lines + commands_block(machine_name(found[0]["machine"]), commands)


def int8_section(data: dict | None) -> list[str]:
    """int8 sampling against float32 (benchmarks.int8): speed at batch 1 and 16, bits/char."""
    lines = ["### int8 sampling on the CPU (batch-1 tokens/s, bits per character)", ""]
    if data is None:
        return [*lines, f"{NOT_RUN}.", ""]
    rows, refused = [], []
    for r in data["rows"]:
        speed = r["tokens_per_s"]
        if "int8_refused" in r:
            refused.append(f"{r['model']}: float32 {speed['float32']:,.0f} tok/s (layer call "
                           f"{speed['layer']:,.0f}); `--quantize int8` refused: "
                           f"\"{r['int8_refused']}\"")  # fmt: skip
            continue
        batch = r["batch16_tokens_per_s"]
        rows.append((
            r["model"], fmt(r["threads"], "d"), fmt(speed["layer"], ",.0f"),
            fmt(speed["float32"], ",.0f"), fmt(speed["int8"], ",.0f"),
            f"{r['int8_vs_float32']:.2f}× ({r['cpu_int8_vs_float32']:.2f}×)",
            f"{r['int8_vs_layer']:.1f}× ({r['cpu_int8_vs_layer']:.1f}×)",
            f"{batch['float32']:,.0f} / {batch['int8']:,.0f}",
            fmt(r["bits_per_char"]["float32"], ".4f"), fmt(r["bits_per_char"]["int8"], ".4f"),
            fmt(r["bpc_change_percent"] / 100, "+.3%"),
        ))  # fmt: skip
    headers = ["model", "threads", "layer call", "float32 step", "int8",
               "int8 / float32 (≥ 3.5×; per CPU-s)", "int8 / layer call", "batch 16 f32 / int8",
               "bpc f32", "bpc int8", "change (≤ 1%)"]  # fmt: skip
    lines += [*table(headers, rows), "", *(f"* {line}" for line in refused)]
    machine = data["machine"]
    where = f"{machine_name(machine)}; {machine.get('date')}"
    return [*lines, "", *commands_block(where, [machine["command"]])]


def word_encoding_section(data: dict | None) -> list[str]:
    """The word tokenizer's encoding speed (benchmarks.tokenize): best and median of the runs."""
    lines = ["### Word tokenizer: encoding speed on WikiText-2", ""]
    rows = [r for r in (data or {}).get("speed", []) if r["tokenizer"] == "word"]
    if not rows:
        return [*lines, f"{NOT_RUN}.", ""]
    (row,) = rows
    runs = [row["input_mb"] / seconds for seconds in row["runs_seconds"]]
    lines += table(
        ["input", "runs", "MB/s best", "MB/s median", "target"],
        [(f"{row['input_mb']:,.0f} MB", fmt(len(runs), "d"), fmt(max(runs), ",.1f"),
          fmt(median(runs), ",.1f"), "≥ 50")],
    )  # fmt: skip
    loop = data.get("word_against_loop")
    if loop:
        identical = "identical" if loop["ids_identical"] else "**different**"
        lines += ["", f"Against the Python loop it replaced, on {loop['input_mb']:g} MB "
                  f"(interleaved, medians of {loop['rounds']}): {loop['arrays_mb_per_second']:,.1f}"
                  f" vs {loop['loop_mb_per_second']:,.1f} MB/s, **{loop['speedup']:.1f}×**; "
                  f"ids {identical}."]  # fmt: skip
    machine = data["machine"]
    return [*lines, "", *commands_block(f"{machine_name(machine)}; {machine.get('date')}",
                                        [machine["command"]])]  # fmt: skip


def matmul_line(data: dict) -> str:
    """The fp32 matrix-multiply rates the efficiency column divides by."""
    rates = data.get("matmul_rates") or {
        threads: {"torch.mm": rate} for threads, rate in data["matmul_gflops"].items()
    }
    each = "; ".join(
        f"{threads} threads: " + ", ".join(f"{name} {rate:,.0f}" for name, rate in r.items())
        for threads, r in rates.items()
    )
    return f"fp32 2048² matmul, GFLOP/s — {each} (the column divides by the faster)."


def quality_section(
    title: str,
    data: dict | None,
    names: Sequence[str],
    headers: Sequence[str],
    row: Callable[[dict], Sequence[str]],
) -> list[str]:
    runs = (data or {}).get("runs", {})
    rows = []
    for name in [*names, *(n for n in runs if n not in names)]:
        run = runs.get(name)
        label = f"{name} (--quick)" if run and run.get("quick") else name
        rows.append([label, *row(run)] if run else [name, NOT_RUN, *[""] * (len(headers) - 2)])
    lines = [f"### {title}", "", *table(headers, rows), ""]
    return lines + provenance(runs)


def ptb_row(r: dict) -> list[str]:
    published = r["published"].get("test_perplexity") or r["published"].get(
        "target_test_perplexity"
    )
    return [fmt(r["test_perplexity"]), fmt(published), fmt(r.get("vs_published"), "+.1%"),
            fmt(r.get("best_val_perplexity")), fmt(r["tokens_per_s"], ",.0f"),
            fmt(r["train_seconds"] / 60, ".0f")]  # fmt: skip


def wikitext_row(r: dict) -> list[str]:
    return [fmt(r["test_perplexity"]), fmt(r["published"].get("test_perplexity")),
            fmt(r.get("vs_published"), "+.1%"), fmt(r.get("best_val_perplexity")),
            fmt(r["tokens_per_s"], ",.0f"), fmt(r["train_seconds"] / 60, ".0f")]  # fmt: skip


def softmax_comparison(full_runs: dict | None, speed_runs: dict | None) -> list[str]:
    """Adaptive against full softmax: perplexity from the whole runs, speed from both."""
    lines = []
    whole = compare_softmaxes((full_runs or {}).get("runs", {}))
    if whole:
        machine = full_runs["runs"]["untied-adaptive"]["machine"]
        caveat = " (a GPU shared by the runs: not a speed figure)" if machine.get("gpu") else ""
        lines.append(
            f"Adaptive vs full softmax (untied), whole runs: test perplexity "
            f"{whole['perplexity_change']:+.1%} (target: within 5%), training tokens/s "
            f"{whole['speedup']:.2f}× on {machine_name(machine)}{caveat}."
        )
    runs = (speed_runs or {}).get("runs", {})
    speed = compare_softmaxes(runs)
    if speed:
        full, adaptive = runs["untied-full"], runs["untied-adaptive"]
        lines.append(
            f"Speed alone (`--max-steps {full.get('max_steps')}`): "
            f"{adaptive['tokens_per_s']:,.0f} vs {full['tokens_per_s']:,.0f} tokens/s, "
            f"**{speed['speedup']:.2f}×** (target ≥ 2×) on {machine_name(full['machine'])}."
        )
    return [f"{line}\n" for line in lines]


def timemachine_row(r: dict) -> list[str]:
    return [fmt(r["train_perplexity"], ".3f"), fmt(r["published"]["train_perplexity"], ".1f"),
            fmt(r["steps"], "d"), fmt(r["train_seconds"], ".0f"),
            fmt(r["wall_seconds"], ".0f")]  # fmt: skip


def shakespeare_row(r: dict) -> list[str]:
    return [fmt(r["nats_per_char"], ".3f"), fmt(r["bits_per_char"], ".3f"), fmt(r["steps"], "d"),
            fmt(r["tokens_per_s"], ",.0f"), f"`{r['command']}`"]  # fmt: skip


def render(results: Path = RESULTS_DIR) -> str:
    lines = overhead_section(load("train_overhead", results))
    lines += malloc_section([load("malloc", results), load("malloc.1thread", results)])
    lines += int8_section(load("int8", results))
    lines += word_encoding_section(load("tokenize", results))
    lines += quality_section(
        "PTB word level (test perplexity)",
        load("ptb_zaremba", results),
        ["zaremba-small", "charlm-word"],
        [
            "recipe",
            "test ppl",
            "published / target",
            "vs",
            "best val ppl",
            "tokens/s",
            "train min",
        ],  # fmt: skip
        ptb_row,
    )
    wt2 = load("wikitext2", results)
    lines += quality_section(
        "WikiText-2 word level (test perplexity)",
        wt2,
        ["untied-full", "tied-full", "untied-adaptive"],
        ["run", "test ppl", "published", "vs", "best val ppl", "tokens/s", "train min"],
        wikitext_row,
    )
    lines += softmax_comparison(wt2, load("wikitext2.speed", results))
    lines += quality_section(
        "The Time Machine, d2l's experiment (training perplexity after 500 epochs)",
        load("timemachine_textbook", results),
        ["sequential", "random"],
        ["iterator", "train ppl", "book", "steps", "train s", "wall s"],
        timemachine_row,
    )
    lines += quality_section(
        "Tiny Shakespeare, 5 minutes (whole held-out text)",
        load("shakespeare_5min", results),
        ["defaults"],
        ["recipe", "nats/char (≤ 1.47)", "bits/char", "steps", "tokens/s", "command"],
        shakespeare_row,
    )
    return "\n".join(lines).rstrip() + "\n"


def plot_word_curves(results: Path, out: Path) -> Path | None:
    """Validation perplexity per epoch of the PTB and WikiText-2 runs, side by side."""
    benchmarks = {"PTB": load("ptb_zaremba", results), "WikiText-2": load("wikitext2", results)}
    panels = {
        title: {
            n: r["validation_curve"] for n, r in data["runs"].items() if r.get("validation_curve")
        }
        for title, data in benchmarks.items()
        if data
    }
    panels = {title: curves for title, curves in panels.items() if curves}
    if not panels:
        return None
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, points in curves.items():
            ax.plot([p["epoch"] for p in points], [p["val_perplexity"] for p in points],
                    marker=".", label=name)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation perplexity")
        ax.set_title(f"{title}, word level")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write(doc: Path, section: str) -> None:
    if not doc.exists():
        doc.write_text(f"{TABLES_HEAD}\n{BEGIN}\n{END}\n", encoding="utf-8")
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise click.ClickException(f"{doc} has no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{section}{END}{tail}", encoding="utf-8")


@click.command(cls=BenchmarkCommand)
@click.option("--write", "write_doc", is_flag=True, help="Replace the section in the doc.")
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    default=RESULTS_DIR,
    show_default=True,
    help="Where the JSON results are.",
)
@click.option(
    "--doc",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DOC,
    show_default=True,
    help="The Markdown file whose marked section --write replaces (a new file is created).",
)
def main(write_doc: bool, results: Path, doc: Path) -> None:
    """Print the benchmark tables, or write them into --doc."""
    section = render(results)
    if write_doc:
        write(doc, section)
        print(f"wrote the results section of {doc}")
        pictures = [plot_word_curves(results, doc.parent / CURVES.name)]
        shakespeare = results / "shakespeare_5min.png"  # drawn by benchmarks.shakespeare_5min
        if shakespeare.is_file():
            pictures.append(doc.parent / SHAKESPEARE_PLOT.name)
            shutil.copyfile(shakespeare, pictures[-1])
        for picture in filter(None, pictures):
            print(f"wrote {picture}")
    else:
        print(section, end="")


if __name__ == "__main__":
    main()

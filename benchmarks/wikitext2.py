"""WikiText-2, word level: PyTorch's word_language_model example, tied and untied, and the
full softmax against the adaptive one.

    python -m benchmarks.wikitext2                       # all three runs (hours on a CPU)
    python -m benchmarks.wikitext2 --recipe untied-adaptive
    python -m benchmarks.wikitext2 --quick               # a tiny slice: a smoke run
    python -m benchmarks.wikitext2 --max-steps 300 --recipe untied-full --recipe untied-adaptive
                                                         # speed only: the first 300 steps

Data: ../shared/corpora/wikitext-2/{train,valid,test}.txt as shipped with the example. The word
tokenizer with split=spaces keeps its tokens (each line break is a token, as the example's
<eos>): 33,278 words plus charlm's two spacing markers, which never occur here.

The example's configuration: 2 × 200 LSTM, embedding 200, dropout 0.2 on the embedded input,
between the layers and on the output, plain SGD at lr 20 divided by 4 whenever the epoch's
validation loss did not improve (the plateau schedule, factor 0.25, patience 1), clip 0.25,
batch 20, bptt 35, 6 epochs, embedding and output weights uniform in ±0.1 (here every weight).
The test perplexity is the checkpoint with the best validation loss, read as 10 streams — the
example's eval_batch_size. People measured 142.07 (untied) and 130.32 (tied) with it.

untied-adaptive is untied with `--softmax adaptive` (cutoffs 2000, 10000): the issue's target
is >= 2x the training tokens/s of untied-full at a test perplexity within 5%. On a CPU
the whole runs take hours; `--max-steps` measures the speed alone (its perplexities are those
of a model trained for a few hundred steps, and its results go to wikitext2.speed.json).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import click

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    device_option,
    print_table,
    threads_option,
)
from benchmarks.quality import (
    Recipe,
    best_or_last,
    file_perplexity,
    merge_run,
    ratio,
    run_recipe,
    slice_lines,
)
from charlm.training import TrainConfig
from charlm.training.run import DataOptions

WIKITEXT = CORPORA / "wikitext-2"
RESULTS = RESULTS_DIR / "wikitext2.json"
EVAL_STREAMS = 10
MODEL = {
    "cell": "lstm",
    "embed_size": 200,
    "hidden_size": 200,
    "num_layers": 2,
    "dropout": 0.2,
    "embed_dropout": 0.2,
    "output_dropout": 0.2,
    "init_range": 0.1,
}
TRAINING = TrainConfig(
    batch_size=20,
    seq_len=35,
    epochs=6,
    optimizer="sgd",
    momentum=0.0,
    lr=20.0,
    schedule="plateau",
    plateau_factor=0.25,
    plateau_patience=1,
    clip=0.25,
    iterator="sequential",
)
SOURCE = "pytorch/examples word_language_model (main.py defaults, --epochs 6)"


def _recipe(name: str, description: str, published: dict, **model) -> Recipe:
    return Recipe(
        name=name,
        description=description,
        tokenizer="word",
        tokenizer_options={"split": "spaces"},
        model={**MODEL, **model},
        training=TRAINING,
        published=published,
        source=SOURCE,
    )


RECIPES = {
    "untied-full": _recipe(
        "untied-full", "2x200 LSTM, untied, full softmax", {"test_perplexity": 142.07}
    ),
    "tied-full": _recipe(
        "tied-full",
        "2x200 LSTM, tied, full softmax",
        {"test_perplexity": 130.32},
        tie_weights=True,
    ),
    "untied-adaptive": _recipe(
        "untied-adaptive",
        "2x200 LSTM, untied, adaptive softmax (cutoffs 2000, 10000)",
        {},
        softmax="adaptive",
        cutoffs=[2000, 10000],
    ),
}
QUICK_LINES = {"train.txt": 300, "valid.txt": 40, "test.txt": 40}
QUICK_CUTOFFS = [100, 400]


def run(
    name: str,
    quick: bool,
    device: str,
    threads: int | None,
    work: Path,
    max_steps: int | None,
    results: Path,
) -> dict:
    """Train and test run `name`; a full run's checkpoint goes beside the `results` file
    (benchmarks/results/checkpoints/wt2/NAME by default), a quick or speed run's into `work`."""
    recipe = RECIPES[name]
    if max_steps:
        recipe = replace(recipe, training=replace(recipe.training, max_steps=max_steps))
    files = {f: WIKITEXT / f for f in QUICK_LINES}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise click.ClickException(f"WikiText-2 is missing: {', '.join(missing)}")
    if quick:
        cutoffs = QUICK_CUTOFFS if recipe.model.get("softmax") == "adaptive" else None
        recipe = recipe.quick(**({"cutoffs": cutoffs} if cutoffs else {}))
        files = {f: slice_lines(p, QUICK_LINES[f], work / "data") for f, p in files.items()}
    data = DataOptions(val_file=str(files["valid.txt"]), test_file=str(files["test.txt"]))
    out = (
        work / "checkpoints" / name
        if quick or max_steps
        else results.parent / "checkpoints" / "wt2" / name
    )
    summary = run_recipe(recipe, files["train.txt"], out, data=data, device=device,
                         threads=threads)  # fmt: skip
    summary["quick"] = quick
    summary["max_steps"] = max_steps
    tested = best_or_last(summary)
    summary["tested_checkpoint"] = tested
    summary["test_perplexity"] = file_perplexity(
        tested, files["test.txt"], streams=EVAL_STREAMS, seq_len=TRAINING.seq_len, device=device
    )
    summary["vs_published"] = ratio(
        summary["test_perplexity"], recipe.published.get("test_perplexity")
    )
    return summary


def compare_softmaxes(runs: dict) -> dict | None:
    """Adaptive against full softmax (both untied): speed-up and perplexity change."""
    full, adaptive = runs.get("untied-full"), runs.get("untied-adaptive")
    if not full or not adaptive:
        return None
    return {
        "speedup": adaptive["tokens_per_s"] / full["tokens_per_s"],
        "perplexity_change": ratio(adaptive["test_perplexity"], full["test_perplexity"]),
    }


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny model on a few hundred lines (for CI).")
@click.option(
    "--recipe",
    "names",
    type=click.Choice(list(RECIPES)),
    multiple=True,
    help="Which run; repeatable.  [default: all]",
)
@device_option()
@threads_option()
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stop each run after this many steps: a speed measurement.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON results file.  [default: benchmarks/results/wikitext2.json, or "
    "wikitext2.quick.json with --quick, wikitext2.speed.json with --max-steps; a full "
    "run's checkpoints go to checkpoints/wt2/ beside it]",
)
def main(
    quick: bool,
    names: tuple[str, ...],
    device: str,
    threads: int | None,
    max_steps: int | None,
    out: Path | None,
):
    """Word-level WikiText-2 with the word_language_model example's settings."""
    suffix = ".quick.json" if quick else ".speed.json" if max_steps else ".json"
    out = out or RESULTS.with_suffix(suffix)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(RECIPES):
            summary = run(name, quick, device, threads, Path(tmp), max_steps, out)
            content = merge_run(out, summary)
    runs = content["runs"]
    print_table(
        ["run", "test ppl", "published", "vs published", "val ppl", "tokens/s", "train s"],
        [
            (
                name,
                r["test_perplexity"],
                r["published"].get("test_perplexity"),
                "-" if r["vs_published"] is None else f"{r['vs_published']:+.1%}",
                r["best_val_perplexity"],
                r["tokens_per_s"],
                r["train_seconds"],
            )
            for name, r in runs.items()
        ],
    )
    comparison = compare_softmaxes(runs)
    if comparison:
        print(
            f"adaptive vs full softmax: {comparison['speedup']:.2f}x tokens/s, test perplexity "
            f"{comparison['perplexity_change']:+.1%} (target: >= 2x, within 5%)"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Penn Treebank, word level: Zaremba et al. (2014)'s small LSTM, and charlm's word recipe.

    python -m benchmarks.ptb_zaremba                          # both recipes (hours on a CPU)
    python -m benchmarks.ptb_zaremba --recipe zaremba-small   # one of them
    python -m benchmarks.ptb_zaremba --quick                  # a tiny slice: a smoke run

Data: ../shared/corpora/ptb/ptb.{train,valid,test}.txt, Mikolov's split. The word tokenizer
with split=spaces keeps PTB's own tokens (its literal <unk> is charlm's unknown token, each
line break a token, like <eos>), so the vocabulary is PTB's 10,000 words plus charlm's two
spacing markers, which never occur in PTB and soon get no probability.

zaremba-small is the paper's "small" configuration exactly as TensorFlow's ptb_word_lm
tutorial runs it: 2 × 200 LSTM, embedding 200, no dropout, every weight uniform in ±0.1,
plain SGD (no momentum) at lr 1 for 4 epochs then halved every epoch, 13 epochs, batch 20,
20 unrolled steps, gradient norm clipped at 5. The paper's code and the tutorial minimise the
loss *summed* over the 20 steps (and averaged over the batch); charlm minimises the mean over
all tokens, whose gradient is 20 times smaller. The same update is lr 20 and clip 0.25 on the
mean: min(1, 5/‖20g‖)·20g = 20·min(1, 0.25/‖g‖)·g. (Run literally, lr 1 and clip 5 on the
mean loss train 20 times too slowly: test perplexity 162 after 13 epochs.) Published test
perplexity 114.5 (the paper), 115.91 (TensorFlow's reproduction). The test perplexity here
reads the test text as one stream in order, as the paper does (batch 1); the JSON also has it
over 20 streams (`test_perplexity_training_batches`, the final model).

charlm-word is charlm's recommended word-level recipe at the same size: tied embedding and
output (so 200 = 200), dropout 0.2 on the embedded input, between the layers and on the
output, SGD at lr 20 divided by 4 whenever validation stalls, clip 0.25, 35 steps,
40 epochs; tested with the checkpoint of best validation perplexity. Target: test perplexity
<= 100. (PyTorch's word_language_model README gives 87.17 for this configuration, a figure
first reported for PTB and later labelled WikiText-2; it was not measured here.)
"""

from __future__ import annotations

import tempfile
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

PTB = CORPORA / "ptb"
RESULTS = RESULTS_DIR / "ptb_zaremba.json"
WORDS = {"split": "spaces"}
ZAREMBA_STEPS = 20  # unrolled steps; the paper's loss is summed over them
RECIPES = {
    "zaremba-small": Recipe(
        name="zaremba-small",
        description="Zaremba et al. 2014, small: 2x200 LSTM, no dropout, SGD lr 1 halved "
        "each epoch after the 4th, 13 epochs",
        tokenizer="word",
        tokenizer_options=WORDS,
        model={
            "cell": "lstm",
            "embed_size": 200,
            "hidden_size": 200,
            "num_layers": 2,
            "dropout": 0.0,
            "init_range": 0.1,
        },
        training=TrainConfig(
            batch_size=20,
            seq_len=ZAREMBA_STEPS,
            epochs=13,
            optimizer="sgd",
            momentum=0.0,
            lr=1.0 * ZAREMBA_STEPS,  # lr 1 on the loss summed over the steps (see above)
            schedule="step",
            decay_factor=0.5,
            decay_start=4,
            clip=5.0 / ZAREMBA_STEPS,
            iterator="sequential",
        ),
        published={"test_perplexity": 114.5, "tensorflow_test_perplexity": 115.91},
        source="Zaremba, Sutskever, Vinyals (2014), Recurrent Neural Network Regularization, "
        "table 1 (non-regularized LSTM); TensorFlow models/tutorials/rnn/ptb SmallConfig",
    ),
    "charlm-word": Recipe(
        name="charlm-word",
        description="charlm's word recipe: 2x200 LSTM, tied, dropout 0.2, SGD lr 20 / 4 on "
        "plateau, clip 0.25, 40 epochs",
        tokenizer="word",
        tokenizer_options=WORDS,
        model={
            "cell": "lstm",
            "embed_size": 200,
            "hidden_size": 200,
            "num_layers": 2,
            "dropout": 0.2,
            "embed_dropout": 0.2,
            "output_dropout": 0.2,
            "tie_weights": True,
            "init_range": 0.1,
        },
        training=TrainConfig(
            batch_size=20,
            seq_len=35,
            epochs=40,
            optimizer="sgd",
            momentum=0.0,
            lr=20.0,
            schedule="plateau",
            plateau_factor=0.25,
            plateau_patience=1,
            clip=0.25,
            iterator="sequential",
        ),
        published={"target_test_perplexity": 100.0},
        source="the target of charlm's issue 11",
    ),
}
# The paper tests its final model; a run with validation-driven decay keeps its best one.
TEST_ON = {"zaremba-small": "last", "charlm-word": "best"}
QUICK_LINES = {"ptb.train.txt": 400, "ptb.valid.txt": 60, "ptb.test.txt": 60}


def run(
    name: str, quick: bool, device: str, threads: int | None, work: Path, results: Path
) -> dict:
    """Train and test recipe `name`; a full run's checkpoint goes beside the `results` file
    (benchmarks/results/checkpoints/ptb/NAME by default), a quick run's into `work`."""
    recipe = RECIPES[name]
    files = {f: PTB / f for f in QUICK_LINES}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise click.ClickException(f"PTB is missing: {', '.join(missing)}")
    if quick:
        recipe = recipe.quick()
        files = {f: slice_lines(p, QUICK_LINES[f], work / "data") for f, p in files.items()}
    data = DataOptions(val_file=str(files["ptb.valid.txt"]), test_file=str(files["ptb.test.txt"]))
    out = work / "checkpoints" / name if quick else results.parent / "checkpoints" / "ptb" / name
    summary = run_recipe(
        recipe, files["ptb.train.txt"], out, data=data, device=device, threads=threads
    )
    summary["quick"] = quick
    tested = best_or_last(summary) if TEST_ON[name] == "best" else summary["checkpoint"]
    summary["tested_checkpoint"] = tested
    # The paper reads the test text as one stream (batch 1); state carried throughout.
    summary["test_perplexity"] = file_perplexity(
        tested, files["ptb.test.txt"], streams=1, seq_len=1000, device=device
    )
    summary["vs_published"] = ratio(
        summary["test_perplexity"],
        recipe.published.get("test_perplexity") or recipe.published.get("target_test_perplexity"),
    )
    return summary


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny model on a few hundred lines (for CI).")
@click.option(
    "--recipe",
    "names",
    type=click.Choice(list(RECIPES)),
    multiple=True,
    help="Which recipe to run; repeatable.  [default: all]",
)
@device_option()
@threads_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"JSON results file.  [default: {RESULTS.relative_to(RESULTS_DIR.parents[1])}, "
    "or ptb_zaremba.quick.json with --quick; a full run's checkpoints go to checkpoints/ptb/ "
    "beside it]",
)
def main(quick: bool, names: tuple[str, ...], device: str, threads: int | None, out: Path | None):
    """Word-level PTB: Zaremba et al.'s small LSTM and charlm's recipe, test perplexity."""
    out = out or (RESULTS.with_suffix(".quick.json") if quick else RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(RECIPES):
            content = merge_run(out, run(name, quick, device, threads, Path(tmp), out))
    runs = content["runs"]
    print_table(
        ["recipe", "test ppl", "published", "vs published", "val ppl", "tokens/s", "train s"],
        [
            (
                name,
                r["test_perplexity"],
                r["published"].get("test_perplexity")
                or r["published"].get("target_test_perplexity"),
                "-" if r["vs_published"] is None else f"{r['vs_published']:+.1%}",
                r["val_perplexity"],
                r["tokens_per_s"],
                r["train_seconds"],
            )
            for name, r in runs.items()
        ],
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

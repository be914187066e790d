"""Surnames of 18 languages (the PyTorch tutorials' data): one model of labelled examples that
generates names of a chosen language and classifies names by Bayes' rule, against a character
5-gram naive-Bayes baseline (benchmarks/ngram.py).

    python -m benchmarks.names            # three 3-minute trainings, then the measurements
    python -m benchmarks.names --quick    # a smoke run: a tiny subset, seconds of training

The names are deduplicated (each name once per language) and split 80/10/10 by distinct name,
language by language, with seed 0; the splits are written as one file per language and every
model is trained from the command line with the defaults for examples and nothing else:

    charlm train TRAIN --labels files --examples lines --val VAL --max-time 3m

    conditional  the defaults: the language fed to the network at every step
    token        --label-input token: the language read once, in place of the start token
    unlabelled   --examples lines without --labels: the same network, no languages
    cpu-3m       conditional again, for as many steps as 3 minutes of one core's time give
                 (--max-steps from the first run's CPU seconds per step): what the recipe
                 does when the machine is not shared with other work

On the test split (less the names with a character that no training or validation name has,
which the models cannot read): accuracy, macro-F1, top-3 accuracy and milliseconds per name
(batches of 64 names, every language in one forward pass); nats per character given the
language (each name's end counts as a character), and the same for the model without
languages, which is what the conditioning is worth (in two parts: the unlabelled model against
the conditional model's own mixture over the languages, and that mixture against the model
given the language, which the labels' own information bounds). Generation: 100 names per
language at the default temperature; the share not among the training names, and the share
the baseline classifies as the language asked for (averaged over languages). `--temperatures
0.8,0.9,1` measures generation at each (the first is the table's), since temperature trades the
one share for the other; `--guidance 0,1,2` does the same for label guidance (`charlm generate
--guidance`), at every temperature.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    print_table,
    results_option,
    threads_option,
    write_results,
)
from benchmarks.ngram import NaiveBayes
from charlm.corpus import ExampleSet, read_examples, split_examples
from charlm.metrics import confusion_matrix, macro_f1, top_k_accuracy
from charlm.sampling import evaluate_examples, load

NAMES = CORPORA / "names"
SEED = 0
RUNS = {
    "conditional": ["--labels", "files"],
    "token": ["--labels", "files", "--label-input", "token"],
    "unlabelled": [],
    "cpu-3m": ["--labels", "files"],
}
BUDGET_SECONDS = 180
QUICK_MODEL = ["--hidden", "16", "--embed", "8"]
QUICK_LABELS = ["--label-size", "4"]  # for the runs that join a label vector to every input


def write_split(part: ExampleSet, directory: Path) -> Path:
    """One file per language, one name a line: the layout `--labels files` reads."""
    directory.mkdir(parents=True, exist_ok=True)
    for label in part.label_names:
        names = [t for t, lab in part.pairs() if lab == label]
        (directory / f"{label}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return directory


def train(
    name: str, split: Path, out: Path, budget: list[str], threads: int | None, quick: bool,
    reuse: bool = False,
):  # fmt: skip
    """`charlm train` as a user types it; its wall time as the machine gave it, and the CPU
    time the process got (kept in `out`/run.json, which `--skip-training` reads back)."""
    record = out / "run.json"
    if reuse and record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    command = [sys.executable, "-m", "charlm", "train", str(split / "train"), "--examples",
               "lines", *RUNS[name], "--val", str(split / "val"), *budget, "--out", str(out),
               "--overwrite", "--device", "cpu"]  # fmt: skip
    command += ["--threads", str(threads)] if threads else []
    command += QUICK_MODEL if quick else []
    every_step = "--labels" in RUNS[name] and "token" not in RUNS[name]
    command += QUICK_LABELS if quick and every_step else []
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"{name}: charlm train failed: {done.stderr.strip()[-500:]}")
    results = json.loads((out / "config.json").read_text(encoding="utf-8"))["results"]
    found = {
        "command": " ".join(command[1:]),
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": _children_cpu() - cpu_before,
        "steps": results["steps"],
        "epochs": results["epochs"],
        "train_seconds": results["train_seconds"],
        "best_val_perplexity": results["best_val_perplexity"],
    }
    record.write_text(json.dumps(found), encoding="utf-8")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def baseline(train_set: ExampleSet, test: ExampleSet) -> tuple[NaiveBayes, dict[str, Any]]:
    model = NaiveBayes(train_set.texts, train_set.labels)
    started = time.perf_counter()
    table = np.array([model.log_likelihoods(text) for text in test.texts])
    seconds = time.perf_counter() - started
    truth = np.array([model.labels.index(label) for label in test.labels])
    joint = table + np.array(model.log_prior)
    matrix = confusion_matrix(truth, joint.argmax(axis=1), len(model.labels))
    return model, {
        "accuracy": float(np.trace(matrix) / len(truth)),
        "macro_f1": macro_f1(matrix),
        "top3_accuracy": top_k_accuracy(joint, truth, 3),
        "nats_per_char": -float(table[np.arange(len(truth)), truth].sum()) / symbols(test),
        "ms_per_example": 1000 * seconds / len(test),
    }


def symbols(examples: ExampleSet) -> int:
    return sum(len(text) + 1 for text in examples.texts)  # each name's end is one


def per_label_nats(sampler, test: ExampleSet, labelled: bool) -> dict[str, float]:
    """Nats per character of each language's test names (given it, for a labelled model)."""
    found = {}
    for label in test.label_names:
        part = test.subset([i for i, lab in enumerate(test.labels) if lab == label])
        if not labelled:
            part = ExampleSet(part.texts)
        found[label] = evaluate_examples(sampler, part).nats_per_char
    return found


def generation(
    sampler, judge: NaiveBayes, training: set[str], count: int, setting: tuple[float, float]
) -> dict[str, Any]:
    temperature, guidance = setting
    per_label = {}
    for label in sampler.labels:
        names = sampler.generate(
            label=label, num_samples=count, seed=SEED, temperature=temperature, guidance=guidance
        )
        names = [n for n in names if n]  # an empty sample is no name: counted as a failure
        per_label[label] = {
            "novel": sum(n not in training for n in names) / count,
            "distinct": len(set(names)) / count,  # guidance and low temperatures repeat names
            "judged": sum(judge.predict(n) == label for n in names) / count,
            "judged_uniform": sum(judge.predict(n, "uniform") == label for n in names) / count,
            "examples": names[:5],
        }
    return {
        "temperature": temperature,
        "guidance": guidance,
        "novel": float(np.mean([v["novel"] for v in per_label.values()])),
        "distinct": float(np.mean([v["distinct"] for v in per_label.values()])),
        "judged_macro": float(np.mean([v["judged"] for v in per_label.values()])),
        "judged_uniform_macro": float(np.mean([v["judged_uniform"] for v in per_label.values()])),
        "per_label": per_label,
    }


def judged_real(judge: NaiveBayes, test: ExampleSet, prior: str) -> float:
    """The judge on real names: the share of each language's test names it gives that
    language (its recall), averaged over languages: the mark generated names are held to."""
    shares = []
    for label in test.label_names:
        names = [t for t, lab in test.pairs() if lab == label]
        shares.append(sum(judge.predict(n, prior) == label for n in names) / len(names))
    return float(np.mean(shares))


def measure(
    run: str, out: Path, test: ExampleSet, judge, training, count, settings: list[tuple]
) -> dict[str, Any]:
    sampler = load(out / "best" if (out / "best").is_dir() else out, device="cpu")
    cpu = time.process_time()
    if run == "unlabelled":
        evaluation = evaluate_examples(sampler, ExampleSet(test.texts))
        found = evaluation.to_dict()
    else:
        evaluation = evaluate_examples(sampler, test)
        found = {k: v for k, v in evaluation.to_dict().items() if k not in ("confusion",)}
        # The same names without their labels: p(name) = Σ p(name | label) p(label).
        unlabelled = evaluate_examples(sampler, ExampleSet(test.texts))
        found["mixture_nats_per_char"] = unlabelled.nats_per_char
    found["cpu_ms_per_example"] = 1000 * (time.process_time() - cpu) / len(test)
    if run != "unlabelled":
        generated = [generation(sampler, judge, training, count, s) for s in settings]
        found["generation"] = generated[0]
        found["generation_by_temperature"] = [
            {k: v for k, v in g.items() if k != "per_label"} for g in generated
        ]
    found["per_label_nats"] = per_label_nats(sampler, test, run != "unlabelled")
    return found


def run_all(
    quick: bool, threads: int | None, work: Path, reuse: bool, settings: list[tuple]
) -> dict[str, Any]:
    """Train (unless `reuse`) and measure every run; generation at each (temperature,
    guidance) of `settings`."""
    if not NAMES.is_dir():
        raise click.ClickException(f"the names set is missing: {NAMES}")
    examples = read_examples(NAMES, labels="files", examples="lines").deduplicated()
    if quick:
        examples = examples.subset(range(0, len(examples), 20))
    train_set, val, test = split_examples(examples, 0.1, 0.1, SEED)
    # The models' vocabulary is the characters of the training and validation names; a test
    # name with another one cannot be scored by them (an error), so it is left out of both.
    seen = set("".join(train_set.texts + val.texts))
    readable = [i for i, text in enumerate(test.texts) if set(text) <= seen]
    left_out = [text for i, text in enumerate(test.texts) if i not in set(readable)]
    test = test.subset(readable)
    split = work / "split"
    for name, part in (("train", train_set), ("val", val), ("test", test)):
        write_split(part, split / name)
    judge, base = baseline(train_set, test)
    prior = np.log(np.array(list(train_set.label_counts().values())) / len(train_set))
    index = {label: i for i, label in enumerate(train_set.label_names)}
    bound = -sum(prior[index[label]] for label in test.labels) / symbols(test)
    results: dict[str, Any] = {
        "quick": quick,
        "examples": {"train": len(train_set), "val": len(val), "test": len(test)},
        "test_left_out": left_out,  # names with a character no training name has
        "baseline": base,
        "judge_on_test_names": {p: judged_real(judge, test, p) for p in ("learned", "uniform")},
        # What knowing the label can save a model that weighs the labels by their posterior,
        # at most: the labels' own information, in nats per character.
        "prior_bound": bound,
        "runs": {},
    }
    seconds = 10 if quick else BUDGET_SECONDS
    for name in RUNS:
        budget = ["--max-time", f"{seconds}s"]
        if name == "cpu-3m":  # the steps one core does in the budget, at the first run's pace
            first = results["runs"]["conditional"]
            steps = round(first["steps"] * seconds / first["cpu_seconds"])
            budget = ["--max-steps", str(steps), "--epochs", "1000"]
        trained = train(name, split, work / name, budget, threads, quick, reuse)
        trained |= measure(
            name, work / name, test, judge, set(train_set.texts), 10 if quick else 100,
            settings,
        )  # fmt: skip
        results["runs"][name] = trained
    conditional, plain = results["runs"]["conditional"], results["runs"]["unlabelled"]
    results["conditioning_gain"] = plain["nats_per_char"] - conditional["nats_per_char"]
    # The gain in two parts: how much better the labelled model's own mixture over the labels
    # models the names than the unlabelled model does, and what knowing the label saves the
    # labelled model (the prior bound less its classification's log-loss, per character).
    results["conditioning_parts"] = {
        "unlabelled_vs_mixture": plain["nats_per_char"] - conditional["mixture_nats_per_char"],
        "mixture_vs_given_label": conditional["mixture_nats_per_char"]
        - conditional["nats_per_char"],
    }
    gains = [plain["per_label_nats"][k] - v for k, v in conditional["per_label_nats"].items()]
    results["conditioning_gain_macro"] = float(np.mean(gains))
    return results


def report(results: dict[str, Any]) -> None:
    base, runs = results["baseline"], results["runs"]
    rows = [("5-gram naive Bayes", base["nats_per_char"], base["accuracy"], base["macro_f1"],
             base["top3_accuracy"], base["ms_per_example"], *[None] * 5)]  # fmt: skip
    for name, r in runs.items():
        gen = r.get("generation", {})
        rows.append((name, r["nats_per_char"], r.get("accuracy"), r.get("macro_f1"),
                     r.get("top3_accuracy"), r["ms_per_example"], gen.get("novel"),
                     gen.get("judged_macro"), r["steps"], r["wall_seconds"],
                     r["cpu_seconds"]))  # fmt: skip
    print_table(["model", "nats/char", "accuracy", "macro-F1", "top-3", "ms/name", "novel",
                 "judged", "steps", "train wall s", "train CPU s"], rows)  # fmt: skip
    keys = ("temperature", "guidance", "novel", "distinct", "judged_macro", "judged_uniform_macro")
    sweep = [
        (name, *(g.get(key, 0.0) for key in keys))  # results of old runs have no guidance
        for name, r in runs.items()
        for g in r.get("generation_by_temperature", [])
    ]
    if len(sweep) > len(runs):
        print_table(["model", "temperature", "guidance", "novel", "distinct", "judged",
                     "judged (uniform prior)"], sweep)  # fmt: skip
    parts = results["conditioning_parts"]
    print(
        f"conditioning worth {results['conditioning_gain']:.3f} nats/char (macro over languages "
        f"{results['conditioning_gain_macro']:.3f}) = {parts['unlabelled_vs_mixture']:.3f} "
        f"(the unlabelled model against the conditional's mixture over the labels) + "
        f"{parts['mixture_vs_given_label']:.3f} (the label given; the prior bounds this part at "
        f"{results['prior_bound']:.3f})"
    )


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A tiny subset and seconds of training (for CI).")
@threads_option()
@click.option(
    "--skip-training",
    is_flag=True,
    help="Measure the models already in --work (trained by an earlier run) again.",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the splits and models in this directory.  [default: a temporary one]",
)
@click.option(
    "--temperatures",
    default="0.8",
    show_default=True,
    help="Comma-separated sampling temperatures to generate at (the first is the table's).",
)
@click.option(
    "--guidance",
    default="0",
    show_default=True,
    help="Comma-separated label-guidance scales to generate at, each at every temperature.",
)
@results_option(RESULTS_DIR / "names.json")
def main(
    quick: bool, threads: int | None, skip_training: bool, work: Path | None,
    temperatures: str, guidance: str, out: Path,
) -> None:  # fmt: skip
    """Names of 18 languages: conditional LM against a 5-gram naive-Bayes baseline."""
    settings = [
        (t, g)
        for t in _numbers(temperatures, "--temperatures")
        for g in _numbers(guidance, "--guidance")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(quick, threads, work or Path(tmp), skip_training, settings)
    report(results)
    print(f"wrote {write_results(out, results)}")


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"not numbers: {text!r}", param_hint=option) from None


if __name__ == "__main__":
    main()

"""Text classifiers (`--task classify`) against naive-Bayes baselines, uni- and bidirectional.

    python -m benchmarks.classifiers [--sets toy,names,mr,zh-books] [--folds 2] [--max-time 5m]
                                     [--lm-time 3m] [--labelled-lm-time 3m] [--threads 1]
                                     [--work DIR] [--quick]

Every model is trained from the command line, as a user types it, with the defaults of
`--task classify` and nothing else but what the row names, its direction always said (the
defaults: bidirectional; a classifier of a small alphabet, the names, first pretrains its
encoder as language models of its training examples, `--pretrain-epochs`, which one of a large
vocabulary, MR's and the toy set's words or the Chinese reviews' characters, does not):

    toy    the textbook's set (train/test as given, read with ast.literal_eval): the textbook's
           protocol, all 58 training sentences for 100 epochs, no validation split
           (`--val-fraction 0 --epochs 100`); beside word 1+2-gram naive Bayes.
    names  split as benchmarks/names.py splits it (deduplicated, 80/10/10 by distinct name per
           language, seed 0; `--val` the validation split) and `--max-time`, each of
           `--char-models` (bi-pretrained, uni-pretrained: `--pretrain-epochs 10`, the default
           for names; bi-scratch, uni-scratch: `--pretrain-epochs 0`); `lm` is a language
           model of the training names without labels (`--examples lines`, `--lm-time`), and
           `init` the classifier started from it (`--init-from`, the ULMFiT recipe); a backward
           LM (`--reverse`) beside it starts the backward direction of a bidirectional one
           (ULMFiT's pair); a labelled LM of the training names (`--labelled-lm-time`, none
           by default) classifies by Bayes' rule, and joined with each classifier
           (`--ensemble`); beside the character 5-gram naive Bayes of benchmarks/names.py. A
           pretrained classifier keeps its forward LM, a labelled one (`--keep-lm`), and is
           scored with it (the row) and alone (the row below it).
    mr     sentence polarity, 10 folds (seed 0), the first `--folds` of them; each fold's
           classifier is trained on the other nine (its own 10% validation split) for
           `--max-time`; beside word 1+2-gram naive Bayes on the same folds. `--mr-models`
           picks the classifiers: `uni`, `bi`, `lm` (an LM of the fold's sentences first) and
           `wt2`, ULMFiT's three stages: a word LM of WikiText-2 (`--wt2-time`, trained once),
           the same LM on the fold's sentences with their own vocabulary (`--init-from` with
           `--tokenizer word`, `--lm-time`), then the classifier from it.
    zh-books  Chinese book reviews (deduplicated), a fixed 90/10 split (seed 0), `--max-time`,
           each of `--char-models`; beside character 1+2-gram naive Bayes.

Accuracy and macro-F1 on each test set with the learned prior (the default of `charlm
classify`) and the uniform one. Prints a table; writes benchmarks/results/classifiers.json.
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    names_from,
    print_table,
    results_option,
    write_results,
)
from benchmarks.names import baseline as names_baseline
from benchmarks.names import write_split
from charlm.corpus import ExampleSet, read_examples, split_examples
from charlm.data.prepare_examples import tokenizer_for
from charlm.sampling import Ensemble, Sampler, evaluate_examples, load

SENTIMENT = CORPORA / "sentiment"
NAMES = CORPORA / "names"
SEED = 0
QUICK_MODEL = ["--hidden", "16", "--embed", "8"]


def read_toy() -> tuple[ExampleSet, ExampleSet]:
    """The toy set's train and test dicts, read as literals (never run), as example sets."""
    source = (SENTIMENT / "toy" / "data.py").read_text(encoding="utf-8")
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            found[node.targets[0].id] = ast.literal_eval(node.value)

    def as_set(table: dict) -> ExampleSet:
        return ExampleSet(list(table), ["pos" if v else "neg" for v in table.values()])

    return as_set(found["train_data"]), as_set(found["test_data"])


def read_mr() -> ExampleSet:
    texts, labels = [], []
    for label in ("neg", "pos"):
        raw = (SENTIMENT / "mr" / f"rt-polarity.{label}").read_text(encoding="utf-8")
        lines = [line.strip() for line in raw.splitlines() if line.strip()]
        texts += lines
        labels += [label] * len(lines)
    return ExampleSet(texts, labels)


class WordNaiveBayes:
    """Multinomial naive Bayes over word 1..n-grams with add-one smoothing (learned prior);
    `chars`: over character n-grams instead, for text written without spaces (Chinese)."""

    def __init__(self, train: ExampleSet, n: int = 2, chars: bool = False) -> None:
        self.n = n
        self.chars = chars
        self.counts: dict[str, Counter] = {}
        self.docs: Counter = Counter(train.labels)
        for text, label in train.pairs():
            self.counts.setdefault(label, Counter()).update(self.grams(text))
        self.vocab = len(set().union(*self.counts.values()))
        self.totals = {label: sum(c.values()) for label, c in self.counts.items()}
        self.size = len(train)

    def grams(self, text: str) -> list[str]:
        if self.chars:
            words = [c for c in text if not c.isspace()]
        else:
            words = re.findall(r"\w+|[^\w\s]", text.lower())
        return [
            " ".join(words[i : i + k])
            for k in range(1, self.n + 1)
            for i in range(len(words) - k + 1)
        ]

    def predict(self, text: str) -> str:
        grams = self.grams(text)

        def score(label: str) -> float:
            counts, total = self.counts[label], self.totals[label] + self.vocab
            prior = math.log(self.docs[label] / self.size)
            return prior + sum(math.log((counts[g] + 1) / total) for g in grams)

        return max(self.counts, key=score)

    def measure(self, test: ExampleSet) -> dict[str, Any]:
        predicted = [self.predict(text) for text in test.texts]
        return _scores(test.labels, predicted, sorted(self.counts))


def _scores(truth: list[str], predicted: list[str], names: list[str]) -> dict[str, Any]:
    f1s = []
    for name in names:
        hits = sum(t == p == name for t, p in zip(truth, predicted, strict=True))
        guessed, actual = predicted.count(name), truth.count(name)
        f1s.append(2 * hits / (guessed + actual) if guessed + actual else 0.0)
    accuracy = float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)]))
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s))}


def write_labels(examples: ExampleSet, directory: Path) -> Path:
    """One file per label, one example a line (what `--labels files --examples lines` reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    for label in examples.label_names:
        lines = [t.replace("\n", " ") for t, lab in examples.pairs() if lab == label]
        (directory / f"{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def charlm_train(data: Path, out: Path, args: list[str], settings: dict) -> dict[str, Any]:
    """`charlm train DATA ARGS` in a subprocess; the command, its wall time and its results."""
    command = [sys.executable, "-m", "charlm", "train", str(data), *args, "--out", str(out),
               "--overwrite", "--device", "cpu", "--threads", str(settings["threads"])]  # fmt: skip
    command += QUICK_MODEL if settings["quick"] else []
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"charlm train failed: {done.stderr.strip()[-800:]}")
    results = json.loads((out / "config.json").read_text(encoding="utf-8"))["results"]
    shown = ["charlm", *command[3:]]
    return {"command": " ".join(shown), "wall_seconds": time.perf_counter() - started,
            "steps": results["steps"], "epochs": results["epochs"]}  # fmt: skip


def kept_model(out: Path) -> Path:
    """The run's best model, or its last where it had no validation."""
    return out / "best" if (out / "best").is_dir() else out


def classifier_scores(out: Path, test: ExampleSet) -> dict[str, Any]:
    """Accuracy and macro-F1 of the run's best model (its last without validation) on
    `test`, under the learned prior (charlm classify's default) and the uniform one; of a
    classifier that keeps its labelled LM (`--keep-lm`), also of the classifier alone."""
    sampler = load(kept_model(out), device="cpu")
    found = {}
    for prior in ("learned", "uniform"):
        found[prior] = _accuracy(sampler, test, prior)
    if sampler.generative is not None:
        sampler.generative = None
        found["learned"]["alone"] = _accuracy(sampler, test, "learned")
    return found


def _accuracy(sampler: Sampler, test: ExampleSet, prior: str) -> dict[str, float]:
    evaluation = evaluate_examples(sampler, test, prior=prior, unknown="skip")
    return {"accuracy": evaluation.accuracy, "macro_f1": evaluation.macro_f1}


def ensemble_scores(outs: list[Path], test: ExampleSet) -> dict[str, Any]:
    """Accuracy and macro-F1 on `test` of the runs' models classifying together, as
    `charlm evaluate FIRST --ensemble SECOND` does (learned prior)."""
    together = Ensemble([load(kept_model(out), device="cpu") for out in outs])
    evaluation = evaluate_examples(together, test, unknown="skip")
    return {"accuracy": evaluation.accuracy, "macro_f1": evaluation.macro_f1}


def classifier_row(
    data: Path, out: Path, args: list[str], test: ExampleSet, settings: dict, **row: Any
) -> dict[str, Any]:
    """`charlm train DATA ARGS` into `out`, then its scores on `test`: one row of the table,
    after the fields given in `row` (set, fold, model)."""
    trained = charlm_train(data, out, args, settings)
    scores = classifier_scores(out, test)
    return {**row, **scores["learned"], "uniform": scores["uniform"], **trained}


def classify_args(max_time: str, bidirectional: bool) -> list[str]:
    # The direction always said, though bidirectional is the default, so a row reads alone.
    direction = "--bidirectional" if bidirectional else "--no-bidirectional"
    return ["--labels", "files", "--examples", "lines", "--task", "classify",
            "--max-time", max_time, direction]  # fmt: skip


# The classifiers of characters (names, zh-books): with their encoder pretrained on the
# training examples (the default for the names' alphabet) or from scratch (the default for
# Chinese characters), each way.
PRETRAINED, SCRATCH = ["--pretrain-epochs", "10"], ["--pretrain-epochs", "0"]
CHAR_MODELS = {
    "bi-pretrained": ("bidirectional, pretrained", True, PRETRAINED),
    "uni-pretrained": ("unidirectional, pretrained", False, PRETRAINED),
    "bi-scratch": ("bidirectional, from scratch", True, SCRATCH),
    "uni-scratch": ("unidirectional, from scratch", False, SCRATCH),
}


def char_model_runs(settings: dict) -> dict[str, list[str]]:
    """Row name → arguments of each classifier of characters `--char-models` asks for."""
    runs = {}
    for key in settings["char_models"]:
        name, bidirectional, more = CHAR_MODELS[key]
        runs[name] = classify_args(settings["max_time"], bidirectional) + more
    return runs


def run_toy(work: Path, settings: dict) -> list[dict[str, Any]]:
    train, test = read_toy()
    data = write_labels(train, work / "toy")
    rows = [{"set": "toy", "model": "NB word 1+2-grams", **WordNaiveBayes(train).measure(test)}]
    epochs = "3" if settings["quick"] else "100"
    for bidirectional in (False, True):
        args = ["--labels", "files", "--examples", "lines", "--task", "classify",
                "--val-fraction", "0", "--epochs", epochs,
                "--bidirectional" if bidirectional else "--no-bidirectional"]  # fmt: skip
        out = work / f"toy-{'bi' if bidirectional else 'uni'}"
        name = "bidirectional" if bidirectional else "unidirectional"
        rows.append(classifier_row(data, out, args, test, settings, set="toy", model=name))
    return rows


def run_names(work: Path, settings: dict) -> list[dict[str, Any]]:
    examples = read_examples(NAMES, labels="files", examples="lines").deduplicated()
    if settings["quick"]:
        examples = examples.subset(range(0, len(examples), 20))
    train, val, test = split_examples(examples, 0.1, 0.1, SEED)
    seen = set("".join(train.texts + val.texts))  # as benchmarks/names.py: readable names
    test = test.subset([i for i, text in enumerate(test.texts) if set(text) <= seen])
    split = work / "names-split"
    for name, part in (("train", train), ("val", val), ("test", test)):
        write_split(part, split / name)
    _, base = names_baseline(train, test)
    rows = [{"set": "names", "model": "NB char 5-grams", "accuracy": base["accuracy"],
             "macro_f1": base["macro_f1"]}]  # fmt: skip
    val_args = ["--val", str(split / "val")]
    runs = {name: args + val_args for name, args in char_model_runs(settings).items()}
    lm = work / "names-lm"
    if settings["lm_time"]:
        lm_args = ["--examples", "lines", "--val", str(split / "val"), "--max-time",
                   settings["lm_time"]]  # fmt: skip
        rows.append({"set": "names", "model": "LM of the names (no labels)",
                     **charlm_train(split / "train", lm, lm_args, settings)})  # fmt: skip
        given = classify_args(settings["max_time"], False) + val_args
        runs["init-from LM, unidirectional"] = given + ["--init-from", str(lm)]
        # ULMFiT's pair: a backward LM too, which starts the backward direction.
        backward = work / "names-lm-backward"
        rows.append({"set": "names", "model": "backward LM of the names (--reverse)",
                     **charlm_train(split / "train", backward, [*lm_args, "--reverse"],
                                    settings)})  # fmt: skip
        runs["init-from both LMs, bidirectional"] = classify_args(
            settings["max_time"], True) + val_args + [
            "--init-from", str(lm), "--init-from", str(backward)]  # fmt: skip
    classifiers = {}
    for name, args in runs.items():
        out = classifiers[name] = work / f"names-{len(rows)}"
        rows.append(classifier_row(split / "train", out, args, test, settings, set="names",
                                   model=name))  # fmt: skip
    if settings["labelled_lm_time"]:
        # A labelled LM classifies by Bayes' rule, and errs otherwise than a classifier: each
        # classifier is scored again joined with it (docs/classifiers.md#two-models-together).
        labelled = work / "names-labelled-lm"
        lm_args = ["--labels", "files", "--examples", "lines", "--val", str(split / "val"),
                   "--max-time", settings["labelled_lm_time"]]  # fmt: skip
        rows.append(classifier_row(split / "train", labelled, lm_args, test, settings,
                                   set="names", model="labelled LM (Bayes' rule)"))  # fmt: skip
        for name, out in classifiers.items():
            rows.append({"set": "names", "model": f"{name} + labelled LM (--ensemble)",
                         **ensemble_scores([out, labelled], test)})  # fmt: skip
    return rows


def run_mr(work: Path, settings: dict) -> list[dict[str, Any]]:
    examples = read_mr()
    order = np.random.default_rng(SEED).permutation(len(examples))
    folds = np.array_split(order, 10)
    rows = []
    for fold in range(settings["folds"]):
        held = set(folds[fold].tolist())
        train = examples.subset([i for i in order if i not in held])
        test = examples.subset(folds[fold].tolist())
        if settings["quick"]:
            train, test = train.subset(range(0, len(train), 50)), test.subset(range(0, 100))
        rows.append({"set": "mr", "fold": fold, "model": "NB word 1+2-grams",
                     **WordNaiveBayes(train).measure(test)})  # fmt: skip
        data = write_labels(train, work / f"mr-{fold}")
        wanted = settings["mr_models"]
        runs = {}
        if "uni" in wanted:
            runs["unidirectional"] = classify_args(settings["max_time"], False)
        if "bi" in wanted:
            runs["bidirectional"] = classify_args(settings["max_time"], True)
        if "lm" in wanted:
            # ULMFiT's second stage without its first: an LM of the fold's training sentences
            # (their text only, one example a line), then the classifier started from it.
            lm = work / f"mr-{fold}-lm"
            text = _sentences(train, work / f"mr-{fold}-text")
            # The LM reads what the classifier would read by default (words, for sentences).
            tokens = tokenizer_for(train.texts)[0]
            lm_args = ["--examples", "lines", "--tokenizer", tokens,
                       "--max-time", settings["lm_time"]]  # fmt: skip
            rows.append({"set": "mr", "fold": fold, "model": "LM of the sentences (no labels)",
                         **charlm_train(text, lm, lm_args, settings)})  # fmt: skip
            uni = classify_args(settings["max_time"], False)
            runs["init-from LM, unidirectional"] = [*uni, "--init-from", str(lm)]
        if "wt2" in wanted:
            # ULMFiT's three stages: an LM of WikiText-2 (trained once), the same LM on the
            # fold's sentences with their own vocabulary (`--tokenizer word`: the words
            # WikiText-2 shares keep their rows), then the classifier from it.
            text = _sentences(train, work / f"mr-{fold}-text")
            lm = work / f"mr-{fold}-wt2-lm"
            lm_args = ["--init-from", str(wikitext_lm(work, settings)), "--tokenizer", "word",
                       "--max-time", settings["lm_time"]]  # fmt: skip
            rows.append({"set": "mr", "fold": fold,
                         "model": "WikiText-2 LM, then on the sentences (no labels)",
                         **charlm_train(text, lm, lm_args, settings)})  # fmt: skip
            uni = classify_args(settings["max_time"], False)
            runs["init-from WikiText-2 LM, unidirectional"] = [*uni, "--init-from", str(lm)]
        for name, args in runs.items():
            out = work / f"mr-{fold}-{len(rows)}"
            rows.append(classifier_row(data, out, args, test, settings, set="mr", fold=fold,
                                       model=name))  # fmt: skip
    return rows


def _sentences(examples: ExampleSet, directory: Path) -> Path:
    """The examples' text alone, one a line, as the book of a language model."""
    text = directory / "sentences.txt"
    directory.mkdir(parents=True, exist_ok=True)
    text.write_text("\n".join(examples.texts) + "\n", encoding="utf-8")
    return text


# ULMFiT's first stage for MR: a word LM of WikiText-2, lower-cased as MR is, with the shape
# of the classifier of words (one LSTM layer of 128, embedding 128), which takes its encoder.
WIKITEXT_LM = ["--tokenizer", "word", "--tokenizer-option", "lowercase=true", "--layers", "1",
               "--hidden", "128", "--embed", "128"]  # fmt: skip


def wikitext_lm(work: Path, settings: dict) -> Path:
    """The WikiText-2 language model, trained for `--wt2-time` the first time it is needed."""
    out = work / "wikitext-2-lm"
    if not (out / "config.json").is_file():
        book = CORPORA / "wikitext-2" / "train.txt"
        if settings["quick"]:  # its first 200 kB
            book = _head(book, work / "wikitext-2-head.txt", 200_000)
        charlm_train(book, out, [*WIKITEXT_LM, "--max-time", settings["wt2_time"]], settings)
    return out


def _head(source: Path, target: Path, size: int) -> Path:
    target.write_text(source.read_text(encoding="utf-8")[:size], encoding="utf-8")
    return target


def read_zh_books() -> ExampleSet:
    """The Chinese book reviews, one a line, labelled by their file (pos, neg); deduplicated,
    so that no review is in both the training and the test split."""
    return read_examples(SENTIMENT / "zh-books", labels="files", examples="lines").deduplicated()


def run_zh(work: Path, settings: dict) -> list[dict[str, Any]]:
    """zh-books on a fixed 90/10 split (seed 0): the classifier (characters, chosen by
    default for text without spaces) beside character 1+2-gram naive Bayes."""
    examples = read_zh_books()
    order = np.random.default_rng(SEED).permutation(len(examples))
    cut = int(len(order) * 0.9)
    train, test = examples.subset(order[:cut].tolist()), examples.subset(order[cut:].tolist())
    if settings["quick"]:
        train, test = train.subset(range(0, len(train), 100)), test.subset(range(0, 100))
    rows = [{"set": "zh-books", "model": "NB char 1+2-grams",
             **WordNaiveBayes(train, chars=True).measure(test)}]  # fmt: skip
    data = write_labels(train, work / "zh-books")
    for name, args in char_model_runs(settings).items():
        out = work / f"zh-books-{len(rows)}"
        rows.append(classifier_row(data, out, args, test, settings, set="zh-books", model=name))
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    table = []
    for row in rows:
        uniform = row.get("uniform") or {}
        table.append((row["set"], row.get("fold", "-"), row["model"], row.get("accuracy"),
                      row.get("macro_f1"), uniform.get("accuracy"), uniform.get("macro_f1"),
                      row.get("steps"), row.get("wall_seconds")))  # fmt: skip
        if "alone" in row:  # the same run's classifier without the labelled LM it keeps
            alone, name = row["alone"], f"  {row['model']}: classifier alone"
            table.append((row["set"], row.get("fold", "-"), name, alone["accuracy"],
                          alone["macro_f1"], None, None, None, None))  # fmt: skip
    print_table(["set", "fold", "model", "accuracy", "macro-F1", "acc (uniform)",
                 "F1 (uniform)", "steps", "wall s"], table)  # fmt: skip
    mr = [r for r in rows if r["set"] == "mr" and "accuracy" in r]  # not the LMs' rows
    for model in dict.fromkeys(r["model"] for r in mr):
        mine = [r["accuracy"] for r in mr if r["model"] == model]
        print(f"mr {model}: mean accuracy {np.mean(mine):.4f} over {len(mine)} fold(s)")


SETS = {"toy": run_toy, "names": run_names, "mr": run_mr, "zh-books": run_zh}


@click.command(cls=BenchmarkCommand)
@click.option(
    "--sets", default=",".join(SETS), callback=names_from(SETS), help="Which sets, comma-separated."
)
@click.option("--folds", type=int, default=2, help="MR: how many of the 10 folds to run.")
@click.option("--max-time", default="5m", help="Training time of each classifier.")
@click.option("--lm-time", default="3m", help="Names: the LM's training time ('' for none).")
@click.option(
    "--labelled-lm-time",
    default="",
    help="Names: a labelled LM's training time; each classifier is scored joined with it too "
    "(--ensemble; '' for none, the default: a pretrained classifier keeps its own).",
)
@click.option(
    "--mr-models",
    default="uni,bi",
    callback=names_from(("uni", "bi", "lm", "wt2")),
    help="MR: which classifiers: uni, bi, lm (an LM of the fold's sentences, then the "
    "classifier from it), wt2 (an LM of WikiText-2, then of the sentences, then the "
    "classifier: ULMFiT).",
)
@click.option("--wt2-time", default="15m", help="MR's wt2: the WikiText-2 LM's training time.")
@click.option(
    "--char-models",
    default=",".join(CHAR_MODELS),
    callback=names_from(CHAR_MODELS),
    help=f"Names and zh-books: which classifiers, of {', '.join(CHAR_MODELS)}.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, help="CPU threads of each training."
)
@click.option("--quick", is_flag=True, help="Tiny subsets and models, seconds of training.")
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the splits and models in this directory.  [default: a temporary one]",
)
@results_option(RESULTS_DIR / "classifiers.json")
def main(
    sets: str, folds: int, max_time: str, lm_time: str, labelled_lm_time: str, mr_models: str,
    wt2_time: str, char_models: str, threads: int, quick: bool, work: Path | None, out: Path,
) -> None:  # fmt: skip
    """Text classifiers against naive Bayes on toy, names and MR."""
    settings = {"folds": folds, "max_time": max_time, "lm_time": lm_time, "threads": threads,
                "wt2_time": wt2_time, "labelled_lm_time": labelled_lm_time,
                "quick": quick, "mr_models": mr_models.split(","),
                "char_models": char_models.split(",")}  # fmt: skip
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets.split(","):
            rows += SETS[name](work or Path(tmp), settings)
            write_results(out, {"settings": settings, "rows": rows})  # after each set
    report(rows)
    print(f"wrote {write_results(out, {'settings': settings, 'rows': rows})}")


if __name__ == "__main__":
    main()

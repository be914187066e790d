"""Text classifiers on the sentiment sets: the discriminative classifier against naive Bayes.

    python -m benchmarks.classifiers [--sets toy,mr] [--folds 1] [--max-time 300] [--quick]

toy: the textbook's own set (train/test as given); mr: sentence polarity, 10-fold
cross-validation (the first --folds folds), with a word-bigram naive-Bayes baseline beside it.
Prints a table and writes benchmarks/results/classifiers.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import charlm
from charlm.data import DataOptions
from charlm.training import TrainConfig, train_book

SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "sentiment"
RESULTS = Path(__file__).resolve().parent / "results" / "classifiers.json"


def read_toy() -> tuple[list, list]:
    """(text, label) pairs of the toy set's train and test dicts, read as literals, never run."""
    source = (SENTIMENT / "toy" / "data.py").read_text(encoding="utf-8")
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    as_pairs = lambda d: [(t, "pos" if v else "neg") for t, v in d.items()]  # noqa: E731
    return as_pairs(found["train_data"]), as_pairs(found["test_data"])


def read_mr() -> list[tuple[str, str]]:
    pairs = []
    for label in ("pos", "neg"):
        raw = (SENTIMENT / "mr" / f"rt-polarity.{label}").read_bytes().decode("latin-1")
        pairs += [(line.strip(), label) for line in raw.splitlines() if line.strip()]
    return pairs


def naive_bayes(train: list, test: list, n: int = 2) -> float:
    """Accuracy of multinomial naive Bayes over word 1..n-grams, add-one smoothing."""

    def grams(text: str) -> list[str]:
        words = re.findall(r"\w+|[^\w\s]", text.lower())
        return [
            " ".join(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)
        ]

    counts, totals, docs = {}, Counter(), Counter()
    for text, label in train:
        counts.setdefault(label, Counter()).update(grams(text))
        docs[label] += 1
    vocab = set().union(*counts.values())
    for label in counts:
        totals[label] = sum(counts[label].values())
    right = 0
    for text, label in test:
        scores = {
            lab: math.log(docs[lab] / len(train))
            + sum(math.log((counts[lab][g] + 1) / (totals[lab] + len(vocab))) for g in grams(text))
            for lab in counts
        }
        right += max(scores, key=scores.get) == label
    return right / len(test)


def write_files(pairs: list, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for label in sorted({lab for _, lab in pairs}):
        lines = [t.replace("\n", " ") for t, lab in pairs if lab == label]
        (folder / f"{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def classifier_accuracy(train: list, test: list, max_time: float, bidirectional: bool,
                        work: Path, steps: int | None = None) -> float:  # fmt: skip
    data = DataOptions(labels="files", examples="lines", val_fraction=0.1, test_fraction=0.0,
                       dedupe=False)  # fmt: skip
    training = TrainConfig(max_time=max_time, max_steps=steps, batch_size=32, lr=3e-3,
                           epochs=200, seed=0)  # fmt: skip
    run = train_book(
        str(write_files(train, work / "train")), out=work / "model", data=data,
        training=training, device="cpu", overwrite=True,
        model={"task": "classify", "bidirectional": bidirectional, "hidden_size": 128,
               "embed_size": 64, "num_layers": 1, "dropout": 0.0, "embed_dropout": 0.1,
               "output_dropout": 0.3},
    )  # fmt: skip
    sampler = charlm.load(run.best or run.checkpoint, device="cpu")
    found = sampler.classify([t for t, _ in test], top_k=1, unknown="skip")
    return float(np.mean([c.label == lab for c, (_, lab) in zip(found, test)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="toy,mr")
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="a few steps: checks it runs")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "toy" in args.sets:
            train, test = read_toy()
            for bidirectional in (False, True):
                started = time.perf_counter()
                acc = classifier_accuracy(
                    train,
                    test,
                    args.max_time,
                    bidirectional,
                    work / f"toy{bidirectional}",
                    20 if args.quick else 600,
                )
                rows.append(
                    {
                        "set": "toy",
                        "model": "bi" if bidirectional else "uni",
                        "accuracy": acc,
                        "seconds": time.perf_counter() - started,
                    }
                )
            rows.append({"set": "toy", "model": "nb-bigram", "accuracy": naive_bayes(train, test)})
        if "mr" in args.sets:
            pairs = read_mr()
            order = np.random.default_rng(0).permutation(len(pairs))
            folds = np.array_split(order, 10)
            for fold in range(args.folds):
                held = set(folds[fold].tolist())
                train = [pairs[i] for i in order if i not in held]
                test = [pairs[i] for i in folds[fold]]
                rows.append(
                    {
                        "set": "mr",
                        "fold": fold,
                        "model": "nb-bigram",
                        "accuracy": naive_bayes(train, test),
                    }
                )
                for bidirectional in (False, True):
                    started = time.perf_counter()
                    acc = classifier_accuracy(
                        train,
                        test,
                        args.max_time,
                        bidirectional,
                        work / f"mr{fold}{bidirectional}",
                        20 if args.quick else None,
                    )
                    rows.append(
                        {
                            "set": "mr",
                            "fold": fold,
                            "model": "bi" if bidirectional else "uni",
                            "accuracy": acc,
                            "seconds": time.perf_counter() - started,
                        }
                    )
    for row in rows:
        print(
            f"{row['set']:<4} {row.get('fold', '-')!s:>4} {row['model']:<10} {row['accuracy']:.4f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

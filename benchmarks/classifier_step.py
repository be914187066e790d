"""The classifier's training step on a CPU: padded rows against packed ones, and subnormal
floats flushed or not.

    python -m benchmarks.classifier_step             # MR sentences, characters, 20 steps a side
    python -m benchmarks.classifier_step --quick     # a few short steps: a smoke run for CI

Batches of 64 MR review sentences (about 115 characters each) read as characters, through the
classifier of `charlm train --task classify` (one 256-unit LSTM layer, embedding 32), trained
by Adam: forward, cross-entropy of the labels, backward, step. Four ways, interleaved step by
step so that each meets the same load:

* padded, concat pooling: charlm's encoder (charlm/models/padded.py), subnormals flushed as
  charlm's training loop does;
* packed, concat pooling: the same rows through PyTorch's packed sequences;
* padded, last-state pooling, subnormals flushed / not flushed: the gradient enters at the last
  step only and fades back through every earlier one.

Tokens per second (characters of the batch's rows) are medians over the steps after warm-up.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmarks.classifiers import read_mr
from benchmarks.common import (
    CORPORA,
    RESULTS_DIR,
    BenchmarkCommand,
    print_table,
    results_option,
    write_results,
)
from charlm.data import pad_examples
from charlm.models import ModelConfig, build_model, last_states, lengths_of, run_padded
from charlm.tokenizers import train_tokenizer

MR = CORPORA / "sentiment" / "mr"
BATCH = 64


def packed(rnn: torch.nn.Module, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """`run_padded`'s result through PyTorch's packed sequences (the encoder charlm had)."""
    rows = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, _ = pad_packed_sequence(rnn(rows)[0], batch_first=True, total_length=inputs.shape[1])
    return outputs


def batches(quick: bool) -> tuple[list, int]:
    """Batches of (inputs, lengths, labels) from MR, and the model's vocabulary size."""
    examples = read_mr()
    order = np.random.default_rng(0).permutation(len(examples))
    tokenizer = train_tokenizer("char", "\n".join(examples.texts))
    end_id, names = tokenizer.vocab_size, sorted(set(examples.labels))
    found = []
    for start in range(0, len(order) - BATCH + 1, BATCH):
        rows = order[start : start + BATCH]
        texts = [examples.texts[i][: 24 if quick else None] for i in rows]
        batch = pad_examples([tokenizer.encode_array(t) for t in texts], end_id)
        labels = torch.tensor([names.index(examples.labels[i]) for i in rows])
        found.append((batch.inputs, lengths_of(batch.mask), labels))
    return found, end_id + 1


def logits(model, inputs: torch.Tensor, lengths: torch.Tensor, encoder) -> torch.Tensor:
    """`RNNClassifier.forward` with `encoder` reading the rows (run_padded or packed)."""
    embedded = model.embed_dropout(model.embedding(inputs))
    outputs = encoder(model.rnn, embedded, lengths)
    features = model._pool(outputs, last_states(outputs, lengths, model.directions), lengths)
    return model.head(model.output_dropout(features))


def make_way(pooling: str, encoder, flush: bool, vocab: int):
    """One way to train: a fresh classifier, its optimizer, and one step of it."""
    torch.manual_seed(0)
    shape = {"hidden_size": 256, "embed_size": 32, "num_layers": 1, "dropout": 0.0}
    config = ModelConfig(vocab, **shape, task="classify", pooling=pooling, end_token=True,
                         num_labels=2)  # fmt: skip
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(inputs: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> None:
        torch.set_flush_denormal(flush)
        try:
            loss = F.cross_entropy(logits(model, inputs, lengths, encoder), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        finally:
            torch.set_flush_denormal(False)

    return step


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="Few, short steps (a smoke run).")
@click.option("--steps", type=int, default=20, show_default=True, help="Timed steps per way.")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads.")
@results_option(RESULTS_DIR / "classifier_step.json")
def main(quick: bool, steps: int, threads: int, out: Path) -> None:
    """Tokens per second of the classifier's step: padded or packed, flushed or not."""
    if not MR.is_dir():
        raise click.ClickException(f"needs the MR sentences: {MR} is absent")
    torch.set_num_threads(threads)
    found, vocab = batches(quick)
    steps, warmup = (3, 1) if quick else (steps, 2)
    ways = {
        "padded, concat, flushed": make_way("concat", run_padded, True, vocab),
        "packed, concat, flushed": make_way("concat", packed, True, vocab),
        "padded, last, flushed": make_way("last", run_padded, True, vocab),
        "padded, last, not flushed": make_way("last", run_padded, False, vocab),
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for index in range(warmup + steps):
        inputs, lengths, labels = found[index % len(found)]
        for name, step in ways.items():
            started = time.perf_counter()
            step(inputs, lengths, labels)
            if index >= warmup:
                rates[name].append(int(lengths.sum()) / (time.perf_counter() - started))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    print_table(["way", "tokens/s"], list(medians.items()))
    ratios = {
        "padded / packed": medians["padded, concat, flushed"] / medians["packed, concat, flushed"],
        "flushed / not": medians["padded, last, flushed"] / medians["padded, last, not flushed"],
    }
    print("; ".join(f"{name}: {ratio:.1f}x" for name, ratio in ratios.items()))
    results = {"steps": steps, "threads": threads, "batch": BATCH, "tokens_per_s": medians}
    write_results(out, {**results, "ratios": ratios})


if __name__ == "__main__":
    main()

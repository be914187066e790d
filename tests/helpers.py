"""Small builders shared by the tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from charlm.models import ModelConfig, build_model
from charlm.tokenizers.char import CharTokenizer
from charlm.training import SilentReporter, TrainConfig, TrainResult, train

# The command-line twin of tiny_model(): the smallest `charlm train` settings that still run
# every stage in well under a second. Shared by every test that trains through the CLI.
TINY_MODEL_ARGS = ["--hidden", "16", "--embed", "8", "--layers", "1"]
TINY_TRAIN_ARGS = [*TINY_MODEL_ARGS, "--batch-size", "4", "--seq-len", "8", "--device", "cpu"]


def tiny_model(
    vocab_size: int, cell: str = "gru", hidden: int = 32, layers: int = 1, seed: int = 0
):
    import torch

    torch.manual_seed(seed)
    return build_model(
        ModelConfig(
            vocab_size=vocab_size,
            cell=cell,
            embed_size=16,
            hidden_size=hidden,
            num_layers=layers,
            dropout=0.0,
        )
    )


def overfit(text: str, steps: int = 150, cell: str = "gru") -> tuple:
    """A tiny model trained to memorise `text`; returns (model, tokenizer, result)."""
    import torch

    tokenizer = CharTokenizer.train(text)
    ids = tokenizer.encode_array(text)
    model = tiny_model(tokenizer.vocab_size, cell=cell, hidden=64)
    config = TrainConfig(
        batch_size=4, seq_len=20, epochs=1000, lr=1e-2, max_steps=steps, schedule="constant"
    )
    result: TrainResult = train(model, ids, None, config, device=torch.device("cpu"))
    return model, tokenizer, result


def ids_of(text: str) -> tuple[CharTokenizer, np.ndarray]:
    tokenizer = CharTokenizer.train(text)
    return tokenizer, tokenizer.encode_array(text)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread for a while: tiny models are fastest so, and on a busy machine
    two threads waiting for each other at every operation can make a test 20 times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cli(*args: Any) -> Any:
    """`charlm ARGS...` in this process (click's CliRunner); its result."""
    from click.testing import CliRunner

    from charlm.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result: Any, after_progress: bool = False) -> str:
    """The one `Error:` line; it is all of stderr unless the run had begun reporting."""
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert errors == lines[-1:] and (after_progress or len(lines) == 1), result.stderr
    return lines[-1]


def write_labelled_names(root, copies: int = 1):
    """Two labels with their own alphabets, a file each, one name a line: ab.txt holds names of
    a and b, xyz.txt names of x, y and z (every name `copies` times). Returns `root`."""
    import itertools

    root.mkdir(parents=True, exist_ok=True)
    for label, alphabet in (("ab", "ab"), ("xyz", "xyz")):
        names = [
            "".join(chars).capitalize()
            for size in (2, 3, 4)
            for chars in itertools.product(alphabet, repeat=size)
        ][:40]
        lines = [name for name in names for _ in range(copies)]
        (root / f"{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


class Messages(SilentReporter):
    """A reporter that keeps what the run says."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

"""README.md's Python block runs as written, on tiny models where it names checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import charlm
from tests.conftest import TINY_TEXT
from tests.helpers import single_thread

README = Path(__file__).parent.parent / "README.md"
TINY_MODEL = {"hidden_size": 16, "num_layers": 1, "embed_size": 8}
SHORT = {"batch_size": 4, "seq_len": 16, "max_steps": 2}


def python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "README.md has one Python block"
    return blocks[0]


@pytest.mark.slow
def test_the_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("book.txt").write_text((TINY_TEXT + "It was a dark and stormy night.\n") * 20)
    names = tmp_path / "names"
    names.mkdir()
    for language, examples in (("Russian", "Ivanov Petrov"), ("English", "Smith Hill")):
        (names / f"{language}.txt").write_text(examples.replace(" ", "\n"), encoding="utf-8")
    with single_thread():
        # The checkpoints the block loads, as `charlm train` would have made them.
        charlm.train_book("book.txt", model=TINY_MODEL, training=SHORT, device="cpu")
        labelled = {"labels": "files", "examples": "lines", "val_fraction": 0.0}
        charlm.train_book(names, model=TINY_MODEL, training=SHORT, data=labelled, device="cpu")
        # The block trains for 5 minutes: the same call, for 2 steps of a tiny model.
        code = python_block().replace(
            'training={"max_time": 300}', f"training={SHORT!r}, model={TINY_MODEL!r}"
        )
        assert code != python_block(), "the train_book line the test shortens has changed"
        exec(compile(code, str(README), "exec"), {})
    assert Path("checkpoints/book-5m/config.json").is_file()
    assert "It was" in capsys.readouterr().out

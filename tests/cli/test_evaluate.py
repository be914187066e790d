"""`charlm evaluate`: scores files with a checkpoint, as a table or as JSON."""

import json
import math

import pytest
from click.testing import CliRunner

import charlm
from charlm.cli import cli
from tests.conftest import TINY_TEXT
from tests.tiny_models import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", TINY_TEXT))


@pytest.fixture
def texts(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(TINY_TEXT[:300], encoding="utf-8")
    second.write_text("a stitch in time saves nine.\n", encoding="utf-8")
    return first, second


@pytest.mark.slow
def test_json_gives_the_same_numbers_as_the_python_api(checkpoint, texts):
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, *map(str, texts), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["file"] for r in records] == [str(p) for p in texts]
    sampler = charlm.load(checkpoint, device="cpu")
    for record, path in zip(records, texts, strict=True):
        score = sampler.score(path.read_text(encoding="utf-8"))
        assert record["cross_entropy"] == pytest.approx(score.cross_entropy)
        assert record["num_characters"] == len(path.read_text(encoding="utf-8"))
        assert record["perplexity"] == pytest.approx(math.exp(record["cross_entropy"]))
        bits = record["cross_entropy"] * record["num_tokens"] / math.log(2)
        assert record["bits_per_character"] == pytest.approx(bits / record["num_characters"])


@pytest.mark.slow
def test_the_table_has_a_row_per_file(checkpoint, texts):
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, *map(str, texts)])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert "perplexity" in header and "bits/char" in header
    assert len(rows) == 2 and rows[0].startswith(str(texts[0]))


def test_problems_give_one_line(checkpoint, tmp_path):
    unseen = tmp_path / "greek.txt"
    unseen.write_text("Ωμέγα\n", encoding="utf-8")
    for args in ([checkpoint, str(tmp_path / "missing.txt")], [checkpoint, str(unseen)]):
        result = CliRunner().invoke(cli, ["evaluate", *args])
        assert result.exit_code == 1
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert CliRunner().invoke(cli, ["evaluate", checkpoint]).exit_code == 2  # no FILE

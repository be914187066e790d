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


def test_the_encoding_option_reads_the_files(checkpoint, texts, tmp_path):
    # UTF-16 without a BOM reads as binary unless the encoding is named.
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(texts[1].read_text(encoding="utf-8").encode("utf-16-le"))
    named = CliRunner().invoke(cli, ["evaluate", checkpoint, str(utf16), "--json",
                                     "--encoding", "utf-16-le"])  # fmt: skip
    assert named.exit_code == 0, named.output
    plain = CliRunner().invoke(cli, ["evaluate", checkpoint, str(texts[1]), "--json"])
    for key in ("cross_entropy", "num_characters"):
        assert json.loads(named.stdout)[key] == json.loads(plain.stdout)[key]
    guessed = CliRunner().invoke(cli, ["evaluate", checkpoint, str(utf16)])
    assert guessed.exit_code == 1 and "--encoding" in guessed.stderr
    misspelt = CliRunner().invoke(cli, ["evaluate", checkpoint, str(utf16), "--encoding", "foo"])
    assert misspelt.exit_code == 2 and "unknown encoding 'foo'" in misspelt.stderr


def test_problems_give_one_line(checkpoint, tmp_path):
    unseen = tmp_path / "greek.txt"
    unseen.write_text("Ωμέγα\n", encoding="utf-8")
    for args in ([checkpoint, str(tmp_path / "missing.txt")], [checkpoint, str(unseen)]):
        result = CliRunner().invoke(cli, ["evaluate", *args])
        assert result.exit_code == 1
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert CliRunner().invoke(cli, ["evaluate", checkpoint]).exit_code == 2  # no FILE


def test_each_file_is_reported_and_the_failures_are_rows(checkpoint, texts, tmp_path):
    unseen = tmp_path / "greek.txt"
    unseen.write_text("the fox Ωμέγα\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, str(texts[0]), str(unseen)])
    assert result.exit_code == 1
    rows = result.stdout.splitlines()
    assert rows[1].startswith(str(texts[0])) and rows[1].split()[-1].replace(".", "").isdigit()
    assert rows[2] == (
        f"{str(unseen):<{len(str(texts[0]))}}  not scored: 5 characters the model never saw "
        "(5 in all): 'Ω' ×1, 'έ' ×1, 'α' ×1, 'γ' ×1, 'μ' ×1"
    )
    assert result.stderr == (
        "Error: 1 of 2 files could not be scored (see their rows); use --unknown skip to drop "
        "them\n"
    )
    as_json = CliRunner().invoke(
        cli, ["evaluate", checkpoint, str(unseen), str(texts[1]), "--json"]
    )
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert records[0]["error"].startswith("5 characters the model never saw")
    assert records[1]["perplexity"] > 1


def test_unknown_skip_scores_what_the_model_knows(checkpoint, tmp_path):
    unseen = tmp_path / "greek.txt"
    unseen.write_text("the fox Ωμέγα\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, str(unseen)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {unseen} has 5 characters the model never saw (5 in all): 'Ω' ×1, 'έ' ×1, "
        "'α' ×1, 'γ' ×1, 'μ' ×1; use --unknown skip to drop them\n"
    )
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, str(unseen), "--unknown", "skip"])
    assert result.exit_code == 0, result.output
    sampler = charlm.load(checkpoint, device="cpu")
    score = sampler.score("the fox \n")
    assert sampler.score(unseen.read_text(encoding="utf-8"), unknown="skip") == score
    assert f"{score.perplexity:.3f}" in result.output and f"{9:>13,}" in result.output


def test_without_a_checkpoint_the_latest_is_used(checkpoint, texts, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(checkpoint, tmp_path / "checkpoints" / "tiny")
    result = CliRunner().invoke(cli, ["evaluate", str(texts[1])])
    assert result.exit_code == 0, result.output
    assert "using checkpoints/tiny" in result.stderr and str(texts[1]) in result.stdout
    result = CliRunner().invoke(cli, ["evaluate", "checkpoints/tiny"])
    assert result.exit_code == 2 and "missing FILE" in result.output

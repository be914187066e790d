"""Sampling and scoring with `load(path, quantize="int8")`, from Python and the command line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.errors import ConfigError
from charlm.models.quantized import Int8Recurrent
from charlm.sampling import load
from tests.conftest import TINY_TEXT
from tests.helpers import single_thread
from tests.tiny_models import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", TINY_TEXT))


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def test_an_int8_sampler_generates_reproducibly_and_scores_like_float32(checkpoint):
    int8 = load(checkpoint, quantize="int8")
    assert isinstance(int8.model.rnn, Int8Recurrent) and int8.device.type == "cpu"
    text = int8.generate("the ", 40, seed=3, temperature=0.8)
    assert len(text) == 44 and text == int8.generate("the ", 40, seed=3, temperature=0.8)
    assert "the " + "".join(int8.stream("the ", 40, seed=3, temperature=0.8)) == text
    float32 = load(checkpoint, device="cpu")
    sample = TINY_TEXT[:300]
    ratio = int8.score(sample).bits_per_character / float32.score(sample).bits_per_character
    assert abs(ratio - 1) < 0.01


def test_int8_refuses_a_gpu_and_an_unknown_scheme(checkpoint):
    with pytest.raises(ConfigError, match="unknown quantization"):
        load(checkpoint, device="cpu", quantize="int4")
    with pytest.raises(ConfigError, match="(?i)cpu"):  # no GPU here, or: int8 is CPU only
        load(checkpoint, device="cuda", quantize="int8")
    with pytest.raises(ConfigError, match="not the scratch implementation"):
        load(checkpoint, impl="scratch", quantize="int8")


def test_generate_and_evaluate_take_quantize(checkpoint, tmp_path):
    runner = CliRunner()
    args = ["generate", checkpoint, "--prefix", "the ", "--length", "30", "--seed", "1"]
    result = runner.invoke(cli, [*args, "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the ") and len(result.output) == 4 + 30 + 1
    prompt = runner.invoke(cli, [*args[:2], "--interactive", "--quantize", "int8"], input="the\n")
    assert prompt.exit_code == 0, prompt.output
    book = tmp_path / "held-out.txt"
    book.write_text(TINY_TEXT[:200], encoding="utf-8")
    scored = runner.invoke(cli, ["evaluate", checkpoint, str(book), "--quantize", "int8"])
    assert scored.exit_code == 0 and "bits/char" in scored.output, scored.output
    refused = runner.invoke(cli, [*args, "--quantize", "int4"])
    assert refused.exit_code == 2 and "int4" in refused.output
    # The scratch cells cannot be quantized (a fact of the model: 1); no GPU runs int8 (two
    # options that cannot go together: a usage error, 2).
    for wrong, code in ((["--impl", "scratch"], 1), (["--device", "cuda"], 2)):
        refused = runner.invoke(cli, [*args, "--quantize", "int8", *wrong])
        assert refused.exit_code == code, refused.output
        assert refused.output.startswith("Error: ") and refused.output.count("\n") == 1

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from tests.helpers import TINY_TRAIN_ARGS

FAST = [*TINY_TRAIN_ARGS, "--max-steps", "3"]


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


@pytest.fixture
def trained(tiny_book, tmp_path):
    out = tmp_path / "ckpt"
    result = run("train", tiny_book, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_train_saves_a_checkpoint_and_reports_perplexity(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["val_perplexity"] > 1 and config["train_perplexity"] > 1
    assert config["training"]["max_steps"] == 3


@pytest.mark.slow
def test_generate_writes_only_the_text_to_stdout(trained):
    result = run("generate", trained, "--prefix", "the ", "--length", "25", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the ") and len(result.stdout) == len("the ") + 25 + 1
    assert result.stderr == ""


@pytest.mark.slow
def test_generate_is_reproducible_with_a_seed(trained):
    args = ("generate", trained, "--length", "40", "--seed", "9")
    assert run(*args).stdout == run(*args).stdout


@pytest.mark.slow  # trains, then generates: end to end
def test_generate_without_a_checkpoint_uses_the_latest_and_says_which(
    tiny_book, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert run("train", tiny_book, *FAST).exit_code == 0
    result = run("generate", "--prefix", "a", "--length", "5", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "checkpoints/tiny" in result.stderr
    assert len(result.stdout) == 1 + 5 + 1


def test_every_command_explains_every_option_with_its_default():
    for command in ("train", "generate"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "[default:" in result.output
    assert "--temperature" in run("generate", "--help").output


@pytest.mark.slow
def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run(
        [sys.executable, "-m", "charlm", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in result.stdout and "generate" in result.stdout


def _bad_input_cases(tmp_path, tiny_book, trained):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t \n")
    short = tmp_path / "short.txt"
    short.write_text("just a few words")
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{")
    return [
        (["train", tmp_path / "missing.txt"], 1, "no such file"),
        (["train", empty], 1, "empty"),
        (["train", blank], 1, "only whitespace"),
        (["train", short, *FAST], 1, "too few for one batch"),
        (["train", binary], 1, "binary"),
        (["train", corrupt], 1, "no .txt files"),
        (["train", tiny_book, "--hidden", "0"], 2, "--hidden"),
        (["train", tiny_book, "--model", "transformer"], 2, "--model"),
        (["train", tiny_book, "--max-time", "soon"], 2, "duration"),
        (["train", tiny_book, "--val-fraction", "1.5"], 2, "--val-fraction"),
        (["train", tiny_book, "--lr", "-1"], 2, "--lr"),
        (["generate", trained, "--prefix", "Zebra"], 1, "'Z'"),
        (["generate", trained, "--temperature", "-1"], 2, "--temperature"),
        (["generate", trained, "--length", "-5"], 2, "--length"),
        (["generate", tmp_path / "nope"], 1, "does not exist"),
        (["generate", corrupt], 1, "not valid JSON"),
        (["generate", tiny_book], 1, "not a checkpoint directory"),
    ]


@pytest.mark.slow
def test_bad_input_gets_one_line_and_a_nonzero_exit(tmp_path, tiny_book, trained):
    for args, code, fragment in _bad_input_cases(tmp_path, tiny_book, trained):
        result = run(*args)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), (args, result.stderr)
        assert fragment in lines[0], (args, lines[0])
        assert result.stdout == ""


def test_no_checkpoint_anywhere_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("generate")
    assert result.exit_code == 1
    assert "charlm train BOOK" in result.stderr


def test_charlm_help_does_not_import_torch():
    # PyTorch takes seconds to import; listing the commands must not wait for it.
    code = (
        "import sys\n"
        "from charlm.cli import main\n"
        "sys.argv = ['charlm', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and done.stdout.splitlines()[-1] == "False"


def test_the_command_list_shows_each_commands_own_summary():
    from charlm.cli import COMMANDS

    for name, (_, summary) in COMMANDS.items():
        command = cli.get_command(None, name)
        assert command.help.strip().splitlines()[0] == summary, name


def test_a_misspelled_tokenizer_gets_a_suggestion(tiny_book):
    result = run("train", tiny_book, "--tokenizer", "words")
    assert result.exit_code == 2
    assert "no tokenizer named 'words'; did you mean 'word'?" in result.output
    assert "install" not in result.output


@pytest.mark.slow
def test_choices_are_taken_in_any_case_and_one_step_is_one_step(tiny_book, tmp_path):
    out = tmp_path / "lstm"
    one_step = [*TINY_TRAIN_ARGS, "--max-steps", "1"]
    result = run(
        "train", tiny_book, "--out", out, *one_step, "--model", "LSTM", "--optimizer", "AdamW"
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["cell"] == "lstm" and config["training"]["optimizer"] == "adamw"
    assert "1 step," in result.output and "1 steps" not in result.output
    assert "test 0" not in result.output

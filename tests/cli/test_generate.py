"""`charlm generate`: every option from the command line, and the interactive prompt loop."""

import json

import pytest
from click.testing import CliRunner

import charlm
from charlm.cli import cli
from charlm.options import flag_name, option_fields
from charlm.sampling import SamplingOptions
from tests.conftest import TINY_TEXT
from tests.tiny_models import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", TINY_TEXT))


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["generate", *args], input=input)


@pytest.mark.slow
def test_generate_prints_the_prefix_and_its_continuation(checkpoint):
    result = run(checkpoint, "--prefix", "the ", "--length", "40", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the ") and len(result.output) == len("the ") + 40 + 1
    assert (
        result.output == run(checkpoint, "--prefix", "the ", "--length", "40", "--seed", "1").output
    )


@pytest.mark.slow
def test_sampling_options_are_passed_on(checkpoint):
    base = [checkpoint, "--prefix", "a", "--length", "60", "--seed", "2"]
    greedy = run(*base, "--temperature", "0").output
    assert greedy == run(*base, "--temperature", "0", "--seed", "9").output
    for extra in (["--top-k", "2"], ["--top-p", "0.5"], ["--repetition-penalty", "3"]):
        result = run(*base, *extra)
        assert result.exit_code == 0 and result.output != run(*base).output, extra


@pytest.mark.slow
def test_num_samples_prints_numbered_samples(checkpoint):
    result = run(checkpoint, "--prefix", "a", "--length", "20", "--num-samples", "3", "--seed", "5")
    assert result.exit_code == 0, result.output
    for number, seed in ((1, 5), (2, 6), (3, 7)):
        assert f"sample {number} (seed {seed}," in result.output
    alone = run(checkpoint, "--prefix", "a", "--length", "20", "--seed", "6").output
    assert alone in result.output  # sample 2 is what seed 6 gives alone


@pytest.mark.slow
def test_json_prints_one_object_per_sample(checkpoint):
    result = run(checkpoint, "--prefix", "th", "--length", "15", "--num-samples", "2", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["sample"] for r in records] == [1, 2]
    for record in records:
        assert record["prefix"] == "th" and len(record["text"]) == 15 and record["tokens"] == 15
        assert record["log_probability"] < 0 and isinstance(record["seed"], int)
    assert records[1]["seed"] == records[0]["seed"] + 1


@pytest.mark.slow
def test_stop_strings_with_escapes_end_the_sample(checkpoint):
    args = [checkpoint, "--prefix", "t", "--length", "300", "--seed", "3", "--json"]
    full = json.loads(run(*args).output)["text"]
    stop = full[5:7]
    record = json.loads(run(*args, "--stop", stop, "--stop", "\\n\\n").output)
    cut = min(i for i in (full.find(stop), full.find("\n\n")) if i >= 0)
    assert record["text"] == full[:cut] and record["stop"] in (stop, "\n\n")


@pytest.mark.slow
def test_prefix_file(checkpoint, tmp_path):
    path = tmp_path / "prefix.txt"
    path.write_text("a stitch in time\n" * 50, encoding="utf-8")
    result = run(checkpoint, "--prefix-file", str(path), "--length", "10", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("a stitch in time\n" * 50)
    assert run(checkpoint, "--prefix-file", str(path), "--prefix", "x").exit_code == 2


@pytest.mark.slow
def test_beam_width_prints_the_best_continuation_with_its_log_probability(checkpoint):
    result = run(checkpoint, "--prefix", "the", "--length", "8", "--beam-width", "3")
    assert result.exit_code == 0, result.output
    assert "beam search, log-probability -" in result.output
    result = run(checkpoint, "--length", "8", "--beam-width", "2", "--num-samples", "3")
    assert result.exit_code == 2 and "beam_width" in result.output


def test_min_p_reaches_the_sampler(checkpoint):
    # min-p 1 keeps only the most likely token: sampling at any seed is then greedy decoding.
    base = [checkpoint, "--prefix", "the ", "--length", "40", "--temperature", "1"]
    greedy = run(*base, "--temperature", "0").output
    for seed in ("1", "2"):
        assert run(*base, "--min-p", "1", "--seed", seed).output == greedy
    assert run(*base, "--min-p", "0.01", "--seed", "1").output != greedy


@pytest.mark.parametrize(
    "option",
    [
        ["--min-p", "1.5"],
        ["--min-p", "-0.1"],
        ["--min-p", "nan"],
        ["--beam-width", "2", "--min-p", "0.1"],
        ["--temperature", "-1"],
        ["--top-p", "0"],
        ["--top-p", "1.5"],
        ["--top-k", "0"],
        ["--length", "-5"],
        ["--num-samples", "0"],
        ["--beam-width", "0"],
        ["--stop", ""],
        ["--beam-width", "2", "--stop", "x"],
    ],
)
def test_bad_option_values_give_one_line_and_exit_2(checkpoint, option):
    result = run(checkpoint, *option)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_prefix_with_unseen_characters_fails_in_one_line(checkpoint, tmp_path):
    result = run(checkpoint, "--prefix", "“Hello,” she said — café Ωμέγα")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: the prefix has 11 characters the model never saw (11 in all): ',' ×1, "
        "'H' ×1, 'é' ×1, 'Ω' ×1, 'έ' ×1, 'α' ×1, 'γ' ×1, 'μ' ×1, '—' ×1, '“' ×1, '”' ×1; "
        "use --unknown skip to drop them"
    )
    assert "ÿ" not in result.output and len(result.output.strip().splitlines()) == 1
    prefix = tmp_path / "prefix.txt"
    prefix.write_text("the fox Ω", encoding="utf-8")
    result = run(checkpoint, "--prefix-file", prefix)
    assert result.exit_code == 1
    assert f"Error: {prefix} has 1 character the model never saw (1 in all): 'Ω' ×1;" in (
        result.output
    )
    skipped = run(checkpoint, "--prefix-file", prefix, "--unknown", "skip", "--length", "5")
    assert skipped.exit_code == 0 and skipped.output.startswith("the fox Ω")


@pytest.mark.slow
def test_interactive_loop_continues_prefixes_and_changes_settings(checkpoint):
    script = "\n".join(
        [
            "/temperature 0",
            "/length 12",
            "the ",
            "the ",
            "/top-p 7",
            "/min-p 2",
            "/bogus 1",
            "/settings",
            "Ω",
            "a",
        ]
    )
    result = run(checkpoint, "--interactive", input=script + "\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "temperature = 0\n" in out and "length = 12" in out
    continuations = [line for line in out.splitlines() if line.startswith("the ")]
    # greedy: the same prefix gets the same continuation; 12 tokens follow it
    assert len(continuations) == 2 and continuations[0] == continuations[1]
    assert len(continuations[0]) == len("the ") + 12
    assert "Error: /top-p 7: top_p must be in (0, 1]" in out
    assert "Error: /min-p 2: min_p must be in [0, 1], got 2.0" in out
    assert "unknown command /bogus" in out
    assert (  # an error does not end the loop ...
        "Error: the prefix has 1 character the model never saw (1 in all): 'Ω' ×1; "
        "type /unknown skip to drop them" in out
    )
    assert any(line.startswith("a") and len(line) == 1 + 12 for line in out.splitlines())


def test_the_command_line_and_python_share_their_defaults(checkpoint):
    result = run(checkpoint, "--prefix", "the ", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert result.output == charlm.load(checkpoint, device="cpu").generate("the ", seed=4) + "\n"


def test_the_prompt_has_a_command_for_every_option_and_explains_it(checkpoint):
    out = run(checkpoint, "--interactive", input="/help\n").output
    for field, spec in option_fields(SamplingOptions):
        assert f"/{flag_name(field, spec)[2:]} " in out
    assert "(a /stop string" in out  # the option's own help, read as a command


def test_prompt_commands_set_stop_strings_seeds_and_policies(checkpoint):
    script = ["/stop x", "/stop \\n", "/seed 5", "/unknown skip", "/settings"]
    script += ["/stop off", "/seed random", "/unknown default", "/unknown ignore", "/settings"]
    out = run(checkpoint, "--interactive", input="\n".join(script) + "\n").output
    first, second = out.split("  length = ")[1:]
    assert 'stop = "x", "\\n"' in first and "seed = 5" in first and "unknown = skip" in first
    assert "stop = none" in second and "seed = random" in second
    assert "unknown = unk where the tokenizer has <unk>, else error" in second
    assert "Error: /unknown ignore: unknown must be one of error, skip, unk" in out


@pytest.mark.slow
def test_the_prompt_speaks_the_users_language(checkpoint):
    script = ["/settings", "/temperature abc", "/top-k x", "/length 1.5", "/top-k 40"]
    script += ["/temperature", "quit", "the "]
    out = run(checkpoint, "--interactive", input="\n".join(script) + "\n").output
    settings = out.split("  length = 500\n")[1]
    assert "  top-k = no limit\n" in settings and "  top-p = 1\n" in settings
    assert "  stop = none\n" in settings and "  seed = random\n" in settings
    assert "None" not in out and "()" not in out and "could not convert" not in out
    assert "Error: /temperature abc: not a number (e.g. /temperature 0.8)" in out
    assert "Error: /top-k x: not a whole number (or off: no limit)" in out
    assert "Error: /length 1.5: not a whole number (e.g. /length 500)" in out
    assert "  top-k = 40\n" in out and "  temperature = 0.8\n" in out
    assert "the " not in out.split("quit")[-1]  # `quit` ended the loop: no continuation
    for word in ("exit", "/quit", "EXIT"):
        result = run(checkpoint, "--interactive", input=f"{word}\nthe \n")
        assert result.exit_code == 0 and "\nthe " not in result.output, word

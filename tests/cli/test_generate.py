"""`charlm generate`: every option from the command line, and the interactive prompt loop."""

import io
import itertools
import json

import click
import pytest
from click.testing import CliRunner

import charlm
from charlm.cli import cli
from charlm.cli.generate import write_samples
from charlm.cli.interactive import model_check, run_prompt_loop
from charlm.options import flag_name, option_fields
from charlm.sampling import Sampler, SamplingOptions
from tests.conftest import TINY_TEXT
from tests.tiny_models import save_tiny_checkpoint, untrained_names


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
def test_threads_are_the_commands_own(checkpoint, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: asked.append(n))
    asked = []
    assert run(checkpoint, "--length", "3", "--threads", "1").exit_code == 0
    assert asked == [1]


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
    # Taken as written: a line that reads like a Project Gutenberg marker stays in it.
    path.write_text("*** START OF THE PROJECT GUTENBERG EBOOK ***\nthe ", encoding="utf-8")
    marked = run(checkpoint, "--prefix-file", str(path), "--length", "3", "--unknown", "skip")
    assert marked.exit_code == 0 and marked.stdout.startswith("*** START OF"), marked.output
    piped = run(checkpoint, "--prefix-file", "-", "--length", "3", input="the dog ")
    assert piped.exit_code == 0 and piped.stdout.startswith("the dog "), piped.output


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
    assert "Error: /top-p 7: top-p must be in (0, 1]" in out
    assert "Error: /min-p 2: min-p must be in [0, 1], got 2.0" in out
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
    script += ["/temperature", "/quit", "the "]
    out = run(checkpoint, "--interactive", input="\n".join(script) + "\n").output
    settings = out.split("  length = 500\n")[1]
    assert "  top-k = no limit\n" in settings and "  top-p = 1\n" in settings
    assert "  stop = none\n" in settings and "  seed = random\n" in settings
    assert "None" not in out and "()" not in out and "could not convert" not in out
    assert "Error: /temperature abc: not a number (e.g. /temperature 0.8)" in out
    assert "Error: /top-k x: not a whole number (or off: no limit)" in out
    assert "Error: /length 1.5: not a whole number (e.g. /length 500)" in out
    assert "  top-k = 40\n" in out and "  temperature = 0.8\n" in out
    assert "the " not in out.split("/quit")[-1]  # /quit ended the loop: no continuation
    for word in ("/exit", "/quit", "/EXIT"):
        result = run(checkpoint, "--interactive", input=f"{word}\nthe \n")
        assert result.exit_code == 0 and "\nthe " not in result.output, word


def test_ctrl_c_stops_a_continuation_and_at_the_prompt_ends_the_session(checkpoint, monkeypatch):
    stream = Sampler.stream

    def interrupted(self, prefix, options=None):  # Ctrl-C after three pieces of "the "
        pieces = stream(self, prefix, options=options)
        if prefix == "the ":
            yield from itertools.islice(pieces, 3)
            raise KeyboardInterrupt
        yield from pieces

    monkeypatch.setattr(Sampler, "stream", interrupted)
    result = run(checkpoint, "--interactive", "--length", "5", "--seed", "1", input="the \na\n")
    assert result.exit_code == 0, result.output  # Ctrl-D ended it
    assert "(stopped)" in result.stderr
    sampler = charlm.load(checkpoint, device="cpu")
    stopped, then = sampler.generate("the ", length=3, seed=1), sampler.generate("a", 5, seed=1)
    assert result.stdout == f"{stopped}\n{then}\n"
    result = run(checkpoint, "--interactive", "--length", "5", input=CtrlCAtTheEnd(b"a\n"))
    assert result.exit_code == 130 and result.stderr.endswith("Aborted.\n")
    assert len(result.stdout) == len("a") + 5 + 1  # the continuation before Ctrl-C


class CtrlCAtTheEnd(io.BytesIO):
    """Input that, once read, is Ctrl-C at the prompt (a terminal's read raises it)."""

    def read(self, size=-1):
        return self._or_ctrl_c(super().read(size), size)

    def read1(self, size=-1):
        return self._or_ctrl_c(super().read1(size), size)

    @staticmethod
    def _or_ctrl_c(data: bytes, size: int) -> bytes:
        if size and not data:  # read(0) is how Click tells a binary stream
            raise KeyboardInterrupt
        return data


def test_help_names_options_that_are_not_commands_as_options(checkpoint):
    out = run(checkpoint, "--interactive", input="/help\n").stderr
    assert "(--labels)" in out and "/labels" not in out
    assert "toward its /label" in out  # --label is a command


def test_only_slash_quit_ends_the_prompt_and_double_slash_sends_a_slash(checkpoint):
    script = "/unknown skip\n//usr/bin\nquit\nEXIT\n/quit\nthe \n"
    result = run(checkpoint, "--interactive", "--length", "3", "--stop", "\\n", input=script)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # "/" is new to the model: /unknown skip drops it
    prefixes = ["/usr/bin", "quit", "EXIT"]
    assert len(lines) == 3 and all(map(str.startswith, lines, prefixes)), lines


def prompt(sampler: Sampler, script: list[str], options: SamplingOptions | None = None):
    """The prompt loop on `sampler` as `charlm generate --interactive` runs it."""

    @click.command()
    def command():
        run_prompt_loop(
            options or SamplingOptions(),
            lambda text, now: write_samples(sampler, text, now, False),
            check=model_check(sampler),
        )

    return CliRunner().invoke(command, input="\n".join(script) + "\n")


@pytest.mark.parametrize("word", ["off", "default"])
def test_off_restores_the_default_of_every_setting(word):
    values = {"length": "7", "temperature": "0.3", "top-k": "5", "top-p": "0.5", "min-p": "0.1",
              "repetition-penalty": "1.3", "stop": "x", "num-samples": "2", "beam-width": "2",
              "seed": "3", "unknown": "skip", "label": "xyz", "guidance": "1"}  # fmt: skip
    assert set(values) == {flag_name(f, spec)[2:] for f, spec in option_fields(SamplingOptions)}
    script = ["/settings"]
    for name, value in values.items():
        script += [f"/{name} {value}", f"/{name} {word}"]
    result = prompt(untrained_names(), [*script, "/settings"])
    assert result.exit_code == 0 and "Error" not in result.output, result.output
    for name, value in {**values, "stop": '"x"'}.items():  # each was set, then restored
        assert f"  {name} = {value}\n" in result.stderr, name
    before, after = (text.split("\n> ")[0] for text in result.stderr.split("> /settings\n")[1:])
    assert before == after and "label = none" in after and "guidance = 0" in after


def test_the_prompt_refuses_settings_the_model_can_never_use(checkpoint):
    book = charlm.load(checkpoint, device="cpu")
    script = ["/unknown unk", "/label Russian", "/guidance 3", "/seed -3", "/temperature inf"]
    out = prompt(book, [*script, "/settings"]).stderr
    assert (
        "Error: /unknown unk: the model's char tokenizer has no <unk> token; use /unknown skip "
        "to drop unseen characters\n" in out
    )
    assert "Error: /label Russian: this model was trained without labels" in out
    assert "Error: /guidance 3: guidance steers each sample toward its label: it needs a model " \
        "trained on labelled examples (--labels)\n" in out  # fmt: skip
    assert "Error: /seed -3: seed must be an integer >= 0 (or off for a random seed), got -3" in out
    assert "Error: /temperature inf: not a number (e.g. /temperature 0.8)" in out
    assert "unknown = unk where the tokenizer has <unk>, else error" in out  # all unchanged
    assert "label = none" in out and "guidance = 0\n" in out and "None" not in out
    names = prompt(untrained_names(), ["/label Russian", "/label xyz", "/guidance 2"]).stderr
    assert "Error: /label Russian: unknown label 'Russian'; the labels are: ab, xyz\n" in names
    assert "label = xyz" in names and "guidance = 2" in names
    started = prompt(book, ["the "], SamplingOptions(unknown="unk"))
    assert started.exit_code == 2 and "use --unknown skip" in started.output


def test_an_empty_line_draws_from_the_empty_prefix():
    names = untrained_names()
    script = ["/label xyz", "/seed 1", "/num-samples 3", "", "/quit"]
    result = prompt(names, script)
    assert result.exit_code == 0, result.output
    drawn = names.generate("", label="xyz", seed=1, num_samples=3, length=500)
    assert all(name in result.stdout for name in drawn), (drawn, result.stdout)

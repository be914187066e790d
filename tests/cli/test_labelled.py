"""The labelled-text commands: train on examples, generate a label, classify, evaluate."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from click.testing import CliRunner

import charlm
from charlm.cli import cli
from charlm.errors import ConfigError
from tests.conftest import TINY_TEXT
from tests.helpers import single_thread, write_labelled_names

TINY = ["--hidden", "24", "--embed", "8", "--layers", "1", "--dropout", "0", "--label-size", "4"]


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small labelled model trained from the command line: labels ab and xyz."""
    root = tmp_path_factory.mktemp("cli")
    names = write_labelled_names(root / "names", copies=2)
    args = ["train", str(names), "--labels", "files", "--examples", "lines", *TINY,
            "--batch-size", "8", "--lr", "0.02", "--max-steps", "150", "--val-fraction", "0.1",
            "--out", str(root / "model"), "--device", "cpu"]  # fmt: skip
    with single_thread():
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "duplicates: 68 examples repeat" in result.stderr
    assert "--label ab" in result.stderr  # how to sample it
    return root / "model"


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_generate_draws_examples_of_a_label_one_a_line(model):
    result = invoke("generate", model, "--label", "xyz", "--num-samples", "6", "--seed", "1",
                    "--temperature", "0.5", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    names = result.stdout.splitlines()
    assert len(names) == 6 and all(set(n.lower()) <= set("xyz") for n in names)


def test_a_model_of_one_line_examples_never_writes_a_line_break(model):
    sampler = charlm.load(model, device="cpu")
    newline = sampler.tokenizer.encode_array("\n")[0]  # joined the examples it was trained on
    assert sampler.never_drawn == [newline]
    with torch.no_grad():
        sampler.model.head.bias[newline] += 100.0  # a network that would write nothing else
    for guidance in (0.0, 2.0):
        names = sampler.generate(label="ab", num_samples=4, seed=3, guidance=guidance)
        assert names and not any("\n" in name for name in names)
    with pytest.raises(ConfigError, match="one-line examples: a prefix cannot hold a line"):
        sampler.generate("Ab\nba", label="ab")  # nor is given one to print


@pytest.mark.slow
def test_generate_guides_examples_toward_their_label(model):
    asked = ["--label", "ab", "--num-samples", "4", "--seed", "2", "--device", "cpu"]
    result = invoke("generate", model, *asked, "--guidance", "2", "--json")
    assert result.exit_code == 0, result.output
    guided = [json.loads(line)["text"] for line in result.stdout.splitlines()]
    sampler = charlm.load(model, device="cpu")
    assert guided == sampler.generate(label="ab", num_samples=4, seed=2, guidance=2.0)


@pytest.mark.slow
def test_an_unknown_label_is_one_line_listing_the_labels(model):
    result = invoke("generate", model, "--label", "qq", "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "the labels are: ab, xyz" in result.stderr


def test_beam_search_on_a_model_of_examples_is_a_usage_error(model):
    result = invoke("generate", model, "--label", "ab", "--beam-width", "3", "--device", "cpu")
    assert result.exit_code == 2 and "sample instead (--beam-width 1)" in result.stderr


@pytest.mark.slow
def test_classify_prints_each_labels_log_probability(model, tmp_path):
    result = invoke("classify", model, "Abab", "--top-k", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "> Abab" and lines[1].endswith(") ab") and lines[1].startswith("(-0.")
    assert len(lines) == 3
    # The help's example output keeps its lines (Click rewraps paragraphs without \b).
    assert "\n      > Hinton\n      (-0.47) Scottish\n" in invoke("classify", "--help").stdout
    texts = tmp_path / "texts.txt"
    texts.write_text("Zyx\n\nBaab\n", encoding="utf-8")
    result = invoke("classify", model, "--file", texts, "--json", "--prior", "uniform")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == ["Zyx", "Baab"]
    assert [r["labels"][0]["label"] for r in records] == ["xyz", "ab"]
    assert sum(label["score"] for label in records[0]["labels"]) == pytest.approx(1)


def test_classify_loads_the_model_as_generate_does(model):
    # --quantize int8: the same labels and probabilities as the Python API's int8 model.
    result = invoke("classify", model, "Abab", "Zyx", "--json", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    quantized = charlm.load(model, quantize="int8").classify(["Abab", "Zyx"])
    floats = charlm.load(model).classify(["Abab", "Zyx"])
    for record, int8, float32 in zip(records, quantized, floats, strict=True):
        expected = int8.to_dict()
        assert [x["label"] for x in record["labels"]] == [x["label"] for x in expected["labels"]]
        scores = [x["score"] for x in record["labels"]]
        assert scores == pytest.approx([x["score"] for x in expected["labels"]], rel=1e-6)
        # The int8 model's own numbers, not float32's (the runner-up differs by a few %).
        assert scores != pytest.approx([x["score"] for x in float32.to_dict()["labels"]], rel=1e-3)


def test_classify_reads_files_and_stdin_as_train_reads_books(model, tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Abab\nZyx\n".encode("utf-16-le"))
    result = invoke("classify", model, "--file", latin, "--json", "--encoding", "utf-16-le")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["Abab", "Zyx"]
    piped = CliRunner().invoke(cli, ["classify", str(model), "--file", "-", "--json"],
                               input="Abab\nZyx\n".encode("utf-16"))  # fmt: skip
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == result.stdout  # the BOM says UTF-16, as in a file
    for given, message in [
        (bytes(range(256)) * 4, "binary"),
        (b"", "standard input is empty"),
    ]:
        failed = CliRunner().invoke(cli, ["classify", str(model), "--file", "-"], input=given)
        assert failed.exit_code == 1 and failed.stderr.count("\n") == 1
        assert message in failed.stderr and "Traceback" not in failed.output


def test_classify_and_evaluate_say_which_option_gets_past_unseen_characters(model, tmp_path):
    result = invoke("classify", model, "Ab日本")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "the text 'Ab日本' has 2 characters the model never saw" in result.stderr
    assert "use --unknown skip to drop them" in result.stderr
    assert invoke("classify", model, "Ab日本", "--unknown", "skip").exit_code == 0
    result = invoke("classify", model, "日本", "--unknown", "skip")
    assert result.exit_code == 1 and "every piece of it is unknown" in result.stderr
    result = invoke("classify", model, "Ab\nab")  # one text: its line break shown escaped
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "> Ab\\nab"
    test = tmp_path / "test"
    test.mkdir()
    (test / "ab.txt").write_text("Abab\nAb日\n", encoding="utf-8")
    result = invoke("evaluate", model, test, "--labels", "files", "--examples", "lines")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "the text 'Ab日' has 1 character the model never saw" in result.stderr
    assert "use --unknown skip" in result.stderr
    # Skipped, an example of nothing the model knows is left out and counted, not an error.
    (test / "ab.txt").write_text("Abab\nAb日\n日本\n", encoding="utf-8")
    args = ["evaluate", model, test, "--labels", "files", "--examples", "lines", "--unknown"]
    result = invoke(*args, "skip", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == 2 and json.loads(result.stdout)["skipped"] == 1
    assert "(1 left out: nothing in them the model knows)" in invoke(*args, "skip").stdout


@pytest.mark.slow
def test_evaluate_reports_classification_and_draws_the_confusion_matrix(model, tmp_path):
    test = write_labelled_names(tmp_path / "test")
    plot = tmp_path / "confusion.png"
    result = invoke("evaluate", model, test, "--labels", "files", "--examples", "lines",
                    "--json", "--plot", plot, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["examples"] == 68 and report["accuracy"] > 0.9
    assert set(report) >= {"accuracy", "macro_f1", "top3_accuracy", "nats_per_char", "per_label"}
    assert plot.read_bytes().startswith(b"\x89PNG")
    plain = invoke("evaluate", model, test / "ab.txt", "--device", "cpu")  # the model's format
    assert plain.exit_code == 0 and "precision  recall" in plain.stdout
    assert "reading the files as the model's training data was read" in plain.stderr
    # Examples read without their labels have no confusion matrix: said before evaluating.
    unlabelled = invoke("evaluate", model, test / "ab.txt", "--examples", "lines", "--plot",
                        tmp_path / "none.png", "--device", "cpu")  # fmt: skip
    assert unlabelled.exit_code == 2 and "matrix of labelled examples: give --labels" in (
        unlabelled.stderr
    )
    assert not (tmp_path / "none.png").exists() and "nats/char" not in unlabelled.stdout


def test_the_commands_suggested_after_training_can_be_pasted_into_a_shell(tmp_path):
    names = write_labelled_names(tmp_path / "my names")
    (names / "ab.txt").rename(names / "a [b] c.txt")  # a space, and what Rich reads as markup
    out = tmp_path / "the model"
    result = invoke("train", names, "--labels", "files", "--examples", "lines", *TINY,
                    "--max-steps", "2", "--out", out, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stderr.splitlines() if "sample from it with" in line)
    command = line.split("sample from it with: ")[1].split("; ")[0]
    assert shlex.split(command) == ["charlm", "generate", str(out), "--label", "a [b] c"]


def test_labels_the_font_cannot_draw_are_numbered_in_the_plot_and_keyed(tmp_path):
    pytest.importorskip("matplotlib")
    from charlm.sampling import plot_key

    names = write_labelled_names(tmp_path / "names")
    (names / "ab.txt").rename(names / "好.txt")
    (names / "xyz.txt").rename(names / "差.txt")
    if plot_key(["好", "差"]) is None:
        pytest.skip("this machine's plot font draws CJK: nothing to number")
    assert plot_key(["Scottish", "Café ☺"]) is None  # drawn as they are
    result = invoke("train", names, "--labels", "files", "--examples", "lines", *TINY,
                    "--max-steps", "2", "--out", tmp_path / "model", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    plot = tmp_path / "confusion.png"
    result = invoke("evaluate", tmp_path / "model", names, "--plot", plot, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "the font lacks characters of the labels: numbered 1 好, 2 差" in result.stderr
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_a_label_chosen_but_absent_from_the_examples_has_no_recall_in_the_table(model, tmp_path):
    # Names of x, y and z filed under ab: the model calls them xyz, a label no example has.
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "ab.txt").write_text("Xyz\nZyx\nAb\n", encoding="utf-8")
    result = invoke("evaluate", model, tmp_path / "test", "--labels", "files", "--examples",
                    "lines", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("xyz "))
    assert row.split()[1:] == ["0.000", "-", "-", "0"]  # precision, recall, F1, support
    assert "macro-F1 leaves it out" in result.stdout
    args = ["--labels", "files", "--examples", "lines", "--json", "--device", "cpu"]
    as_json = json.loads(invoke("evaluate", model, tmp_path / "test", *args).stdout)
    assert as_json["macro_f1"] == as_json["per_label"]["ab"]["f1"]  # ab alone has examples


@pytest.mark.slow
def test_classify_and_evaluate_join_the_models_given_with_ensemble(model, tmp_path):
    # A model with itself: the mean of two equal log posteriors is the model's own.
    alone = invoke("classify", model, "Abab", "Zyx", "--json", "--device", "cpu")
    joined = invoke("classify", model, "Abab", "Zyx", "--json", "--ensemble", model)
    assert joined.exit_code == 0, joined.output
    for one, two in zip(alone.stdout.splitlines(), joined.stdout.splitlines(), strict=True):
        first, second = json.loads(one), json.loads(two)
        assert [x["label"] for x in first["labels"]] == [x["label"] for x in second["labels"]]
        scores = [x["score"] for x in second["labels"]]
        assert scores == pytest.approx([x["score"] for x in first["labels"]], abs=1e-6)
    test = write_labelled_names(tmp_path / "test")
    result = invoke("evaluate", model, test, "--labels", "files", "--examples", "lines",
                    "--json", "--ensemble", model, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] > 0.9 and report["nats_per_char"] is None
    plain = invoke("evaluate", model, test, "--labels", "files", "--examples", "lines",
                   "--ensemble", model, "--device", "cpu")  # fmt: skip
    assert "(2 models together, learned prior" in plain.stdout.splitlines()[0]
    result = invoke("classify", model, "Abab", "--ensemble", tmp_path / "nothing-here")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_classify_with_models_names_the_book_a_passage_comes_from(tmp_path):
    books = {"sea": "the ship sailed on the sea and the whale swam. " * 30,
             "garden": "roses grew in the garden by the wall of stone. " * 30}  # fmt: skip
    checkpoints = []
    for name, text in books.items():
        book = tmp_path / f"{name}.txt"
        book.write_text(text, encoding="utf-8")
        # <unk> lets each model score the other book's letters: what it learned for <unk>.
        result = invoke("train", book, "--out", tmp_path / name, *TINY[:6], "--batch-size", "4",
                        "--seq-len", "16", "--max-steps", "60", "--lr", "0.02", "--no-cache",
                        "--tokenizer-option", "unk=true", "--device", "cpu")  # fmt: skip
        assert result.exit_code == 0, result.output
        checkpoints.append(tmp_path / name)
    passage = tmp_path / "passage.txt"
    passage.write_text("the whale swam by the ship on the sea.", encoding="utf-8")
    result = invoke("classify", "--models", *checkpoints, "--file", passage, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["labels"][0]["label"] == "sea" and record["file"] == str(passage)
    assert record["labels"][0]["bits_per_character"] < record["labels"][1]["bits_per_character"]
    plain = invoke("classify", "--models", *checkpoints, "--file", passage)
    assert plain.stdout.splitlines()[1].split()[1] == "sea"
    # Every line carries its sign, the best one's too (its log-probability may be exactly 0).
    assert all(line.startswith("(-") for line in plain.stdout.splitlines()[1:])
    book_only = tmp_path / "garden-no-unk"
    trained = invoke("train", tmp_path / "garden.txt", "--out", book_only, *TINY[:6],
                     "--batch-size", "4", "--seq-len", "16", "--max-steps", "1", "--no-cache",
                     "--device", "cpu")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = invoke("classify", "--models", checkpoints[0], book_only, "--file", passage)
    assert result.exit_code == 1 and "--tokenizer-option unk=true" in result.stderr
    assert f"cannot read all of it: {passage} has" in result.stderr


CLASSIFIER_FROM_LM = ["train", "x", "--labels", "files", "--examples", "lines",
                      "--task", "classify", "--init-from", "lm"]  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["classify"], "missing CHECKPOINT"),
        (["classify", "--models", "a"], "two checkpoints or more"),
        (["classify", "--models", "a", "b"], "give them with --file"),
        (["classify", "--models", "a", "b", "--ensemble", "c"], "--ensemble joins labelled"),
        (["train", "x", "--labels", "columns"], "--labels"),
        (["train", "x", "--labels", "table", "--examples", "files"], "rows"),
        (
            ["train", "x", "--examples", "lines", "--pretrain-epochs", "2"],
            "--pretrain-epochs is for --task classify",
        ),
        ([*CLASSIFIER_FROM_LM, "--pretrain-epochs", "2"], "leave out --pretrain-epochs"),
        (["train", "x", "--label-input", "token"], "--label-input is for a model of labelled"),
        (
            ["train", "x", "--examples", "lines", "--label-size", "8"],
            "--label-size is for a model of labelled examples: give --labels",
        ),
        (
            ["train", "x", "--labels", "files", "--examples", "lines", "--iterator", "random"],
            "--iterator random cuts continuous text",
        ),
        (
            [*CLASSIFIER_FROM_LM[:-2], "--no-keep-lm", "--label-input", "token"],
            "with --no-keep-lm it keeps none",
        ),
        ([*CLASSIFIER_FROM_LM, "--label-size", "4"], "with --init-from it keeps none"),
        (
            [
                "train",
                "x",
                "--labels",
                "files",
                "--examples",
                "lines",
                "--label-input",
                "token",
                "--label-size",
                "8",
            ],
            "--label-input token reads the label as a token",
        ),  # fmt: skip
        *[
            ([*CLASSIFIER_FROM_LM[:-2], "--pretrain-epochs", "0", *more], message)
            for more, message in (
                (["--lr-decay-per-layer", "2"], "--lr-decay-per-layer is for the layers"),
                (["--no-gradual-unfreeze"], "--no-gradual-unfreeze is for the layers"),
                (["--label-input", "token"], "this one does not pretrain (--pretrain-epochs 0)"),
            )
        ],
        (["train", "x", "--freeze", "encoder"], "name the model to start from with --init-from"),
        ([*CLASSIFIER_FROM_LM, "--freeze", "encoder"], "--freeze is for language models"),
        (["train", "x", "--lr-decay-per-layer", "2.6"], "name the model to start from"),
        (
            ["train", "x", "--init-from", "m", "--lr-decay-per-layer", "2", "--freeze", "encoder"],
            "leave out --lr-decay-per-layer",
        ),
    ],
)
def test_command_lines_that_cannot_work_are_usage_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.slow
def test_a_language_model_fine_tuned_at_discriminative_rates_says_them(model, tmp_path):
    result = invoke("train", model.parent / "names", "--labels", "files", "--examples", "lines",
                    "--init-from", model, "--lr-decay-per-layer", "2", "--max-steps", "1",
                    "--out", tmp_path / "tuned", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    # embedding (with the label vectors), the LSTM layer, the head
    assert "each layer learns at 1/2 of the rate of the one above it (3 layers; the " in (
        result.stderr
    )
    assert "lowest at 0.25 of the head's rate)" in result.stderr
    saved = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert saved["training"]["lr_decay_per_layer"] == 2


@pytest.mark.slow
def test_a_book_model_refuses_a_label(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    trained = invoke("train", book, "--out", tmp_path / "m", *TINY[:6], "--batch-size", "4",
                     "--seq-len", "16", "--max-steps", "1", "--no-cache")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = invoke("generate", tmp_path / "m", "--label", "x", "--device", "cpu")
    assert result.exit_code == 2 and "trained without labels" in result.stderr
    result = invoke("generate", tmp_path / "m", "--guidance", "2", "--device", "cpu")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "guidance steers each sample toward its label" in result.stderr
    result = invoke("classify", tmp_path / "m", "word", "--device", "cpu")
    assert result.exit_code == 1 and "continuous text" in result.stderr
    result = invoke("evaluate", tmp_path / "m", book, "--ensemble", tmp_path / "m")
    assert result.exit_code == 2 and "--ensemble joins labelled models" in result.stderr


@pytest.mark.slow
def test_the_prompt_sets_the_label(model):
    result = CliRunner().invoke(
        cli,
        ["generate", str(model), "--interactive", "--seed", "1", "--temperature", "0.5",
         "--device", "cpu"],
        input="Z\n/label qq\n/label xyz\nZ\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "choose one of: ab, xyz" in result.stderr  # before /label
    assert "Error: /label qq: " in result.stderr  # refused when typed, as the label it lacks
    assert result.stdout.startswith("Z") and set(result.stdout.strip().lower()) <= set("xyz")


@pytest.mark.slow
def test_evaluate_reads_a_table_in_the_columns_the_model_was_trained_on(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    rows = [
        (name, path.stem) for path in sorted(names.iterdir()) for name in path.read_text().split()
    ]
    table = tmp_path / "names.csv"
    table.write_text("name,lang\n" + "".join(f"{n},{lang}\n" for n, lang in rows), encoding="utf-8")
    result = invoke("train", table, "--labels", "table", "--text-column", "name",
                    "--label-column", "lang", *TINY, "--max-steps", "5", "--out",
                    tmp_path / "model", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    plain = invoke("evaluate", tmp_path / "model", table, "--json")
    assert plain.exit_code == 0, plain.output
    said = " ".join(plain.stderr.split())
    assert "--labels table --text-column name --label-column lang" in said
    assert "--examples" not in said  # a table's rows are its examples
    named = invoke("evaluate", tmp_path / "model", table, "--labels", "table", "--json")
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["accuracy"] == json.loads(plain.stdout)["accuracy"]
    # Other columns, named without --labels: the model's table format, in these columns.
    other = tmp_path / "other.tsv"
    other.write_text("lang\tword\n" + "".join(f"{lang}\t{n}\n" for n, lang in rows), "utf-8")
    renamed = invoke("evaluate", tmp_path / "model", other, "--text-column", "word",
                     "--label-column", "lang", "--json")  # fmt: skip
    assert renamed.exit_code == 0, renamed.output
    assert json.loads(renamed.stdout)["accuracy"] == json.loads(plain.stdout)["accuracy"]
    # A model of lines has no columns to name.
    lines = invoke("train", names, "--labels", "files", "--examples", "lines", *TINY,
                   "--max-steps", "1", "--out", tmp_path / "lines", "--device", "cpu")  # fmt: skip
    assert lines.exit_code == 0, lines.output
    refused = invoke("evaluate", tmp_path / "lines", names / "ab.txt", "--text-column", "word")
    assert refused.exit_code == 2 and "name the columns of --labels table" in refused.stderr

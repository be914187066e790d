"""Checkpoint format versions and damaged or hostile checkpoints.

Every format charlm ever wrote keeps loading: each has a fixture below, built by the test
itself byte for byte as that version wrote it (not with today's save code). A damaged or
hand-edited checkpoint is refused with one CheckpointError line, never anything else.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

from charlm import checkpoint as ckpt
from charlm.checkpoint import load_checkpoint, read_config, save_checkpoint
from charlm.cli import cli
from charlm.errors import CheckpointError
from charlm.models import ModelConfig, build_model
from charlm.sampling import Sampler
from charlm.training import TrainConfig
from charlm.training.run import DataOptions, train_book
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, single_thread, tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def write_format_1(directory, text: str = TINY_TEXT, seed: int = 0):
    """A checkpoint exactly as charlm 0.1.0 wrote it (format 1).

    Its config has no tokenizer.package and no training_state; the char tokenizer state is
    only {"chars": ...}; the model section has the six settings 0.1.0 knew; the weights are
    a plain embedding → LSTM → linear, saved with safetensors' own writer. Returns the
    three layers, so that a test can compute what the loaded model must output.
    """
    chars = "".join(sorted(set(text)))
    torch.manual_seed(seed)
    embedding, lstm, head = (
        nn.Embedding(len(chars), 8),
        nn.LSTM(8, 16, 2, batch_first=True),
        nn.Linear(16, len(chars)),
    )
    tensors = {f"embedding.{k}": v for k, v in embedding.state_dict().items()}
    tensors |= {f"rnn.{k}": v for k, v in lstm.state_dict().items()}
    tensors |= {f"head.{k}": v for k, v in head.state_dict().items()}
    directory.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(directory / "weights-0a1b2c3d.safetensors"),
    )
    config = {
        "format_version": 1,
        "charlm_version": "0.1.0",
        "saved_at": "2026-11-01T12:00:00+00:00",
        "model": {
            "vocab_size": len(chars),
            "cell": "lstm",
            "embed_size": 8,
            "hidden_size": 16,
            "num_layers": 2,
            "dropout": 0.1,
        },
        "tokenizer": {"name": "char", "state": {"chars": chars}},
        "training": {
            "batch_size": 4,
            "seq_len": 10,
            "epochs": 1,
            "lr": 0.002,
            "clip": 1.0,
            "iterator": "sequential",
            "max_steps": 3,
            "max_time": None,
            "seed": 0,
        },  # fmt: skip
        "data": {
            "book": "tiny.txt",
            "encoding": "utf-8",
            "characters": len(text),
            "val_fraction": 0.1,
            "train_tokens": 1000,
            "val_tokens": 100,
        },  # fmt: skip
        "results": {
            "steps": 3,
            "epochs": 0.1,
            "tokens_seen": 120,
            "train_seconds": 0.1,
            "train_loss": 3.0,
            "train_perplexity": 20.0,
            "val_loss": 3.0,
            "val_perplexity": 20.1,
            "stopped_by": "max_steps",
        },  # fmt: skip
        "train_perplexity": 20.0,
        "val_perplexity": 20.1,
        "weights": "weights-0a1b2c3d.safetensors",
    }
    (directory / "config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return chars, (embedding, lstm, head)


def test_a_format_1_checkpoint_from_0_1_0_loads_and_predicts_as_it_did(tmp_path):
    chars, (embedding, lstm, head) = write_format_1(tmp_path / "old")
    loaded = load_checkpoint(tmp_path / "old")
    assert loaded.tokenizer.get_state()["chars"] == chars
    assert loaded.config["format_version"] == ckpt.FORMAT_VERSION
    ids = torch.as_tensor(loaded.tokenizer.encode_array("the lazy dog")).unsqueeze(0)
    with torch.no_grad():
        expected = head(lstm(embedding(ids))[0])
        assert torch.allclose(loaded.model(ids)[0], expected, atol=1e-6)
    text = Sampler(loaded.model, loaded.tokenizer).generate("the ", length=20, seed=1)
    assert text.startswith("the ") and len(text) == 24


def test_a_format_1_checkpoint_works_from_the_cli_and_for_fine_tuning(tmp_path, tiny_book):
    write_format_1(tmp_path / "old")
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "old"), "--length", "10"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "old")])
    assert result.exit_code == 1 and "--init-from" in result.stderr
    trained = train_book(
        tiny_book,
        out=tmp_path / "tuned",
        init_from=tmp_path / "old",
        training=TrainConfig(batch_size=4, seq_len=10, max_steps=2),
        device="cpu",
    )
    assert load_checkpoint(trained.checkpoint).config["data"]["init_from"] == str(tmp_path / "old")


def test_a_format_1_checkpoint_reads_as_a_model_of_continuous_text(tmp_path):
    # Format 2 added models of examples: a format-1 model has no end token and no labels.
    write_format_1(tmp_path / "old")
    config = read_config(tmp_path / "old")
    assert config["model"]["end_token"] is False and config["model"]["num_labels"] == 0
    assert config["labels"] is None
    assert Sampler.from_checkpoint(tmp_path / "old", device="cpu").labels == []


def test_labels_that_do_not_fit_the_model_are_refused(tmp_path):
    tokenizer, _ = ids_of(TINY_TEXT)
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size + 1, hidden_size=8, end_token=True, num_labels=2)
    path = save_checkpoint(tmp_path / "ck", build_model(config), tokenizer, labels={"a": 3, "b": 1})
    assert Sampler.from_checkpoint(path, device="cpu").labels == ["a", "b"]
    for labels in ({"a": 3}, None, {"a": "x", "b": 1}, ["a", "b"]):
        _edit(path, lambda c, labels=labels: c.update(labels=labels))
        with pytest.raises(CheckpointError, match="the model has 2 labels"):
            load_checkpoint(path)


def test_migrations_run_in_turn_up_to_the_current_format(tmp_path, monkeypatch):
    write_format_1(tmp_path / "old")
    # A future format 3: version 2 renamed "results" to "summary", version 3 added "notes".
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 3)
    monkeypatch.setattr(
        ckpt,
        "MIGRATIONS",
        {
            1: lambda c: {
                **{k: v for k, v in c.items() if k != "results"},
                "summary": c["results"],
            },
            2: lambda c: {**c, "notes": f"was {c['summary']['stopped_by']}"},
        },
    )
    config = read_config(tmp_path / "old")
    assert config["format_version"] == 3
    assert "results" not in config and config["notes"] == "was max_steps"
    load_checkpoint(tmp_path / "old")  # the rest of the checkpoint is untouched


@pytest.mark.parametrize("version", [0, -1, "1", None, True, 1.5])
def test_a_missing_or_invalid_format_version_is_refused(tmp_path, version):
    write_format_1(tmp_path / "old")
    _edit(tmp_path / "old", lambda c: c.update(format_version=version))
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(tmp_path / "old")


def test_an_enormous_config_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    write_format_1(tmp_path / "old")
    monkeypatch.setattr(ckpt, "MAX_CONFIG_BYTES", 1000)
    with pytest.raises(CheckpointError, match="more than charlm accepts"):
        load_checkpoint(tmp_path / "old")


def test_a_deeply_nested_config_is_refused(tmp_path):
    write_format_1(tmp_path / "old")
    (tmp_path / "old" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "old")


def test_a_config_asking_for_a_huge_model_is_refused_without_allocating_it(tmp_path):
    write_format_1(tmp_path / "old")
    # A terabyte of LSTM weights: refused from the shapes alone, in a moment.
    _edit(tmp_path / "old", lambda c: c["model"].update(hidden_size=10**6, num_layers=100))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "old")


def test_weights_with_nan_are_refused(tmp_path):
    tokenizer, _ = ids_of(TINY_TEXT)
    model = tiny_model(tokenizer.vocab_size)
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    path = save_checkpoint(tmp_path / "ck", model, tokenizer)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(path)


def _edit(path, change):
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))


# Random damage ------------------------------------------------------------------------------

ODD_VALUES = [None, -1, 0, 10**12, 1e308, "x", "", [], {}, True, [1, 2], {"a": 1}, float("nan")]
CONFIG_KEYS = [
    ("format_version",),
    ("weights",),
    ("model",),
    ("model", "vocab_size"),
    ("model", "cell"),
    ("model", "impl"),
    ("model", "embed_size"),
    ("model", "hidden_size"),
    ("model", "num_layers"),
    ("model", "dropout"),
    ("model", "tie_weights"),
    ("model", "one_hot"),
    ("model", "nonlinearity"),
    ("model", "end_token"),
    ("model", "num_labels"),
    ("labels",),
    ("tokenizer",),
    ("tokenizer", "name"),
    ("tokenizer", "state"),
    ("tokenizer", "state", "chars"),
    ("tokenizer", "state", "unk"),
    ("tokenizer", "package"),
]
FUZZ_CASES = 300


def _damage(path, rng: random.Random) -> str:
    config_path = path / "config.json"
    weights = next(path.glob("weights-*"))
    kind = rng.choice(
        ["value", "truncate-config", "flip-config", "truncate-weights", "flip-weights"]
    )
    if kind == "value":
        config = json.loads(config_path.read_text())
        *parents, last = rng.choice(CONFIG_KEYS)
        node = config
        for key in parents:
            node = node[key] if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[last] = rng.choice(ODD_VALUES)
        config_path.write_text(json.dumps(config))
    else:
        target = config_path if kind.endswith("config") else weights
        data = bytearray(target.read_bytes())
        if kind.startswith("truncate"):
            del data[rng.randrange(len(data)) :]
        else:
            for _ in range(rng.randint(1, 8)):
                # Half the flips hit the safetensors JSON header, where damage is worst.
                at = rng.randrange(min(len(data), 400) if rng.random() < 0.5 else len(data))
                data[at] = rng.randrange(256)
        target.write_bytes(bytes(data))
    return kind


@pytest.mark.slow
def test_randomly_damaged_checkpoints_load_or_fail_with_one_line(tmp_path):
    tokenizer, _ = ids_of(TINY_TEXT)
    good = save_checkpoint(tmp_path / "good", tiny_model(tokenizer.vocab_size), tokenizer)
    rng = random.Random(9)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(FUZZ_CASES):
        path = tmp_path / f"case{case}"
        shutil.copytree(good, path)
        kind = _damage(path, rng)
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc), (case, kind, str(exc))
            outcomes["refused"] += 1
        else:  # the damage missed anything that matters: the model must still sample
            sampler = Sampler(loaded.model, loaded.tokenizer)
            assert isinstance(sampler.generate("the", length=5, seed=case), str)
            outcomes["loaded"] += 1
        shutil.rmtree(path)
    assert outcomes["refused"] > FUZZ_CASES // 3 and outcomes["loaded"] > 0, outcomes


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.pop("step"),
        lambda s: s.update(optimizer="adam"),
        lambda s: s.update(schedule=None),
        lambda s: s["optimizer"]["param_groups"].append({}),
        lambda s: s.update(epoch_meter="x"),
    ],
)
@pytest.mark.slow
def test_a_damaged_training_state_cannot_be_resumed_but_says_so(tmp_path, last_run, damage):
    run = shutil.copytree(last_run, tmp_path / "run")
    _edit(run, lambda c: damage(c["training_state"]))
    with pytest.raises(CheckpointError, match="--init-from") as info:
        train_book(resume=run, device="cpu")
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def last_run(tmp_path_factory):
    """A run's `last` checkpoint, with its training state."""
    book = tmp_path_factory.mktemp("book") / "book.txt"
    book.write_text(TINY_TEXT)
    out = book.parent / "run"
    settings = TrainConfig(batch_size=4, seq_len=10, max_steps=2)
    data = DataOptions(use_cache=False)
    train_book(book, out=out, training=settings, data=data, device="cpu", model={"hidden_size": 16})
    return out

import json
import threading

import pytest
import torch

from charlm import checkpoint as ckpt
from charlm.checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoint, save_checkpoint
from charlm.errors import CheckpointError
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, tiny_model


@pytest.fixture
def saved(tmp_path):
    tokenizer, _ = ids_of(TINY_TEXT)
    model = tiny_model(tokenizer.vocab_size, cell="lstm", layers=2)
    path = save_checkpoint(
        tmp_path / "book", model, tokenizer, train_perplexity=3.0, val_perplexity=4.0
    )
    return path, model, tokenizer


def test_round_trip_gives_identical_outputs(saved):
    path, model, tokenizer = saved
    loaded = load_checkpoint(path)
    tokens = torch.as_tensor(tokenizer.encode_array("the lazy dog")).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], loaded.model(tokens)[0])
    assert loaded.tokenizer.get_state() == tokenizer.get_state()


def test_config_is_readable_json_with_the_perplexities(saved):
    path, model, _ = saved
    config = json.loads((path / "config.json").read_text())
    assert config["model"]["cell"] == "lstm"
    assert config["tokenizer"]["name"] == "char"
    assert config["train_perplexity"] == 3.0 and config["val_perplexity"] == 4.0
    assert config["charlm_version"]
    assert (path / config["weights"]).suffix == ".safetensors"


def test_saving_again_replaces_the_weights_and_leaves_no_stray_files(saved):
    path, model, tokenizer = saved
    weights = [json.loads((path / "config.json").read_text())["weights"]]
    for _ in range(2):
        save_checkpoint(path, model, tokenizer)
        weights.append(json.loads((path / "config.json").read_text())["weights"])
        # The weights a reader may have just found in the old config stay one save longer.
        assert sorted(p.name for p in path.iterdir()) == sorted(["config.json", *weights[-2:]])
    prune_checkpoint(path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", weights[-1]]


def test_a_failed_save_leaves_the_previous_checkpoint_intact(saved, monkeypatch):
    path, model, tokenizer = saved
    before = (path / "config.json").read_text()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    with pytest.raises(CheckpointError, match="no space left on device.*intact"):
        save_checkpoint(path, model, tokenizer)
    assert (path / "config.json").read_text() == before
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]
    load_checkpoint(path)


def test_a_crash_between_weights_and_config_keeps_the_old_checkpoint(saved, monkeypatch):
    path, model, tokenizer = saved
    old = load_checkpoint(path).model.head.bias.clone()
    real_write = ckpt.files.write_atomically

    def crash_on_config(target, write):
        if target.name == "config.json":
            raise KeyboardInterrupt  # killed after the new weights, before the commit point
        real_write(target, write)

    monkeypatch.setattr(ckpt.files, "write_atomically", crash_on_config)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, tokenizer)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path).model.head.bias, old)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "config.json").unlink(), "no config.json"),
        (lambda p: [w.unlink() for w in p.glob("weights-*")], "is missing"),
        (lambda p: [w.write_bytes(b"garbage") for w in p.glob("weights-*")], "corrupt"),
        (lambda p: _edit(p, lambda c: c["model"].update(hidden_size=7)), "do not fit"),
        (lambda p: _edit(p, lambda c: c.update(format_version=99)), "upgrade charlm"),
        (lambda p: _edit(p, lambda c: c.pop("tokenizer")), "missing or has a bad 'tokenizer'"),
        (lambda p: _edit(p, lambda c: c.update(tokenizer=None)), "bad 'tokenizer' section$"),
        (lambda p: _edit(p, lambda c: c.update(model=[1])), "bad 'model' section$"),
        (
            lambda p: _edit(p, lambda c: c["tokenizer"].update(name="nope")),
            "needs the tokenizer 'nope'",
        ),
    ],
)
def test_damaged_checkpoints_give_one_clear_error(saved, damage, message):
    path = saved[0]
    damage(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def _edit(path, change):
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))


def test_missing_checkpoint_and_plain_file_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "file.txt")


def test_latest_checkpoint_is_the_most_recently_saved(tmp_path):
    import os

    tokenizer, _ = ids_of(TINY_TEXT)
    model = tiny_model(tokenizer.vocab_size)
    first = save_checkpoint(tmp_path / "a", model, tokenizer)
    second = save_checkpoint(tmp_path / "b", model, tokenizer)
    os.utime(first / "config.json", (1, 1))
    assert latest_checkpoint(tmp_path) == second
    assert latest_checkpoint(tmp_path / "none") is None


# Reading while a run saves -------------------------------------------------------------------


@pytest.mark.parametrize("saves", [1, 2, 3])
def test_a_load_while_saves_commit_gets_the_old_or_the_new_checkpoint(saved, monkeypatch, saves):
    """Saves commit between the reader's read of config.json and its read of the weights."""
    path, model, tokenizer = saved
    state = ckpt.TrainingState({"step": 0}, {"t": torch.zeros(1)})
    save_checkpoint(path, model, tokenizer, training_state=state)
    real_read = ckpt.read_config
    pending = [saves]
    before = model.head.bias.detach().clone()

    def read_then_save(directory):
        config = real_read(directory)
        for step in range(1, pending.pop() + 1 if pending else 1):
            with torch.no_grad():
                model.head.bias.add_(1.0)
            state = ckpt.TrainingState({"step": step}, {"t": torch.full((1,), float(step))})
            save_checkpoint(path, model, tokenizer, training_state=state)
        return config

    monkeypatch.setattr(ckpt, "read_config", read_then_save)
    # One save: the old weights are still there. More: the config changed, read it again.
    expected = before if saves == 1 else model.head.bias
    assert torch.equal(load_checkpoint(path).model.head.bias, expected)
    pending.append(saves)
    resumed = ckpt.load_training_state(path)
    assert resumed.tensors["t"].item() == resumed.meta["step"] in (0, saves)


@pytest.mark.slow
def test_loads_during_a_stream_of_saves_never_fail(saved):
    path, model, tokenizer = saved
    stop = threading.Event()

    def keep_saving():
        while not stop.is_set():
            save_checkpoint(path, model, tokenizer)

    writer = threading.Thread(target=keep_saving)
    writer.start()
    try:
        loads = [load_checkpoint(path) for _ in range(300)]
    finally:
        stop.set()
        writer.join()
    assert len(loads) == 300

"""Checkpoints: a directory with a readable `config.json` and the weights in safetensors.

    checkpoints/book/
        config.json                     what the model is, its tokenizer, how it was trained
        weights-<id>.safetensors        the tensors (a format that cannot run code on load)
        training-state-<id>.safetensors optimizer moments, RNG states, carried hidden state
                                        (only in a run's `last` checkpoint, for --resume)
        ngram-<id>.safetensors          with `charlm train --ngram N`: the counts of a token
                                        n-gram model mixed with the network (config.json's
                                        ngram section: its order and mixture weight)
        metrics.jsonl                   the run's metrics log (written by the training run)
        best/                           the checkpoint with the best validation perplexity
        generative/                     a classifier's labelled LM, a checkpoint of its own
                                        (in `best/` too), named by config.json's classifier
                                        section: the classifier classifies with it

Saving is atomic. The tensors go to new files first; then `config.json`, which names those
files, is replaced in one `os.replace`. Until that rename the old config still names the old
files — so a crash at any moment leaves either the old checkpoint or the new one, never a
mixture. A save that fails (a full disk) removes what it wrote and leaves the previous
checkpoint as it was.

Reading while a run saves. A reader reads config.json, then the files it names. A save
keeps the files of the checkpoint it replaces (deleting only older ones), so a reader that
has just read the old config still finds the old weights; and if two saves commit between
its two reads, the weights are gone but the config has changed, and the reader starts over
once. `prune_checkpoint` removes the kept files when the run ends.

The directory is untrusted data: every file in it is opened as files.py says (no links, no
FIFOs or devices, writes only to files charlm creates).

Format versions. `format_version` in config.json says how a checkpoint is laid out. A newer
charlm reads every older format: `MIGRATIONS[v]` turns a version-v config into a version-v+1
one, and `_migrate` applies them in turn when a config is read, so the rest of the code only
ever sees the current format. Changing the layout means: raise FORMAT_VERSION, add the step
from the previous version here, and add a fixture of the old format to
tests/test_checkpoint_formats.py. Version history:

    1  charlm 0.1.0: model, tokenizer {name, state}, weights; later 0.1.x add the optional
       tokenizer.package, training_state, data, results (readers treat all of these as
       optional, so no step is needed yet)
    2  models of examples: model.end_token (the model's last id ends each example, so its
       vocabulary is the tokenizer's plus one) and model.num_labels; a `labels` section
       {label: training examples} when num_labels > 0. Step 1 → 2 writes what a version-1
       model is: end_token false, no labels.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from charlm import jsontext
from charlm._version import __version__
from charlm.checkpoint import files
from charlm.errors import CharlmError, CheckpointError
from charlm.limits import MAX_CONFIG_BYTES
from charlm.models import RNNLM, ModelConfig, build_model
from charlm.models.ngram import MAX_NGRAM_ORDER, NgramModel
from charlm.tokenizers import Tokenizer, tokenizer_from_state, tokenizer_package

FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
WEIGHTS_GLOB = "weights-*.safetensors"
TRAINING_STATE_GLOB = "training-state-*.safetensors"
NGRAM_GLOB = "ngram-*.safetensors"
BEST_NAME = "best"
# The folder, inside a classifier's checkpoint, of the labelled LM it classifies with.
GENERATIVE_NAME = "generative"
TEMPORARY_PREFIXES = (
    ".weights-",
    ".training-state-",
    ".ngram-",
    f".{CONFIG_NAME}.",
    ".metrics.jsonl.",  # the metrics log's rewrite (training/metrics_log.py, METRICS_LOG_NAME)
)
# How often a load reads the config and its tensor file again while saves keep replacing them.
READ_ATTEMPTS = 20


def _add_example_fields(config: dict[str, Any]) -> dict[str, Any]:
    """1 → 2: a version-1 model reads continuous text: no end token, no labels."""
    model = config.get("model")
    if isinstance(model, dict):
        config["model"] = {**model, "end_token": False, "num_labels": 0}
    config.setdefault("labels", None)
    return config


# Version v → v+1, applied in turn by `_migrate`; see the module docstring.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _add_example_fields}


@dataclass
class TrainingState:
    """What a run needs beyond the weights to continue exactly where it stopped: JSON `meta`
    (counters, iterator position, schedule, optimizer hyper-parameters) and named `tensors`
    (optimizer moments, RNG states, the carried hidden state); see charlm/training/resume.py."""

    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network, its tokenizer and the whole config as saved."""

    model: RNNLM
    tokenizer: Tokenizer
    config: dict[str, Any]
    path: Path
    # A classifier's labelled LM, which it classifies with (its `generative` folder).
    generative: Checkpoint | None = None
    # The n-gram model mixed with the network, and the network's weight in the mixture.
    ngram: NgramModel | None = None
    ngram_weight: float | None = None


def save_checkpoint(
    directory: str | os.PathLike,
    model: RNNLM,
    tokenizer: Tokenizer,
    *,
    training_state: TrainingState | None = None,
    **sections: Any,
) -> Path:
    """Write `model` and `tokenizer` (plus any JSON-serialisable `sections`) atomically.

    With `training_state`, its tensors go to a file of their own and its JSON into the
    config's `training_state` section, committed by the same rename as the weights.
    """
    directory = Path(directory)
    token = secrets.token_hex(4)
    weights_name = f"weights-{token}.safetensors"
    state_name = f"training-state-{token}.safetensors" if training_state is not None else None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        previous = _named_files(directory)
        _save(directory, model, tokenizer, weights_name, state_name, training_state, sections)
    except BaseException as exc:
        _discard_uncommitted(directory, weights_name, state_name)
        if isinstance(exc, OSError):  # e.g. the disk is full
            raise CheckpointError(_save_failure(directory, exc)) from exc
        raise
    # The new checkpoint is live. The one it replaced keeps its files for a reader that has
    # just read its config; older files, and any a killed save left, go.
    _remove_files(directory, keep={weights_name, state_name, *previous})
    return directory


def prune_checkpoint(directory: str | os.PathLike) -> None:
    """Delete the files of earlier saves that `directory`'s config no longer names."""
    directory = Path(directory)
    if (directory / CONFIG_NAME).is_file():
        _remove_files(directory, keep=_named_files(directory))


def _named_files(directory: Path) -> set[str]:
    """The tensor files the current config names (none when there is no readable config)."""
    try:
        config = read_config(directory)
    except CheckpointError:
        return set()
    names = {config.get("weights")}
    names |= {(config.get(part) or {}).get("file") for part in ("training_state", "ngram")}
    return {name for name in names if isinstance(name, str)}


def _remove_files(directory: Path, keep: set) -> None:
    stale = [
        *directory.glob(WEIGHTS_GLOB),
        *directory.glob(TRAINING_STATE_GLOB),
        *directory.glob(NGRAM_GLOB),
    ]
    stale += [p for p in directory.glob(".*.tmp") if p.name.startswith(TEMPORARY_PREFIXES)]
    for old in stale:
        if old.name not in keep:
            old.unlink(missing_ok=True)  # a link is removed, never what it points to


def _save(directory, model, tokenizer, weights_name, state_name, training_state, sections) -> None:
    """Write the new files, then commit them by replacing config.json."""
    if training_state is not None:
        sections["training_state"] = {"file": state_name, **training_state.meta}
        state_tensors = {
            k: t.detach().to("cpu").contiguous() for k, t in training_state.tensors.items()
        }
        files.write_atomically(directory / state_name, lambda tmp: save_file(state_tensors, tmp))
    config = {
        "format_version": FORMAT_VERSION,
        "charlm_version": __version__,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.config.to_dict(),
        "tokenizer": {
            "name": tokenizer.name,
            "state": tokenizer.get_state(),
            "package": tokenizer_package(tokenizer.name),  # what to install if it is missing
        },
        **sections,
        "weights": weights_name,
    }
    tensors = _plain_tensors(model.state_dict())
    files.write_atomically(directory / weights_name, lambda tmp: save_file(tensors, tmp))
    _write_config(directory, config)


def _discard_uncommitted(directory: Path, weights_name: str, state_name: str | None) -> None:
    """After a failed save, delete the files it wrote unless config.json already names them."""
    with contextlib.suppress(OSError, CheckpointError):
        if weights_name.encode() in files.read_bytes(directory / CONFIG_NAME, MAX_CONFIG_BYTES):
            return  # committed: the failure came after the rename
    for name in (weights_name, state_name):
        if name is not None:
            with contextlib.suppress(OSError):
                (directory / name).unlink(missing_ok=True)


def write_failure_reason(exc: OSError) -> str:
    """Why a write failed, in the words charlm's messages use: "no space left on device"
    for a full disk or quota, else the system's own ("File too large")."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    return exc.strerror or str(exc)


def _save_failure(directory: Path, exc: OSError) -> str:
    return (
        f"{write_failure_reason(exc)}: could not save the checkpoint {directory}; the previous "
        "checkpoint there (if any) is intact"
    )


def attach_ngram(directory: str | os.PathLike, ngram: NgramModel, weight: float) -> None:
    """Add `ngram` to a saved checkpoint, mixed at `weight` (the network's share), replacing
    any it had. Atomic as a save is: the counts go to a new file, which the config names
    once it is replaced."""
    directory = Path(directory)
    name = f"ngram-{secrets.token_hex(4)}.safetensors"
    previous = _named_files(directory)
    tensors = ngram.to_tensors()
    files.write_atomically(directory / name, lambda tmp: save_file(tensors, tmp))
    section = {"file": name, "order": ngram.order, "discount": ngram.discount, "weight": weight}
    try:
        update_config(directory, ngram=section)
    except BaseException:
        (directory / name).unlink(missing_ok=True)
        raise
    _remove_files(directory, keep={name, *previous})


def _ngram_file(directory: Path, config: dict[str, Any]) -> str:
    return _file_name(directory, config["ngram"].get("file"), "ngram.file")


def _load_ngram(
    directory: Path, config: dict[str, Any], vocab_size: int
) -> tuple[NgramModel | None, float | None]:
    """The n-gram model and mixture weight the config's ngram section names, if any."""
    section = config.get("ngram")
    if section is None:
        return None, None
    if not isinstance(section, dict):
        raise CheckpointError(f"{directory}/{CONFIG_NAME} has a bad ngram section: {section!r}")
    weight, order = section.get("weight"), section.get("order")
    valid = (
        isinstance(order, int)
        and not isinstance(order, bool)
        and 1 <= order <= MAX_NGRAM_ORDER
        and isinstance(weight, (int, float))
        and not isinstance(weight, bool)
        and 0 < weight < 1
    )
    if not valid:
        raise CheckpointError(f"{directory}/{CONFIG_NAME} has a bad ngram section: {section!r}")
    _, tensors = _config_and_tensors(directory, _ngram_file, "n-gram")
    try:
        return NgramModel.from_tensors(tensors, order, vocab_size), float(weight)
    except CharlmError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc


def load_training_state(directory: str | os.PathLike) -> TrainingState:
    """The state a run saved to continue from, with a clear error when there is none."""
    directory = Path(directory)
    config, tensors = _config_and_tensors(directory, _state_file, "training state")
    meta = {k: v for k, v in config["training_state"].items() if k != "file"}
    return TrainingState(meta, tensors)


def _state_file(directory: Path, config: dict[str, Any]) -> str:
    section = config.get("training_state")
    if not isinstance(section, dict) or "file" not in section:
        raise CheckpointError(
            f"{directory} holds no training state to resume from (it is a finished model or "
            "a `best` copy); start a new run from its weights with --init-from instead"
        )
    return _file_name(directory, section["file"], "training_state.file")


def _weights_file(directory: Path, config: dict[str, Any]) -> str:
    if "weights" not in config:
        raise CheckpointError(f"{directory}/{CONFIG_NAME} is missing or has a bad 'weights'")
    return _file_name(directory, config["weights"], "weights")


def _file_name(directory: Path, name: Any, field: str) -> str:
    """A file name from the config: a string, reduced to its last component so that it
    cannot point out of the directory."""
    if not isinstance(name, str) or not Path(name).name:
        raise CheckpointError(f"{directory}/{CONFIG_NAME} has a bad {field}: {name!r}")
    return Path(name).name


def _config_and_tensors(
    directory: Path, file_of: Callable[[Path, dict[str, Any]], str], what: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and the tensor file it names, read as one whole.

    A run may save between the two reads. The file named by the config just read is then
    kept until the next save, so it is still there; if two saves came in between, it is gone
    and the config has changed: read both again. A reader slowed down beside a run that saves
    without pause can lose that race more than once, so it tries again while the config keeps
    moving, up to READ_ATTEMPTS times; a name that stays missing is a damaged checkpoint.
    """
    config = read_config(directory)
    name = file_of(directory, config)
    for _ in range(READ_ATTEMPTS):
        tensors = _load_tensors(directory / name, what)
        if tensors is not None:
            return config, tensors
        config = read_config(directory)
        latest = file_of(directory, config)
        if latest == name:  # no save came in between: it is missing
            break
        name = latest
    raise CheckpointError(f"{directory}: {what} file {name} is missing")


def _load_tensors(path: Path, what: str) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors file of a checkpoint; None when there is no such file."""
    try:
        with files.checked_path(path) as name:
            return load_file(name, device="cpu")
    except FileNotFoundError:
        return None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path.parent}: {what} file {path.name} is corrupt or not safetensors ({exc})"
        ) from exc


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies safetensors accepts: tied weights share memory, which it refuses to store."""
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[name] = tensor
    return tensors


def save_file(tensors: dict[str, torch.Tensor], filename: str | os.PathLike) -> None:
    """Write `tensors` to `filename` in safetensors format.

    Serialised in memory and written here: safetensors' own file writer makes a hidden
    temporary file of its own, which a process killed while saving would leave behind.
    """
    Path(filename).write_bytes(save(tensors))


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed `config.json` of a checkpoint directory, with clear errors."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not directory.exists():
        raise CheckpointError(f"no checkpoint at {directory}: the path does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory (expected a folder)")
    if not os.path.lexists(config_path):
        raise CheckpointError(f"{directory} is not a charlm checkpoint: it has no {CONFIG_NAME}")
    try:
        config = json.loads(files.read_bytes(config_path, MAX_CONFIG_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise CheckpointError(f"{config_path} is unreadable or not valid JSON: {reason}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} does not hold a JSON object")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{config_path} has no valid format_version ({version!r}); it is not a charlm "
            "checkpoint, or it was edited by hand"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} has checkpoint format {version!r}, which this charlm "
            f"({__version__}, format {FORMAT_VERSION}) cannot read; upgrade charlm"
        )
    return _migrate(config)


def _migrate(config: dict[str, Any]) -> dict[str, Any]:
    """`config` brought from its format version to FORMAT_VERSION, one step at a time."""
    version = config["format_version"]
    while version < FORMAT_VERSION:
        config = MIGRATIONS[version](dict(config))
        version += 1
        config["format_version"] = version
    return config


def _write_config(directory: Path, config: dict[str, Any]) -> None:
    text = jsontext.dumps(config, indent=2) + "\n"
    files.write_atomically(
        directory / CONFIG_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8")
    )


def update_config(directory: str | os.PathLike, **sections: Any) -> None:
    """Add or replace top-level sections of a saved checkpoint's config, atomically."""
    directory = Path(directory)
    config = {**read_config(directory), **sections}
    _write_config(directory, config)


def load_checkpoint(directory: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """Rebuild the model and tokenizer saved in `directory`, on `device`."""
    directory = Path(directory)
    config, tensors = _config_and_tensors(directory, _weights_file, "weights")
    section = "model"  # the one being read, for the message if it is not what it must be
    try:
        model_config = ModelConfig.from_dict(config["model"])
        section = "tokenizer"
        tokenizer_section = config["tokenizer"]
        tokenizer = tokenizer_from_state(
            tokenizer_section["name"], tokenizer_section["state"], tokenizer_section.get("package")
        )
    except CharlmError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{directory}/{CONFIG_NAME} is missing or has a bad '{section}' section"
        ) from exc
    # A model of examples has one token more than its tokenizer: the end token.
    expected = tokenizer.vocab_size + (1 if model_config.end_token else 0)
    if expected != model_config.vocab_size:
        raise CheckpointError(
            f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
            f"expects {model_config.vocab_size - (expected - tokenizer.vocab_size)}; the "
            "checkpoint is inconsistent"
        )
    _check_labels(directory, config.get("labels"), model_config.num_labels)
    _check_weights(directory, model_config, tensors)
    model = build_model(model_config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{directory}: the weights do not fit the model config ({first_line})"
        ) from exc
    generative = _load_generative(directory, config, device)
    ngram, weight = _load_ngram(directory, config, model_config.vocab_size)
    return Checkpoint(
        model.to(device).eval(), tokenizer, config, directory, generative, ngram, weight
    )


def _load_generative(
    directory: Path, config: dict[str, Any], device: torch.device | str
) -> Checkpoint | None:
    """The labelled LM a classifier's config names (None if it names none), checked to read
    the same tokens and labels as the classifier does."""
    section = config.get("classifier")
    name = section.get("generative") if isinstance(section, dict) else None
    if name is None:
        return None
    folder = _file_name(directory, name, "classifier.generative")
    generative = load_checkpoint(files.subdirectory(directory / folder), device)
    same = (
        generative.config["tokenizer"] == config["tokenizer"]
        and generative.config.get("labels") == config.get("labels")
        and generative.model.config.task == "lm"
        and generative.generative is None
    )
    if not same:
        raise CheckpointError(
            f"{directory / folder} is not a language model of the classifier's tokens and "
            "labels; the checkpoint is inconsistent"
        )
    return generative


def _check_labels(directory: Path, labels: Any, num_labels: int) -> None:
    """The `labels` section must name each of the model's labels once, with its count."""
    if not num_labels and not labels:
        return
    valid = isinstance(labels, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in labels.items()
    )
    if not valid or len(labels) != num_labels:
        raise CheckpointError(
            f"{directory}: the model has {num_labels} labels but the config's labels section "
            f"does not name them ({CONFIG_NAME} is damaged or edited)"
        )


def _check_weights(directory: Path, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse weights that do not match the config, before any memory is spent on the model.

    The model is first built on the meta device (shapes only, no memory), so a hand-edited
    config asking for a billion-row embedding is refused here rather than allocated.
    """
    try:
        with torch.device("meta"):
            expected = build_model(config).state_dict()
    except (CharlmError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(f"{directory}: the model config cannot be built ({exc})") from exc
    shapes = {k: tuple(t.shape) for k, t in expected.items()}
    found = {k: tuple(t.shape) for k, t in tensors.items()}
    if found != shapes:
        wrong = sorted(k for k in shapes.keys() | found.keys() if shapes.get(k) != found.get(k))
        name = wrong[0]
        raise CheckpointError(
            f"{directory}: the weights do not fit the model config ({name}: the file has "
            f"{found.get(name, 'nothing')}, the config needs {shapes.get(name, 'nothing')})"
        )
    for name, tensor in tensors.items():
        # Checked as the model will hold it: 1e300 in a float64 file is finite until cast.
        tensor = tensor.to(expected[name].dtype)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{directory}: the weights hold NaN or infinite values ({name}); the file is "
                "damaged or the run diverged"
            )


def latest_checkpoint(root: str | os.PathLike = "checkpoints") -> Path | None:
    """The most recently saved checkpoint directly under `root`, if any."""
    root = Path(root)
    if not root.is_dir():
        return None
    configs = [p for p in root.glob(f"*/{CONFIG_NAME}") if p.is_file()]
    if not configs:
        return None
    return max(configs, key=lambda p: p.stat().st_mtime).parent

"""The checkpoints a server has loaded, each with its name, its sampler and its engine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlm.device import resolve_device, set_threads
from charlm.errors import ConfigError
from charlm.models.quantized import device_for
from charlm.sampling import Sampler, load
from charlm.sampling.sampler import quantize_networks
from charlm.serve.config import ServeConfig
from charlm.serve.engine import Engine
from charlm.serve.schema import RequestError


@dataclass
class ServedModel:
    """One loaded checkpoint, known to clients by `id` (its directory's name)."""

    id: str
    sampler: Sampler
    engine: Engine
    created: int  # when the checkpoint was saved, as a Unix time
    details: dict[str, Any]  # what /v1/models says about it besides OpenAI's fields

    @property
    def labels(self) -> list[str]:
        """The labels of a model trained on labelled text; empty for a plain model."""
        return self.sampler.labels

    def check_label(self, label: str | None, guidance: float = 0.0) -> None:
        """Refuse a request this model cannot draw or score, with the field at fault as the
        param: "model" for a classifier (it gives no probabilities of text), "label" for a
        label it lacks or needs, "guidance" for guidance without labels."""
        # Sampler.check_label checks those three in that order: asked in two steps, the
        # step that fails tells which field it is about.
        first = "model" if self.sampler.is_classifier else "label"
        for param, weight in ((first, 0.0), ("guidance", guidance)):
            try:
                self.sampler.check_label(label, weight)
            except ConfigError as exc:
                raise RequestError(f"model {self.id!r}: {exc}", param) from exc

    def card(self) -> dict[str, Any]:
        """The model as `GET /v1/models` lists it: OpenAI's fields, then charlm's."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "charlm",
            **self.details,
            "labels": self.labels,
            # A model of short examples (names): each completion is one whole example.
            "examples": self.sampler.end_id is not None,
            # A classifier (`--task classify`) labels text and writes none.
            "task": "classify" if self.sampler.is_classifier else "lm",
        }


class ModelSet:
    """The loaded models by id, in the order given."""

    def __init__(self, models: Sequence[ServedModel]) -> None:
        self._models = {model.id: model for model in models}

    def __iter__(self):
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def get(self, name: str | None) -> ServedModel:
        """The model called `name`; the only one when `name` is None and there is one."""
        if name is None:
            if len(self._models) == 1:
                return next(iter(self._models.values()))
            raise RequestError(f"model is required; this server has {self._names()}", "model")
        if name not in self._models:
            raise RequestError(
                f"no model {name!r}; this server has {self._names()}", "model", status=404
            )
        return self._models[name]

    def close(self) -> None:
        for model in self:
            model.engine.close()

    def _names(self) -> str:
        return ", ".join(self._models)


def load_models(
    paths: Sequence[str | os.PathLike],
    config: ServeConfig,
    impl: str | None = None,
    quantize: str | None = None,
    ngram: bool = True,
) -> ModelSet:
    """Load each checkpoint directory, named after the directory (made unique); `impl`,
    `quantize` and `ngram` as for `charlm.load`."""
    if not paths:
        raise ConfigError("give at least one checkpoint to serve")
    set_threads(config.threads)
    device = resolve_device(device_for(config.device, quantize))
    models: list[ServedModel] = []
    taken: set[str] = set()
    for path in paths:
        # Named after the directory itself (`charlm serve .`: the one it runs in; a link
        # keeps its own name).
        name = _unique(Path(os.path.abspath(path)).name or "model", taken)
        models.append(_load(Path(path), device, config, name, impl, quantize, ngram))
    return ModelSet(models)


def serve_sampler(name: str, sampler: Sampler, config: ServeConfig) -> ServedModel:
    """A sampler already in memory, served as `name` (for tests and embedding)."""
    return ServedModel(name, sampler, _engine(sampler, config), 0, _details(sampler))


def _load(
    path: Path,
    device,
    config: ServeConfig,
    name: str,
    impl: str | None,
    quantize: str | None,
    ngram: bool,
) -> ServedModel:
    # Loaded as `charlm.load` loads it, quantized last: the parameters are counted first, as
    # int8 holds its weight matrices packed, not as parameters.
    sampler = load(path, str(device), impl, None, ngram)  # with its labels, if any
    details = _details(sampler)
    if quantize is not None:
        quantize_networks(sampler, quantize)
    saved = max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0)
    return ServedModel(name, sampler, _engine(sampler, config), int(saved), details)


def _engine(sampler: Sampler, config: ServeConfig) -> Engine:
    return Engine(sampler, config.max_batch, batch=config.batch, interval=config.stream_interval)


def _details(sampler: Sampler) -> dict[str, Any]:
    """What /v1/models says of `sampler`'s model (counted before any int8 quantization)."""
    model = sampler.model
    shape = getattr(model, "config", None)
    return {
        "tokenizer": sampler.tokenizer.name,
        "vocab_size": sampler.tokenizer.vocab_size,
        # The values of a request's `unknown` it takes: "unk" where the tokenizer has <unk>.
        "unknown": ["error", "skip"] + (["unk"] if sampler.tokenizer.unk_id is not None else []),
        "parameters": sum(p.numel() for p in model.parameters()),
        "cell": getattr(shape, "cell", None),
        "layers": getattr(shape, "num_layers", None),
        "hidden": getattr(shape, "hidden_size", None),
        # The n-gram model it mixes with the network (charlm train --ngram), if any.
        "ngram": None
        if sampler.ngram is None
        else {"order": sampler.ngram.order, "weight": sampler.ngram_weight},
    }


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    taken.add(candidate)
    return candidate

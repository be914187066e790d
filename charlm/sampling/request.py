"""The settings of one call to the sampler, checked together before any work is done."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from charlm.errors import ConfigError
from charlm.sampling.strategies import SamplingOptions
from charlm.tokenizers import UNKNOWN_POLICIES

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Request:
    """What to draw: validated settings, with the seed resolved (never None)."""

    prefix: str
    length: int
    options: SamplingOptions
    stop: tuple[str, ...]
    num_samples: int
    beam_width: int
    seed: int
    unknown: str | None = None  # what to do with prefix pieces outside the vocabulary
    allow_unk: bool = False  # may the sampler draw <unk>?
    label: str | None = None  # the label of the text to draw (a labelled model)


def make_request(
    prefix: str,
    length: int,
    temperature: float,
    seed: int | None,
    top_k: int | None,
    top_p: float,
    repetition_penalty: float,
    stop: str | Sequence[str],
    num_samples: int,
    beam_width: int,
    unknown: str | None = None,
    allow_unk: bool = False,
    label: str | None = None,
) -> Request:
    """Check every setting at once, before any work; a bad one raises ConfigError (ValueError)."""
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a string, got {type(prefix).__name__}")
    options = SamplingOptions(temperature, top_k, top_p, repetition_penalty)
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    for name, value, least in (
        ("length", length, 0),
        ("num_samples", num_samples, 1),
        ("beam_width", beam_width, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    if any(not isinstance(s, str) or not s for s in stops):
        raise ConfigError("stop strings must be non-empty strings")
    if seed is None:
        seed = secrets.randbits(32)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer or None, got {seed!r}")
    elif not 0 <= seed <= MAX_SEED - num_samples:
        raise ConfigError(f"seed must be in [0, {MAX_SEED - num_samples}], got {seed}")
    if unknown is not None and unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
    if beam_width > 1:
        _check_beam(options, stops, num_samples, beam_width)
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"label must be a string, got {type(label).__name__}")
    return Request(
        prefix,
        length,
        options,
        stops,
        num_samples,
        beam_width,
        seed,
        unknown,
        bool(allow_unk),
        label,
    )


def _check_beam(
    options: SamplingOptions, stops: tuple[str, ...], num_samples: int, beam_width: int
) -> None:
    if num_samples > beam_width:
        raise ConfigError(
            f"beam search returns at most beam_width={beam_width} continuations, "
            f"but num_samples={num_samples} were asked for"
        )
    if stops:
        raise ConfigError("stop strings cannot be combined with beam search")
    unused = SamplingOptions(temperature=options.temperature)
    if options != unused:
        raise ConfigError(
            "top_k, top_p and repetition_penalty apply to sampling, not to beam search"
        )

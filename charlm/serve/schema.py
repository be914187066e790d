"""Requests as JSON objects, checked and mapped onto charlm's sampling settings.

The names are OpenAI's completions API (so its clients work unchanged); `max_tokens` and `n`
are charlm's `length` and `num_samples`, the other sampling settings keep their charlm names
(`top_k`, `repetition_penalty`, ...). Anything wrong raises `RequestError`, which the app
turns into a 400 response with one line saying what, and `param` naming the field at fault.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from charlm.data import PRIORS
from charlm.errors import CharlmError, ConfigError
from charlm.sampling.drawing import MAX_TOP_LOGPROBS
from charlm.sampling.options import DEFAULTS, SamplingOptions
from charlm.serve.config import ServeConfig

# Request field -> SamplingOptions field: OpenAI's two names, then every option by its own
# name (top_k, min_p, repetition_penalty, ...) except those that make no sense over HTTP.
# Left out, an option keeps its default, which is `charlm generate`'s: a request with only a
# prompt and a seed gives the text `charlm generate --prefix ... --seed ...` prints.
NOT_OVER_HTTP = {"length", "num_samples", "beam_width", "allow_unk"}
SAMPLING_FIELDS = {
    "max_tokens": "length",
    "n": "num_samples",
    **{f.name: f.name for f in dataclasses.fields(SamplingOptions) if f.name not in NOT_OVER_HTTP},
}
# OpenAI fields charlm has no use for: accepted only at their neutral value.
NEUTRAL = {
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "suffix": (None, ""),
    "best_of": (None, 1),
}
IGNORED = ("user",)  # accepted and not used
MAX_STOPS = 16
MAX_MESSAGE = 500  # characters of an error message; a hostile value is not echoed whole
MAX_INPUTS = 256  # texts per score or classify request


class RequestError(CharlmError):
    """A request the server cannot serve; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


def error_object(
    message: str, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object, with `message` on one bounded line; a lone surrogate quoted
    from a client's text is written as its escape (UTF-8 has no character for it)."""
    line = re.sub(r"\s+", " ", escaped(message)).strip()
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 1] + "…"
    param = None if param is None else escaped(param)
    return {"error": {"message": line, "type": kind, "param": param, "code": None}}


def escaped(text: str) -> str:
    """`text` with each lone surrogate (a JSON escape such as \\ud800 that is half of a
    character) written as that escape, so that it can be sent as UTF-8."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lone_surrogate(text: str) -> int | None:
    """Where `text` holds a lone surrogate, the first one's index; None if it holds none."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def refuse_lone_surrogates(body: Any) -> None:
    """Refuse a body with text that holds a lone surrogate: JSON can write one (\\ud800 not
    followed by \\udc00-\\udfff), but it is half of a character, no text. The error names
    the field (of the body's top level) it is in."""
    fields = body.items() if isinstance(body, dict) else [(None, body)]
    for field, value in fields:
        if field is not None and lone_surrogate(field) is not None:
            raise RequestError(
                f'the field name "{escaped(field)}" holds a lone surrogate, half of a '
                f"character: {_SURROGATES}",
                field,
            )
        level, texts = [value], []  # every text in the value, names of objects included
        while level:
            texts += [item for item in level if isinstance(item, str)]
            texts += [key for item in level if isinstance(item, dict) for key in item]
            level = [
                child
                for item in level
                if isinstance(item, list | dict)
                for child in (item.values() if isinstance(item, dict) else item)
            ]
        for text in texts:
            at = lone_surrogate(text)
            if at is not None:
                raise RequestError(
                    f"{field or 'the body'} holds a lone surrogate ({escaped(text[at])}, "
                    f"character {at} of a text), half of a character: {_SURROGATES}",
                    field,
                )


_SURROGATES = (
    "a character beyond U+FFFF is escaped as a pair (\\ud83d\\ude00), or send the text as UTF-8"
)


@dataclass
class CompletionRequest:
    """A checked `POST /v1/completions` body."""

    model: str | None
    prompts: list[str]
    options: SamplingOptions
    stream: bool = False
    echo: bool = False
    logprobs: int | None = None
    include_usage: bool = False


@dataclass
class TextsRequest:
    """A checked `POST /v1/score` or `/v1/classify` body."""

    model: str | None
    inputs: list[str]
    top_k: int | None = None
    label: str | None = None  # score: the label to score the texts under
    unknown: str | None = None  # pieces the vocabulary lacks, as SamplingOptions.unknown
    prior: str = "learned"  # classify: p(label), as Sampler.classify's prior


def completion_request(body: Any, limits: ServeConfig) -> CompletionRequest:
    """Check a completions body against the API and the server's limits."""
    body = _object(body)
    known = {"model", "prompt", "stream", "stream_options", "echo", "logprobs"}
    _refuse_unknown(body, known | set(SAMPLING_FIELDS) | set(NEUTRAL) | set(IGNORED))
    for name, neutral in NEUTRAL.items():
        if name in body and body[name] not in neutral:
            raise RequestError(f"{name} is not supported by charlm; leave it out", name)
    prompts = _prompts(body.get("prompt", ""))
    fields = {k: v for k, v in body.items() if k in SAMPLING_FIELDS and v is not None}
    _check_limits(fields, len(prompts), limits)
    stop = fields.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOPS:
        raise RequestError(f"stop holds {len(stop)} strings; at most {MAX_STOPS}", "stop")
    return CompletionRequest(
        model=_optional(body, "model", str),
        prompts=prompts,
        options=sampling_options(fields),
        stream=_optional(body, "stream", bool) or False,
        echo=_optional(body, "echo", bool) or False,
        logprobs=_logprobs(body.get("logprobs")),
        include_usage=_include_usage(body.get("stream_options")),
    )


def texts_request(body: Any, *, top_k: bool) -> TextsRequest:
    """Check a score (`top_k` False) or classify (`top_k` True) body."""
    body = _object(body)
    own = {"top_k", "prior"} if top_k else {"label"}
    _refuse_unknown(body, {"model", "input", "inputs", "unknown", *own})
    if "input" in body and "inputs" in body:
        raise RequestError("give the texts as input or as inputs, not both", "inputs")
    key = "inputs" if "inputs" in body else "input"
    raw = body.get(key)
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError(f"{key} must be a text or a non-empty list of texts", key)
    if len(texts) > MAX_INPUTS:
        raise RequestError(f"{key} holds {len(texts)} texts; at most {MAX_INPUTS}", key)
    k = _optional(body, "top_k", int) if top_k else None
    if k is not None and k < 1:
        raise RequestError(f"top_k must be at least 1, got {k}", "top_k")
    label = None if top_k else _optional(body, "label", str)
    prior = _optional(body, "prior", str) or "learned"
    if prior not in PRIORS:
        raise RequestError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}", "prior")
    # Checked as a completion's `unknown` is: the same values, the same message.
    unknown = sampling_options({"unknown": body.get("unknown")}).unknown
    return TextsRequest(_optional(body, "model", str), texts, k, label, unknown, prior)


def sampling_options(fields: dict[str, Any]) -> SamplingOptions:
    """SamplingOptions from request fields (by their request names: `max_tokens`, `n`,
    `temperature`, ...); a bad value is a RequestError whose param names its field."""
    options = DEFAULTS
    # Set one at a time, so that the field a ConfigError is about is the one just set; in
    # SAMPLING_FIELDS' order, so that `n` is set before `seed`, which must leave room for it.
    for name in SAMPLING_FIELDS:
        if fields.get(name) is not None:
            try:
                options = options.replace(**{SAMPLING_FIELDS[name]: fields[name]})
            except ConfigError as exc:
                raise RequestError(str(exc), name) from exc
    return options


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _refuse_unknown(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise RequestError(
            f"unknown field {unknown[0]!r}; the fields: {', '.join(sorted(known))}", unknown[0]
        )


def _prompts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    raise RequestError(
        "prompt must be a text or a non-empty list of texts (token ids are not accepted)",
        "prompt",
    )


def _check_limits(fields: dict[str, Any], prompts: int, limits: ServeConfig) -> None:
    """`fields`' max_tokens and n (or their defaults) within the server's limits."""
    length = fields.get("max_tokens", DEFAULTS.length)
    num_samples = fields.get("n", DEFAULTS.num_samples)
    for name, value, lowest in (("max_tokens", length, 0), ("n", num_samples, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise RequestError(f"{name} must be an integer >= {lowest}, got {value!r}", name)
    if length > limits.max_tokens:
        raise RequestError(
            f"max_tokens is {length}; this server allows at most {limits.max_tokens}",
            "max_tokens",
        )
    choices = prompts * num_samples
    if choices > limits.max_choices:
        raise RequestError(
            f"the request asks for {choices} completions (n times the prompts); this server "
            f"allows at most {limits.max_choices}",
            "n",
        )


def _logprobs(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise RequestError(
            f"logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {value!r}", "logprobs"
        )
    return value


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise RequestError('stream_options must be {"include_usage": true|false}', "stream_options")
    return _optional(options, "include_usage", bool) or False


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestError(f"{name} must be {_KIND_NAMES[kind]}, got {value!r}", name)
    return value


_KIND_NAMES = {str: "a string", bool: "true or false", int: "an integer"}

"""The ASGI application: routes, request bodies, errors, and the playground page.

    GET  /                 the playground (one page; nothing from any other host)
    GET  /health           {"status": "ok", ...}: the models, how busy each is, the limits
    GET  /v1/models        the loaded models (OpenAI's list, with tokenizer, size and labels)
    POST /v1/completions   OpenAI's completions, streamed as server-sent events with "stream"
    POST /v1/score         perplexity and bits per character of texts
    POST /v1/classify      labels with probabilities, for a model trained on labelled text

Every error is JSON in OpenAI's shape, {"error": {"message": ..., "type": ..., "param": ...}},
with a message of one line; no request can stop the server.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from charlm.device import is_out_of_memory
from charlm.errors import CharlmError, ConfigError, TokenizerError, UnknownTokenError
from charlm.serve.completions import complete
from charlm.serve.config import ServeConfig
from charlm.serve.models import ModelSet
from charlm.serve.schema import (
    RequestError,
    completion_request,
    error_object,
    refuse_lone_surrogates,
    texts_request,
)

# Host names a loopback server answers to; any other name in the Host header is a page on
# another site that resolved its own name to 127.0.0.1 (DNS rebinding), and is refused.
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]"}
DEFAULT_TOP_K = 3  # labels a classify request gets when it names no top_k
# How a text with pieces the model never saw can be read after all (the playground shows a
# setting for the field instead).
UNKNOWN_ADVICE = 'send "unknown": "{policy}"'
# Levels of lists and objects a body may nest (the API's own need 3). Deeper ones are refused
# as a whole: past ~1000 the parser runs out of stack, and a little less leaves too little to
# check the values or write an error message that quotes them.
MAX_DEPTH = 32


def create_app(models: ModelSet, config: ServeConfig) -> Starlette:
    """The application serving `models` within `config`'s limits."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        models.close()

    async def page(request: Request) -> Response:
        html = resources.files("charlm.serve").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    async def health(request: Request) -> Response:
        busy = [
            {"id": m.id, "drawing": m.engine.active_rows, "waiting": m.engine.waiting}
            for m in models
        ]
        return JSONResponse({"status": "ok", "models": busy, "limits": config.limits()})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [m.card() for m in models]})

    async def one_model(request: Request) -> Response:
        return JSONResponse(models.get(request.path_params["name"]).card())

    async def completions(request: Request) -> Response:
        body = completion_request(await _json_body(request, config), config)
        return await complete(models.get(body.model), body, request)

    async def score(request: Request) -> Response:
        body = texts_request(await _json_body(request, config), top_k=False)
        model = models.get(body.model)
        model.check_label(body.label)
        scores = await run_in_threadpool(
            lambda: [
                model.sampler.score(t, label=body.label, unknown=body.unknown) for t in body.inputs
            ]
        )
        data = [{"index": i, "object": "score", **_score_fields(s)} for i, s in enumerate(scores)]
        return JSONResponse({"object": "list", "model": model.id, "data": data})

    async def classify(request: Request) -> Response:
        body = texts_request(await _json_body(request, config), top_k=True)
        model = models.get(body.model)
        if not model.labels:
            raise RequestError(
                f"model {model.id!r} has no labels: it was not trained on labelled text", "model"
            )
        found = await run_in_threadpool(
            lambda: model.sampler.classify(
                body.inputs,
                top_k=body.top_k or DEFAULT_TOP_K,
                prior=body.prior,
                unknown=body.unknown,
            )
        )
        # As `charlm classify --json`: {"text", "labels": [{"label", "score": probability}]}.
        data = [
            {"index": i, "object": "classification", **c.to_dict()} for i, c in enumerate(found)
        ]
        return JSONResponse({"object": "list", "model": model.id, "data": data})

    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/v1/models", list_models),
        Route("/v1/models/{name:path}", one_model),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/score", score, methods=["POST"]),
        Route("/v1/classify", classify, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=_HANDLERS)
    if config.loopback:
        app.add_middleware(_LoopbackHosts, names=loopback_names(config.host))
    return app


def loopback_names(host: str) -> set[str]:
    """The names a server listening on the loopback address `host` answers to in the Host
    header: the usual ones and `host` itself (127.0.0.2, ...), as its address is printed."""
    return LOOPBACK_NAMES | {(f"[{host}]" if ":" in host else host).lower()}


async def _json_body(request: Request, config: ServeConfig) -> Any:
    """The request's JSON body, refused when too large, not JSON, or not sent as JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        # Browsers send JSON across sites only after asking (CORS), which this server never
        # allows; a form or plain text could be posted to it by any page the user visits.
        raise RequestError(
            "send the body as JSON, with the header Content-Type: application/json", status=415
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > config.max_body:
        raise _too_large(config)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > config.max_body:
            raise _too_large(config)
        chunks.append(chunk)
    too_deep = RequestError(f"the body is not valid JSON: it nests more than {MAX_DEPTH} deep")
    try:
        body = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise too_deep from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise RequestError(
            "the body is not valid JSON here: a number in it is too large (more than "
            f"{sys.get_int_max_str_digits():,} digits)"
        ) from exc
    if _nests_deeper(body, MAX_DEPTH):
        raise too_deep
    refuse_lone_surrogates(body)  # before anything reads the texts or quotes them
    return body


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value` holds lists or objects more than `limit` levels deep; level by level,
    as recursion would run out of stack on the values it is there to refuse."""
    level = [value] if isinstance(value, list | dict) else []
    for _ in range(limit):
        children = (v.values() if isinstance(v, dict) else v for v in level)
        level = [c for values in children for c in values if isinstance(c, list | dict)]
        if not level:
            return False
    return True


def _too_large(config: ServeConfig) -> RequestError:
    return RequestError(
        f"the body is larger than this server accepts ({config.max_body:,} bytes)", status=413
    )


def _score_fields(score: Any) -> dict[str, Any]:
    return {
        "tokens": score.num_tokens,
        "characters": score.num_characters,
        "cross_entropy": score.cross_entropy,
        "perplexity": score.perplexity,
        "bits_per_character": score.bits_per_character,
    }


def error_response(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
) -> JSONResponse:
    """OpenAI's error object as a response."""
    return JSONResponse(error_object(message, kind, param), status_code=status)


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
    return error_response(exc.status, str(exc), kind, exc.param)


async def _charlm_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UnknownTokenError) and exc.summary:  # advice in the API's words
        return error_response(400, exc.describe(exc.where, UNKNOWN_ADVICE))
    if isinstance(exc, ConfigError | TokenizerError):  # a bad setting or a text it cannot take
        return error_response(400, str(exc))
    return error_response(500, str(exc), "server_error")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), "invalid_request_error")


async def _server_error(request: Request, exc: Exception) -> Response:
    if is_out_of_memory(exc):
        return error_response(503, "the server ran out of memory; ask for less", "server_error")
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")


_HANDLERS = {
    RequestError: _request_error,
    CharlmError: _charlm_error,
    HTTPException: _http_error,
    Exception: _server_error,
}


class _LoopbackHosts:
    """Refuse requests whose Host header is not one of `names` (see `loopback_names`)."""

    def __init__(self, app: Any, names: set[str] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.names:
                response = error_response(
                    403, f"this server answers to localhost only, not to {host!r}"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

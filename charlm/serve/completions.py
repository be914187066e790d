"""`POST /v1/completions`: a checked request in, OpenAI's completion object (or its stream) out.

Each prompt becomes one sampler request of `n` samples, drawn by the model's engine; the
choices are numbered prompt by prompt (prompt i, sample j is choice i * n + j), and sample j
uses seed + j, as `charlm generate --num-samples n --seed SEED` does. With `stream`, every
batch of new pieces goes out as soon as it is drawn, as server-sent events; the text of a
chunk is whatever was drawn since the last one (one piece when the client keeps up).

With `echo` and `logprobs`, each choice's logprobs begin with the prompt's own tokens, scored
by the engine's worker (`Sampler.prompt_pieces`): the first one null where nothing predicts it, as
OpenAI's; streamed, they go out with the echoed prompt, in the first chunk of the choice.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse

from charlm.sampling.drawing import Piece
from charlm.sampling.request import make_request
from charlm.serve.engine import Job
from charlm.serve.models import ServedModel
from charlm.serve.schema import CompletionRequest, error_object


@dataclass
class Choice:
    """One completion as it grows: its text and, when asked for, its probabilities."""

    index: int
    prefix: str
    tokens: list[str] = field(default_factory=list)  # the text, piece by piece
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    length: int = 0  # characters so far, the echoed prompt included (for text_offset)
    echoed: int = 0  # how many of the pieces are the prompt's (echo with logprobs)

    def add_prompt(self, pieces: list[Piece]) -> None:
        """Record the prompt's scored pieces, before any drawn one. Each piece's offset is
        where its text is next found in the prompt as sent, which its pieces need not spell
        (characters `unknown` "skip" dropped, <unk>); one not found sits where the last
        one ended."""
        cursor = 0
        for piece in pieces:
            found = self.prefix.find(piece.text, cursor)
            self.tokens.append(piece.text)
            self.token_logprobs.append(piece.log_prob)
            self.top_logprobs.append(_top(piece))
            self.text_offset.append(cursor if found < 0 else found)
            cursor = cursor if found < 0 else found + len(piece.text)
        self.echoed = len(self.tokens)

    @property
    def text(self) -> str:
        """What was drawn, without the prompt."""
        return "".join(self.tokens[self.echoed :])

    def add(self, pieces: list[Piece]) -> tuple[str, dict[str, Any]]:
        """Record `pieces`; their text and their logprobs object (OpenAI's shape)."""
        start = len(self.tokens)
        for piece in pieces:
            self.tokens.append(piece.text)
            self.token_logprobs.append(piece.log_prob)
            self.top_logprobs.append(_top(piece))
            self.text_offset.append(self.length)
            self.length += len(piece.text)
        return "".join(self.tokens[start:]), self.logprobs(start)

    def logprobs(self, start: int = 0) -> dict[str, Any]:
        return {
            "tokens": self.tokens[start:],
            "token_logprobs": self.token_logprobs[start:],
            "top_logprobs": self.top_logprobs[start:],
            "text_offset": self.text_offset[start:],
        }


class Completion:
    """The jobs of one request and the OpenAI objects made from what they draw."""

    def __init__(self, model: ServedModel, request: CompletionRequest) -> None:
        model.check_label(request.options.label, request.options.guidance)
        self.model = model
        self.request = request
        self.id = f"cmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.n = request.options.num_samples
        sampler_requests = [make_request(p, request.options) for p in request.prompts]
        self.jobs = [
            model.engine.submit(r, request.logprobs, request.echo) for r in sampler_requests
        ]
        self.choices = [
            Choice(i * self.n + j, prompt, length=len(prompt) if request.echo else 0)
            for i, prompt in enumerate(request.prompts)
            for j in range(self.n)
        ]

    async def started(self) -> None:
        """Wait until every prompt is primed; a prompt the model cannot take fails them all."""
        try:
            for job in self.jobs:
                await job.started()
        except BaseException:
            self.cancel()
            raise
        for choice in self.choices:  # with echo and logprobs: the prompt's pieces first
            choice.add_prompt(self.jobs[choice.index // self.n].prompt)

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    def choice(self, job_number: int, row: int) -> Choice:
        return self.choices[job_number * self.n + row]

    def finish_reason(self, choice: Choice) -> str:
        drawing = self.jobs[choice.index // self.n].drawing
        return drawing.finish_reason(choice.index % self.n)

    def usage(self) -> dict[str, int]:
        prompt = sum(job.drawing.prompt_tokens for job in self.jobs)
        completion = sum(
            job.drawing.num_tokens(row) for job in self.jobs for row in range(job.rows)
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model.id,
            "choices": choices,
        }

    def seed(self, choice: Choice) -> int:
        return self.jobs[choice.index // self.n].drawing.seeds[choice.index % self.n]


async def complete(model: ServedModel, request: CompletionRequest, http: HttpRequest) -> Response:
    """The response to a checked completions request: JSON, or a stream of events.

    From the moment its jobs are queued, a client that closes the connection cancels them:
    while they wait for room, while their prompts are read, and while they are drawn."""
    completion = Completion(model, request)
    watcher = asyncio.ensure_future(_disconnected(http))
    streaming = False
    try:
        if not await _started_unless_gone(completion, watcher):
            return Response(status_code=499)
        if request.stream:  # the response notices a client that goes from now on
            streaming = True
            return StreamingResponse(
                _events(completion),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        async for job_number, pieces in _drawn(completion.jobs):
            if pieces is not None:
                _record(completion, job_number, pieces)
            if watcher.done():  # the client has gone: stop drawing for nobody
                return Response(status_code=499)
        return JSONResponse(_whole(completion))
    finally:
        watcher.cancel()
        if not streaming:
            completion.cancel()  # a no-op when all is drawn


async def _started_unless_gone(completion: Completion, watcher: asyncio.Future) -> bool:
    """Wait until every prompt of `completion` is primed (True) or its client has gone
    (False, `watcher` done); raises what kept a prompt from being primed."""
    started = asyncio.ensure_future(completion.started())
    try:
        await asyncio.wait({started, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()  # a no-op once it is done
    if watcher.done():
        if started.done() and not started.cancelled():
            started.exception()  # retrieved: nobody is there to be told
        return False
    started.result()
    return True


def _whole(completion: Completion) -> dict[str, Any]:
    echo, logprobs = completion.request.echo, completion.request.logprobs is not None
    choices = [
        {
            "index": choice.index,
            "text": (choice.prefix if echo else "") + choice.text,
            "logprobs": choice.logprobs() if logprobs else None,
            "finish_reason": completion.finish_reason(choice),
            "seed": completion.seed(choice),
        }
        for choice in completion.choices
    ]
    return {**completion.envelope(choices), "usage": completion.usage()}


def _record(completion: Completion, job_number: int, pieces: list[Piece]) -> list[dict[str, Any]]:
    """Add `pieces` to their choices; a chunk's choice object for each choice they touched."""
    by_row: dict[int, list[Piece]] = {}
    for piece in pieces:
        by_row.setdefault(piece.sample, []).append(piece)
    with_logprobs = completion.request.logprobs is not None
    chunks = []
    for row, row_pieces in by_row.items():
        choice = completion.choice(job_number, row)
        text, logprobs = choice.add(row_pieces)
        chunks.append(_chunk(choice, text, logprobs if with_logprobs else None))
    return chunks


async def _events(completion: Completion) -> AsyncIterator[str]:
    """Server-sent events: chunks of new text, each choice's finish, usage, then [DONE]."""
    request = completion.request
    try:
        if request.echo:
            with_logprobs = request.logprobs is not None
            for choice in completion.choices:
                logprobs = choice.logprobs() if with_logprobs else None
                yield _event(completion.envelope([_chunk(choice, choice.prefix, logprobs)]))
        async for job_number, pieces in _drawn(completion.jobs):
            if pieces is None:
                yield _finished(completion, job_number)
            else:
                yield _event(completion.envelope(_record(completion, job_number, pieces)))
        if request.include_usage:
            yield _event({**completion.envelope([]), "usage": completion.usage()})
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the model failed mid-stream: say so in the stream, as OpenAI does
        yield _event(error_object(f"drawing failed: {exc}", "server_error"))
    finally:
        completion.cancel()  # a no-op when all is drawn; stops the drawing if the client left


def _chunk(choice: Choice, text: str, logprobs: dict[str, Any] | None) -> dict[str, Any]:
    return {"index": choice.index, "text": text, "logprobs": logprobs, "finish_reason": None}


def _finished(completion: Completion, job_number: int) -> str:
    n = completion.n
    choices = [
        {**_chunk(c, "", None), "finish_reason": completion.finish_reason(c)}
        for c in completion.choices[job_number * n : (job_number + 1) * n]
    ]
    return _event(completion.envelope(choices))


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _top(piece: Piece) -> dict[str, float] | None:
    if not piece.top:
        return None
    top: dict[str, float] = {}
    for text, log_prob in piece.top:
        top.setdefault(text, log_prob)  # two ids may decode alike; keep the likelier
    return top


async def _drawn(jobs: list[Job]) -> AsyncIterator[tuple[int, list[Piece] | None]]:
    """(job number, new pieces) as they arrive from any job; (job number, None) when it ends."""
    if len(jobs) == 1:
        while (pieces := await jobs[0].pieces()) is not None:
            yield 0, pieces
        yield 0, None
        return
    queue: asyncio.Queue[tuple[int, list[Piece] | None] | BaseException] = asyncio.Queue()

    async def forward(number: int, job: Job) -> None:
        try:
            while (pieces := await job.pieces()) is not None:
                queue.put_nowait((number, pieces))
            queue.put_nowait((number, None))
        except Exception as exc:
            queue.put_nowait(exc)

    tasks = [asyncio.ensure_future(forward(i, job)) for i, job in enumerate(jobs)]
    ended = 0
    try:
        while ended < len(jobs):
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            ended += item[1] is None
            yield item
    finally:
        for task in tasks:
            task.cancel()


async def _disconnected(http: HttpRequest) -> None:
    """Return once the client has closed the connection (the body has been read by then)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass

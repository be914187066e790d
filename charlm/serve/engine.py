"""One model's requests, drawn on a thread of their own and handed to the event loop.

The network must not run on the event loop (it would stall every other connection), and
requests that arrive together are cheaper drawn together. So each model has an `Engine`: a
worker thread that admits waiting requests between two steps, steps them all through one
`Batch` (or, with batching off, a batch each, in turn), and posts each request's new pieces
to its `Job`, where the request's handler awaits them. A handler whose client has gone
cancels its job: one still waiting for room leaves the queue at once, one whose prompt is
being read is dropped before the next part of it, one being drawn at the next step.

A long prompt is read a part at a time (`Sampler.start_in_parts`: one forward call of the
network, up to 8,192 tokens of a character model), and the requests being drawn take a step
between two parts: a client's long prompt slows the others' streams, it does not stop them.
The calls are those of priming in one go, so the text is the same.

Waking the event loop for every token of a fast model costs more than the token: on two
cores, an event per token held a streamed completion to 0.62-0.67 of drawing in process, and
a single event at the end to 0.77-0.94. So a job hands its pieces to the loop at most every
`interval` seconds (the first piece, the end and errors at once); pieces drawn in between go
out together.

A completion that echoes its prompt with `logprobs` also reports the prompt's tokens with
their probabilities: `Sampler.prompt_pieces_in_parts`, read by the worker in parts as the
priming is, before its prefix is primed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Generator

import torch

from charlm.models import State
from charlm.sampling import Sampler
from charlm.sampling.batch import Batch, Step
from charlm.sampling.drawing import Drawing, Piece
from charlm.sampling.request import Request

# What the worker reads a prompt with: parts, then the primed drawing, logits and state.
Parts = Generator[None, None, tuple[Drawing, torch.Tensor, State]]


class Job:
    """One request in flight: the handler's side (async) of what the worker draws."""

    def __init__(
        self,
        request: Request,
        logprobs: int | None,
        interval: float = 0.0,
        echo: bool = False,
        withdraw: Callable[[Job], None] | None = None,
    ) -> None:
        self.request = request
        self.logprobs = logprobs
        self.drawing: Drawing | None = None  # set by the worker once the prefix is primed
        # With echo and logprobs: the prompt's pieces (`Sampler.prompt_pieces`), set with `drawing`.
        self.scores_prompt = echo and logprobs is not None
        self.prompt: list[Piece] = []
        self.cancelled = False
        self.parts: Parts | None = None  # the worker's, while it reads the prompt
        self._withdraw = withdraw  # takes the job out of its engine's queue, if it waits there
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._pieces: list[Piece] = []
        self._started = False
        self._finished = False
        self._error: BaseException | None = None
        # The worker's side: pieces not yet handed to the loop, and when it last handed some.
        self._interval = interval
        self._held: list[Piece] = []
        self._handed_at = -float("inf")
        self._handed_text = False

    @property
    def rows(self) -> int:
        return self.request.options.num_samples

    def cancel(self) -> None:
        """Stop (the client has gone): a job waiting for room leaves the queue now; the worker
        drops one whose prompt it reads before the next part, one it draws at its next step."""
        self.cancelled = True
        if self.drawing is not None:
            self.drawing.cancelled = True
        if self._withdraw is not None:
            self._withdraw(self)

    async def started(self) -> None:
        """Wait until the prefix is primed; raise what went wrong if it could not be."""
        while not (self._started or self._error):
            await self._wait()
        if not self._started:
            raise self._error

    async def pieces(self) -> list[Piece] | None:
        """The pieces drawn since the last call (waiting for some), or None once done;
        raises the error that ended the drawing, after the pieces drawn before it."""
        while not (self._pieces or self._finished or self._error):
            await self._wait()
        if self._pieces:  # what was drawn before an error still goes out first
            pieces, self._pieces = self._pieces, []
            return pieces
        if self._error is not None:
            raise self._error
        return None

    async def _wait(self) -> None:
        self._ready.clear()
        await self._ready.wait()

    def post(
        self, pieces: list[Piece], finished: bool = False, error: BaseException | None = None
    ) -> None:
        """From the worker (only): new pieces, the end, or an error. Pieces are held back
        until `interval` has passed since the last hand-over; the rest goes at once."""
        self._held.extend(pieces)
        now = time.monotonic()
        first_text = pieces and not self._handed_text
        if not (finished or error or first_text or now - self._handed_at >= self._interval):
            return
        held, self._held, self._handed_at = self._held, [], now
        self._handed_text = self._handed_text or bool(held)
        try:
            self._loop.call_soon_threadsafe(self._receive, held, finished, error)
        except RuntimeError:  # the event loop has closed: nobody is waiting any more
            pass

    def _receive(self, pieces: list[Piece], finished: bool, error: BaseException | None) -> None:
        self._pieces.extend(pieces)
        self._started = self._started or error is None
        self._finished = self._finished or finished
        self._error = self._error or error
        self._ready.set()


class Engine:
    """The worker thread of one model; see the module docstring."""

    def __init__(
        self, sampler: Sampler, max_batch: int, batch: bool = True, interval: float = 0.0
    ) -> None:
        self._sampler = sampler
        self._max_batch = max_batch
        self._batched = batch
        self._interval = interval
        self._waiting: deque[Job] = deque()  # submitted, waiting for room
        self._reading: deque[Job] = deque()  # admitted, their prompts being read in turn
        self._wake = threading.Condition()
        self._batches: list[Batch] = []
        self._jobs: dict[int, Job] = {}  # id(drawing) -> its job
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="charlm-engine", daemon=True)
        self._thread.start()

    @property
    def active_rows(self) -> int:
        """Rows of the network being stepped now: one per sample, one per sample and label
        with guidance (for /health)."""
        return sum(batch.rows for batch in list(self._batches))

    @property
    def waiting(self) -> int:
        """Requests not drawing yet: waiting for room in the batch, or their prompt being
        read (for /health)."""
        with self._wake:
            return len(self._waiting) + len(self._reading)

    def submit(self, request: Request, logprobs: int | None = None, echo: bool = False) -> Job:
        """Queue `request` (from the event loop); its pieces arrive at the returned job. With
        `echo` and `logprobs`, the job's `prompt` holds the prompt's scored pieces once it
        has started."""
        job = Job(request, logprobs, self._interval, echo, withdraw=self._withdraw)
        with self._wake:
            self._waiting.append(job)
            self._wake.notify()
        return job

    def close(self) -> None:
        """Stop the worker after its current step."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _withdraw(self, job: Job) -> None:
        """Take a cancelled job out of the queue, if it is still there (from the event loop)."""
        with self._wake:
            if job not in self._waiting:
                return  # the worker has it: it drops it itself
            self._waiting.remove(job)
        job.post([], finished=True)

    def _work(self) -> None:
        while self._admit():
            self._read()
            for batch in list(self._batches):
                self._step(batch)
            self._batches = [batch for batch in self._batches if batch]

    def _admit(self) -> bool:
        """Move the waiting jobs that fit in the batch now to those being read; blocks while
        there is nothing to do. False once the engine is closed."""
        with self._wake:
            while not (self._closed or self._waiting or self._reading or self._batches):
                self._wake.wait()
            if self._closed:
                return False
            rows = self._sampler.network_rows
            room = self._max_batch - self.active_rows
            room -= sum(rows(job.request.options) for job in self._reading)
            while self._waiting:
                # An idle engine always takes the first job, even one larger than the batch.
                idle = not self._batches and not self._reading
                needed = rows(self._waiting[0].request.options)
                if needed > room and not idle:
                    break
                job = self._waiting.popleft()
                job.parts = self._parts(job)
                self._reading.append(job)
                room -= needed
            return True

    def _parts(self, job: Job) -> Parts:
        """Reading `job`'s prompt, one forward call at a time: with echo and logprobs, first
        scoring it (a prompt it cannot score joins no batch), then priming on it."""
        if job.scores_prompt:
            job.prompt = yield from self._sampler.prompt_pieces_in_parts(job.request, job.logprobs)
            yield
        return (yield from self._sampler.start_in_parts(job.request, job.logprobs))

    def _read(self) -> None:
        """Read the admitted prompts in turn, a part each, until a part leaves one unread: a
        long prompt takes one part between two steps of the requests being drawn."""
        while self._reading:
            if not self._read_part(self._reading[0]):
                return
            with self._wake:
                self._reading.popleft()

    def _read_part(self, job: Job) -> bool:
        """Read the next part of `job`'s prompt; True when it is done with (primed and
        joined to a batch, failed, or cancelled)."""
        parts = job.parts
        assert parts is not None
        if job.cancelled:  # the client left while the job waited or its prompt was read
            parts.close()
            job.parts = None
            job.post([], finished=True)
            return True
        try:
            next(parts)
        except StopIteration as end:
            job.parts = None
            drawing, logits, state = end.value
        except Exception as exc:  # a prefix the model cannot take: that request fails alone
            job.parts = None
            job.post([], error=exc)
            return True
        else:
            return False
        if self._batched and self._batches:
            batch = self._batches[0]
        else:
            batch = Batch(self._sampler)
        job.drawing = batch.join(drawing, logits, state)
        if job.cancelled:  # cancelled while its prefix was primed
            drawing.cancelled = True
        if batch not in self._batches:
            self._batches.append(batch)
        self._jobs[id(drawing)] = job
        job.post([])  # primed: the handler may answer now
        return True

    def _step(self, batch: Batch) -> None:
        try:
            steps = batch.step()
        except Exception as exc:  # the model itself failed (NaN, out of memory): end them all
            self._fail(batch, exc)
            return
        for step in steps:
            self._deliver(step)

    def _deliver(self, step: Step) -> None:
        job = self._jobs[id(step.drawing)]
        if step.finished:
            del self._jobs[id(step.drawing)]
        if step.pieces or step.finished:
            job.post(step.pieces, finished=step.finished)

    def _fail(self, batch: Batch, exc: Exception) -> None:
        for drawing in batch.drawings:
            self._jobs.pop(id(drawing)).post([], error=exc)
        batch.clear()

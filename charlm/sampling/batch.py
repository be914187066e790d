"""Drawings that share the network: one call per token for the rows of all of them.

On a CPU or a GPU, one step of a recurrent network over 16 rows costs little more than over
one (the weights are read once; the per-call overhead is paid once), so requests that are
drawn at the same time are cheaper together. A drawing may join between two steps (after its
prefix has been primed alone) and leaves as soon as it is done or cancelled; the others go on.
Each drawing keeps its own random numbers, so its text does not depend on the batch around it.

    batch = Batch(sampler)
    drawing = batch.add(request)
    while batch:
        for step in batch.step():
            ...  # step.drawing, step.pieces, step.finished
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from charlm.models import State
from charlm.sampling.drawing import Drawing, Piece
from charlm.sampling.request import Request
from charlm.sampling.state import join_rows, select_rows

if TYPE_CHECKING:
    from charlm.sampling.sampler import Sampler


class Step(NamedTuple):
    """What one step did for one drawing."""

    drawing: Drawing
    pieces: list[Piece]
    finished: bool  # the drawing left the batch (done, or cancelled)


class Batch:
    """Drawings stepped together through one sampler's network; see the module docstring."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self._drawings: list[Drawing] = []
        self._logits: torch.Tensor | None = None  # (rows, vocab): the next token's scores
        self._state: State | None = None

    def __len__(self) -> int:
        return len(self._drawings)

    @property
    def rows(self) -> int:
        return sum(drawing.network_rows for drawing in self._drawings)

    @property
    def drawings(self) -> list[Drawing]:
        return list(self._drawings)

    def clear(self) -> None:
        """Drop every drawing (after a failed step, whose state cannot be trusted)."""
        self._drawings, self._logits, self._state = [], None, None

    @torch.inference_mode()
    def add(self, request: Request, logprobs: int | None = None) -> Drawing:
        """Prime `request`'s prefix and let its rows join the next step."""
        return self.join(*self._sampler.start(request, logprobs))

    @torch.inference_mode()
    def join(self, drawing: Drawing, logits: torch.Tensor, state: State) -> Drawing:
        """Let a drawing primed apart (what `Sampler.start` or `start_in_parts` gives) join the
        next step."""
        self._drawings.append(drawing)
        self._state = join_rows(self._state, state)
        self._logits = logits if self._logits is None else torch.cat([self._logits, logits])
        return drawing

    @torch.inference_mode()
    def step(self) -> list[Step]:
        """Draw one token for every row, then run the network once for the rows going on."""
        steps: list[Step] = []
        going_on: list[Drawing] = []
        tokens: list[torch.Tensor] = []
        keep: list[int] = []
        start = 0
        alone = len(self._drawings) == 1  # one drawing has every row: no slice to make
        for drawing in self._drawings:
            rows = range(start, start + drawing.network_rows)
            start += drawing.network_rows
            if drawing.done:  # cancelled since the last step, or asked for no tokens
                steps.append(Step(drawing, drawing.finish(), True))
                continue
            drawn, pieces = drawing.draw(
                self._logits if alone else self._logits[rows.start : rows.stop]
            )
            if drawing.done:
                steps.append(Step(drawing, pieces + drawing.finish(), True))
                continue
            steps.append(Step(drawing, pieces, False))
            going_on.append(drawing)
            tokens.append(drawn)
            keep.extend(rows)
        self._advance(going_on, tokens, keep)
        return steps

    def _advance(self, going_on: list[Drawing], tokens: list[torch.Tensor], keep: list[int]):
        """Step the network for the rows `keep` of the drawings still `going_on`."""
        if not going_on:
            self.clear()
            return
        if len(going_on) < len(self._drawings):
            rows = torch.as_tensor(keep, device=self._sampler.device)
            self._state = select_rows(self._state, rows)
        self._drawings = going_on
        drawn = tokens[0] if len(tokens) == 1 else torch.cat(tokens)  # (rows,)
        # A labelled model's drawings each carry their rows' labels; others carry none.
        labels = [drawing.labels for drawing in going_on if drawing.labels is not None]
        row_labels = None if not labels else labels[0] if len(labels) == 1 else torch.cat(labels)
        self._logits, self._state = self._sampler.step(drawn, self._state, row_labels)

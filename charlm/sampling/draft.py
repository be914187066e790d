"""One sample while it is drawn, and the finished `Sample`."""

from __future__ import annotations

from dataclasses import dataclass

from charlm.sampling.stops import StopScanner
from charlm.tokenizers import StreamDecoder


@dataclass
class Sample:
    """One drawn continuation, with what is needed to judge and reproduce it."""

    prefix: str
    text: str  # the continuation only; the prefix is not repeated
    token_ids: list[int]  # every token drawn, including any that spelled a stop string
    token_log_probs: list[float]  # the model's log-probability (nats) of each drawn token
    seed: int | None  # reproduces this sample on its own; None for beam search
    stop: str | None = None  # the stop string that ended the sample, if one did

    @property
    def log_probability(self) -> float:
        """Log-probability (nats) of all drawn tokens under the model at temperature 1."""
        return float(sum(self.token_log_probs))


class Draft:
    """One sample while it is drawn: decodes its tokens and watches for stop strings."""

    def __init__(self, decoder: StreamDecoder, stops: tuple[str, ...]) -> None:
        self._decoder = decoder
        self._scanner = StopScanner(stops)
        self._pieces: list[str] = []
        self._ids: list[int] = []
        self._log_probs: list[float] = []
        self._ended = False  # the model drew the end token of an example

    @property
    def finished(self) -> bool:
        return self._ended or self._scanner.stopped is not None

    @property
    def num_tokens(self) -> int:
        return len(self._ids)

    def add(self, token: int, log_prob: float | None) -> str:
        self._ids.append(token)
        if log_prob is not None:
            self._log_probs.append(log_prob)
        piece = self._scanner.feed(self._decoder.step(token))
        self._pieces.append(piece)
        return piece

    def end(self, token: int, log_prob: float | None) -> str:
        """The end token of an example: kept with its log-probability, but never text; the
        text still held back comes out and the sample is finished."""
        self._ids.append(token)
        if log_prob is not None:
            self._log_probs.append(log_prob)
        piece = self.finish()
        self._ended = True
        return piece

    def finish(self) -> str:
        """The text held back until the end (by the decoder or the stop scanner)."""
        if self.finished:
            return ""
        piece = self._scanner.feed(self._decoder.flush())
        if not self.finished:
            piece += self._scanner.flush()
        self._pieces.append(piece)
        return piece

    def sample(self, prefix: str, seed: int) -> Sample:
        text = "".join(self._pieces)
        return Sample(prefix, text, self._ids, self._log_probs, seed, self._scanner.stopped)

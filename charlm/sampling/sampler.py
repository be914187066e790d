"""The Sampler: prime the network on a prefix once, then draw one token per network step.

The prefix goes through the network in one forward call (in chunks only when it is very long),
which leaves the hidden state "primed"; each new token then costs one step of the network on
one token per sample, carrying the state forward. The prefix is never run again.

Every way of drawing text goes through `Sampler._run`, which yields `Piece`s of text as soon
as they are complete: `stream` passes them on, `generate` and `samples` collect them, so
streamed and collected text cannot differ.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from charlm.checkpoint import load_checkpoint
from charlm.device import resolve_device
from charlm.errors import ConfigError, SamplingError
from charlm.models import State, convert
from charlm.models.quantized import quantize as quantize_model
from charlm.sampling.beam import StepFn, beam_search
from charlm.sampling.draft import Draft, Sample
from charlm.sampling.request import Request, make_request
from charlm.sampling.scoring import Score, total_loss
from charlm.sampling.state import select_rows
from charlm.sampling.strategies import Uniforms, choose
from charlm.tokenizers import Tokenizer

# With an empty prefix the network is primed on a newline, i.e. asked to start a paragraph.
EMPTY_PREFIX_PRIMER = "\n"
# Priming and scoring feed at most this many logits (tokens x vocabulary), and this many
# tokens, per forward call: memory stays bounded while a prefix of ordinary length still goes
# through in one call.
LOGITS_PER_CALL = 1 << 22
TOKENS_PER_CALL = 8192


class Piece(NamedTuple):
    """New text of one sample, as it became complete."""

    sample: int
    text: str


class Sampler:
    """Generate, stream and score text with a trained model."""

    def __init__(
        self, model: torch.nn.Module, tokenizer: Tokenizer, device: torch.device | str = "cpu"
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self._chunk_len = max(1, min(TOKENS_PER_CALL, LOGITS_PER_CALL // tokenizer.vocab_size))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto") -> Sampler:
        resolved = resolve_device(device)
        checkpoint = load_checkpoint(path, resolved)
        return cls(checkpoint.model, checkpoint.tokenizer, resolved)

    def generate(
        self,
        prefix: str = "",
        length: int = 200,
        temperature: float = 1.0,
        seed: int | None = None,
        *,
        top_k: int | None = None,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        stop: str | Sequence[str] = (),
        num_samples: int = 1,
        beam_width: int = 1,
        unknown: str | None = None,
        allow_unk: bool = False,
    ) -> str | list[str]:
        """`prefix` followed by up to `length` new tokens; a list of `num_samples` texts if > 1.

        See `samples` for the meaning of every option.
        """
        request = make_request(
            prefix,
            length,
            temperature,
            seed,
            top_k,
            top_p,
            repetition_penalty,
            stop,
            num_samples,
            beam_width,
            unknown,
            allow_unk,
        )
        if num_samples == 1:
            return prefix + "".join(self._stream(request))
        return [prefix + sample.text for sample in self._collect(request)]

    def stream(
        self,
        prefix: str = "",
        length: int = 200,
        temperature: float = 1.0,
        seed: int | None = None,
        *,
        top_k: int | None = None,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        stop: str | Sequence[str] = (),
        beam_width: int = 1,
        unknown: str | None = None,
        allow_unk: bool = False,
    ) -> Iterator[str]:
        """The new text only, piece by piece as soon as each piece is complete.

        A piece is never half a character nor any part of a stop string. With the same seed
        the pieces join to exactly the text `generate` returns after the prefix.
        """
        request = make_request(
            prefix,
            length,
            temperature,
            seed,
            top_k,
            top_p,
            repetition_penalty,
            stop,
            1,
            beam_width,
            unknown,
            allow_unk,
        )
        return self._stream(request)

    def samples(
        self,
        prefix: str = "",
        length: int = 200,
        temperature: float = 1.0,
        seed: int | None = None,
        *,
        top_k: int | None = None,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        stop: str | Sequence[str] = (),
        num_samples: int = 1,
        beam_width: int = 1,
        unknown: str | None = None,
        allow_unk: bool = False,
    ) -> list[Sample]:
        """`num_samples` continuations of `prefix`, drawn together in one batch.

        length: the most new tokens per sample (a stop string may end one sooner).
        temperature, top_k, top_p, repetition_penalty: see `SamplingOptions`.
        stop: a string or strings that end a sample where they appear (cut off, not included).
        seed: sample i uses seed + i, so each sample can be reproduced on its own; None picks
            a random seed (reported in `Sample.seed`).
        beam_width: > 1 runs beam search instead of sampling: the most probable continuations
            of exactly `length` tokens (the best `num_samples` of the beams, which must be at
            most `beam_width`). Beam search is deterministic and ignores temperature and seed.
        unknown: what to do with prefix pieces outside the vocabulary: "error", "skip" or
            "unk" (default: the tokenizer's own rule: <unk> where it has one, else an error).
        allow_unk: let the sampler draw <unk>; other special tokens are never drawn.
        """
        request = make_request(
            prefix,
            length,
            temperature,
            seed,
            top_k,
            top_p,
            repetition_penalty,
            stop,
            num_samples,
            beam_width,
            unknown,
            allow_unk,
        )
        return self._collect(request)

    @torch.inference_mode()
    def score(self, text: str, chunk_len: int | None = None, *, prefix: str = "") -> Score:
        """Cross-entropy, perplexity and bits per character of every token of `text`.

        The first token is predicted after `prefix` (by default after a newline, as at the
        start of a paragraph); the state is carried over the whole text, fed `chunk_len`
        tokens per forward call (default: as many as keep memory bounded). Chunking does not
        change the result.
        """
        if chunk_len is not None and (isinstance(chunk_len, bool) or chunk_len < 1):
            raise ConfigError(f"chunk_len must be at least 1, got {chunk_len!r}")
        ids = self.tokenizer.encode_array(text)
        if len(ids) == 0:
            raise ConfigError("there is nothing to score: the text is empty")
        context, _ = self._encode_prefix(prefix)
        state = self._feed(context[:-1])[1] if len(context) > 1 else None
        inputs = np.concatenate([np.asarray(context[-1:], dtype=np.int64), ids[:-1]])
        chunk_len = chunk_len or self._chunk_len
        total = total_loss(self.model, inputs, ids, state, chunk_len, self.device)
        return Score.from_total(total, num_tokens=len(ids), num_characters=len(text))

    def _stream(self, request: Request) -> Iterator[str]:
        for piece in self._run(request, [], with_log_probs=False):
            yield piece.text

    def _collect(self, request: Request) -> list[Sample]:
        samples: list[Sample] = []
        for _ in self._run(request, samples, with_log_probs=True):
            pass
        return samples

    @torch.inference_mode()
    def _run(self, request: Request, out: list[Sample], with_log_probs: bool) -> Iterator[Piece]:
        """Yield the text of every sample as it is drawn; append the finished samples to `out`."""
        prime_ids, context_ids = self._encode_prefix(request.prefix, request.unknown)
        banned = self.tokenizer.banned_ids(request.allow_unk)

        def advance(tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            logits, state = self._step(tokens, state)
            return _mask(logits, banned), state

        logits, state = self._feed(prime_ids)  # (1, vocab)
        logits = _mask(logits, banned)
        if request.beam_width > 1:
            yield from self._run_beam(request, context_ids, logits, state, advance, out)
            return
        rows = request.num_samples
        if rows > 1:
            logits = logits.expand(rows, -1)
            state = select_rows(state, torch.zeros(rows, dtype=torch.long, device=self.device))
        options = request.options
        seeds = [request.seed + row for row in range(rows)]
        uniforms = None if options.greedy else Uniforms(seeds, self.device)
        seen = self._seen(context_ids, rows) if options.repetition_penalty != 1.0 else None
        drafts = [
            Draft(self.tokenizer.stream_decoder(context_ids), request.stop) for _ in range(rows)
        ]
        unfinished = rows
        for step in range(request.length):
            tokens = choose(logits, options, _next_or_none(uniforms), seen)  # (rows,)
            drawn = _checked_ids(tokens.tolist(), logits.shape[-1])
            log_probs = _token_log_probs(logits, tokens) if with_log_probs else [None] * rows
            if seen is not None:
                seen.scatter_(1, tokens.unsqueeze(1), 1.0)
            for row, (token, log_prob) in enumerate(zip(drawn, log_probs, strict=True)):
                draft = drafts[row]
                if draft.finished:
                    continue
                piece = draft.add(token, log_prob)
                if piece:
                    yield Piece(row, piece)
                if draft.finished:
                    unfinished -= 1
            if unfinished == 0 or step + 1 == request.length:
                break
            logits, state = advance(tokens, state)
        for row, draft in enumerate(drafts):
            piece = draft.finish()
            if piece:
                yield Piece(row, piece)
        out.extend(
            draft.sample(request.prefix, seed) for draft, seed in zip(drafts, seeds, strict=True)
        )

    def _run_beam(
        self,
        request: Request,
        context_ids: list[int],
        logits: torch.Tensor,
        state: State,
        step: StepFn,
        out: list[Sample],
    ) -> Iterator[Piece]:
        beams = beam_search(step, logits, state, request.length, request.beam_width)
        for row, beam in enumerate(beams[: request.num_samples]):
            decoder = self.tokenizer.stream_decoder(context_ids)
            text = "".join(decoder.feed(beam.token_ids)) + decoder.flush()
            if text:
                yield Piece(row, text)
            out.append(Sample(request.prefix, text, beam.token_ids, beam.token_log_probs, None))

    def _encode_prefix(
        self, prefix: str, unknown: str | None = None
    ) -> tuple[list[int], list[int]]:
        """(ids to prime the network on, ids of the prefix itself).

        An empty prefix (or one whose every piece was skipped) primes on a newline, or on
        token 0 if the vocabulary has none.
        """
        context = self.tokenizer.encode_array(prefix, unknown).tolist() if prefix else []
        if context:
            return context, context
        primer = self.tokenizer.encode_array(EMPTY_PREFIX_PRIMER, "skip").tolist()
        return primer or [0], context

    def _feed(self, ids: Sequence[int], state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run `ids` through the network (one call per chunk); the last logits (1, vocab)."""
        tokens = torch.as_tensor(ids, dtype=torch.long, device=self.device).unsqueeze(0)
        for chunk in tokens.split(self._chunk_len, dim=1):
            logits, state = self.model(chunk, state)  # (1, chunk, vocab)
        return logits[:, -1], state

    def _step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        step = getattr(self.model, "step", None)  # RNNLM's one-token path (models/stepping.py)
        if step is not None:
            return step(tokens, state)  # (rows, vocab)
        logits, state = self.model(tokens.unsqueeze(1), state)  # (rows, 1, vocab)
        return logits[:, -1], state

    def _seen(self, context_ids: list[int], rows: int) -> torch.Tensor:
        """(rows, vocab) mask of the tokens the repetition penalty applies to, from the prefix."""
        seen = torch.zeros(rows, self.tokenizer.vocab_size, device=self.device)
        if context_ids:
            seen[:, torch.as_tensor(context_ids, device=self.device)] = 1.0
        return seen


def _mask(logits: torch.Tensor, banned: list[int]) -> torch.Tensor:
    """Never draw `banned` ids (<unk>, markers): their logits become -inf."""
    if banned:
        logits = logits.clone()
        logits[:, banned] = float("-inf")
    return logits


def _checked_ids(ids: list[int], vocab_size: int) -> list[int]:
    # A draw from NaN scores lands past the vocabulary: say so instead of failing later.
    if ids and not 0 <= min(ids) <= max(ids) < vocab_size:
        raise SamplingError(
            "the model produced scores that are not numbers (NaN); its weights are damaged "
            "or its training diverged"
        )
    return ids


def _next_or_none(uniforms: Uniforms | None) -> torch.Tensor | None:
    return None if uniforms is None else uniforms.next()


def _token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> list[float]:
    """The model's log-probability (temperature 1) of each row's drawn token."""
    return logits.float().log_softmax(dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()


def load(
    path: str | os.PathLike,
    device: str = "auto",
    impl: str | None = None,
    quantize: str | None = None,
) -> Sampler:
    """Load a checkpoint directory as a `Sampler`.

    `impl` ("torch" or "scratch") recomputes the recurrent layers with that implementation
    instead of the one that trained the model, e.g. "torch" to sample a scratch model fast.
    `quantize="int8"` samples and scores with 8-bit weights on the CPU: several times faster
    at batch 1, the loss within about 1% (docs/sampling.md); "auto" then means the CPU.
    """
    if quantize is not None and device == "auto":
        device = "cpu"  # the int8 kernels are the CPU's
    sampler = Sampler.from_checkpoint(path, device)
    if impl is not None:
        sampler.model = convert(sampler.model, impl)
    if quantize is not None:
        sampler.model = quantize_model(sampler.model, quantize)
    return sampler

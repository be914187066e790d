"""The Sampler: prime the network on a prefix once, then draw one token per network step.

The prefix goes through the network in one forward call (in chunks only when it is very long),
which leaves the hidden state "primed"; each new token then costs one step of the network on
one token per sample, carrying the state forward. The prefix is never run again.

Every way of drawing text goes through `Sampler._run`, which yields `Piece`s of text as soon
as they are complete: `stream` and `pieces` pass them on, `generate` and `samples` collect
them, so streamed and collected text cannot differ. The per-token loop is a `Batch` of one
`Drawing` (batch.py, drawing.py): a server steps several requests through the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from charlm.checkpoint import load_checkpoint
from charlm.device import resolve_device
from charlm.errors import ConfigError
from charlm.models import State, convert
from charlm.models.quantized import device_for
from charlm.models.quantized import quantize as quantize_model
from charlm.sampling.batch import Batch
from charlm.sampling.beam import beam_search
from charlm.sampling.draft import Sample
from charlm.sampling.drawing import Drawing, Piece, check_logprobs, mask_banned
from charlm.sampling.options import SamplingOptions
from charlm.sampling.request import Request, call_options, make_request
from charlm.sampling.scoring import Score, total_loss
from charlm.sampling.state import select_rows
from charlm.tokenizers import Tokenizer

# With an empty prefix the network is primed on a newline, i.e. asked to start a paragraph.
EMPTY_PREFIX_PRIMER = "\n"
# Priming and scoring feed at most this many logits (tokens x vocabulary), and this many
# tokens, per forward call: memory stays bounded while a prefix of ordinary length still goes
# through in one call.
LOGITS_PER_CALL = 1 << 22
TOKENS_PER_CALL = 8192


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
        *args: Any,
        options: SamplingOptions | None = None,
        **settings: Any,
    ) -> str | list[str]:
        """`prefix` followed by up to `length` new tokens; a list of `num_samples` texts if > 1.

        Takes the same options as `samples`.
        """
        request = make_request(prefix, call_options("generate", args, options, settings))
        if request.options.num_samples == 1:
            return prefix + "".join(self._stream(request))
        return [prefix + sample.text for sample in self._collect(request)]

    def stream(
        self,
        prefix: str = "",
        *args: Any,
        options: SamplingOptions | None = None,
        **settings: Any,
    ) -> Iterator[str]:
        """The new text only, piece by piece as soon as each piece is complete.

        Takes the same options as `samples`, for one sample. A piece is never half a character
        nor any part of a stop string. With the same seed the pieces join to exactly the text
        `generate` returns after the prefix.
        """
        request = make_request(prefix, call_options("stream", args, options, settings))
        if request.options.num_samples != 1:
            raise ConfigError("stream() draws one sample; samples() draws num_samples at once")
        return self._stream(request)

    def samples(
        self,
        prefix: str = "",
        *args: Any,
        options: SamplingOptions | None = None,
        **settings: Any,
    ) -> list[Sample]:
        """`num_samples` continuations of `prefix`, drawn together in one batch.

        The options are the fields of `SamplingOptions`, which says what each one does. They
        come as `options=`, as keywords (`length=300, top_k=40, seed=1`, which change
        `options` when both are given), or as `length`, `temperature` and `seed` by position
        after the prefix. Sample i uses seed + i, so it can be reproduced alone; with beam
        search (`beam_width` > 1) the samples are the best `num_samples` beams.
        """
        return self._collect(make_request(prefix, call_options("samples", args, options, settings)))

    def pieces(
        self,
        prefix: str = "",
        *args: Any,
        options: SamplingOptions | None = None,
        logprobs: int | None = 0,
        **settings: Any,
    ) -> Iterator[Piece]:
        """Every sample's new text as `Piece`s (sample number, text, probabilities), as drawn.

        Takes the same options as `samples`, and gives what `stream` gives, for every sample
        and with the model's log-probability of each piece: `logprobs` None leaves it out, 0
        reports it, k > 0 adds the k most likely tokens where the piece began.
        """
        check_logprobs(logprobs)
        request = make_request(prefix, call_options("pieces", args, options, settings))
        return self._run(request, [], logprobs)

    @torch.inference_mode()
    def score(
        self,
        text: str,
        chunk_len: int | None = None,
        *,
        prefix: str = "",
        unknown: str | None = None,
    ) -> Score:
        """Cross-entropy, perplexity and bits per character of every token of `text`.

        The first token is predicted after `prefix` (by default after a newline, as at the
        start of a paragraph); the state is carried over the whole text, fed `chunk_len`
        tokens per forward call (default: as many as keep memory bounded). Chunking does not
        change the result.

        `unknown`: what to do with pieces of `text` outside the vocabulary, as in `samples`:
        "error" names them all, "skip" scores the text without them (bits per character
        then count the characters that were scored), "unk" scores them as <unk>.
        """
        if chunk_len is not None and (isinstance(chunk_len, bool) or chunk_len < 1):
            raise ConfigError(f"chunk_len must be at least 1, got {chunk_len!r}")
        ids = self.tokenizer.encode_array(text, unknown)
        if len(ids) == 0:
            why = "every piece of it is unknown and was skipped" if text else "the text is empty"
            raise ConfigError(f"there is nothing to score: {why}")
        # Skipped pieces are neither predicted nor counted as characters.
        characters = len(self.tokenizer.decode(ids.tolist())) if unknown == "skip" else len(text)
        context, _ = self._encode_prefix(prefix)
        state = self._feed(context[:-1])[1] if len(context) > 1 else None
        inputs = np.concatenate([np.asarray(context[-1:], dtype=np.int64), ids[:-1]])
        chunk_len = chunk_len or self._chunk_len
        total = total_loss(self.model, inputs, ids, state, chunk_len, self.device)
        return Score.from_total(total, num_tokens=len(ids), num_characters=characters)

    def _stream(self, request: Request) -> Iterator[str]:
        for piece in self._run(request, [], logprobs=None):
            yield piece.text

    def _collect(self, request: Request) -> list[Sample]:
        samples: list[Sample] = []
        for _ in self._run(request, samples, logprobs=0):
            pass
        return samples

    def start(
        self, request: Request, logprobs: int | None = None
    ) -> tuple[Drawing, torch.Tensor, State]:
        """Prime the network on `request`'s prefix: its drawing, logits (rows, vocab) and state.

        The steps that follow are `Batch`'s (charlm/sampling/batch.py), alone or with others.
        """
        options = request.options
        prime_ids, context_ids = self._encode_prefix(request.prefix, options.unknown)
        drawing = Drawing(request, self.tokenizer, context_ids, self.device, logprobs)
        logits, state = self._feed(prime_ids)  # (1, vocab)
        rows = options.num_samples
        if rows > 1:
            logits = logits.expand(rows, -1)
            state = select_rows(state, torch.zeros(rows, dtype=torch.long, device=self.device))
        return drawing, logits, state

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step of the network: `tokens` (rows,) in, the next logits (rows, vocab) out."""
        step = getattr(self.model, "step", None)  # RNNLM's one-token path (models/stepping.py)
        if step is not None:
            return step(tokens, state)  # (rows, vocab)
        logits, state = self.model(tokens.unsqueeze(1), state)  # (rows, 1, vocab)
        return logits[:, -1], state

    @torch.inference_mode()
    def _run(self, request: Request, out: list[Sample], logprobs: int | None) -> Iterator[Piece]:
        """Yield the text of every sample as it is drawn; append the finished samples to `out`."""
        if request.options.beam_width > 1:
            yield from self._run_beam(request, out)
            return
        batch = Batch(self)
        drawing = batch.add(request, logprobs)
        while batch:
            for step in batch.step():
                yield from step.pieces
        out.extend(drawing.samples())

    def _run_beam(self, request: Request, out: list[Sample]) -> Iterator[Piece]:
        options = request.options
        prime_ids, context_ids = self._encode_prefix(request.prefix, options.unknown)
        banned = self.tokenizer.banned_ids(options.allow_unk)

        def advance(tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            logits, state = self.step(tokens, state)
            return mask_banned(logits, banned), state

        logits, state = self._feed(prime_ids)  # (1, vocab)
        logits = mask_banned(logits, banned)
        beams = beam_search(advance, logits, state, options.length, options.beam_width)
        for row, beam in enumerate(beams[: options.num_samples]):
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


def load(
    path: str | os.PathLike,
    device: str = "auto",
    impl: str | None = None,
    quantize: str | None = None,
) -> Sampler:
    """Load a checkpoint directory as a `Sampler`.

    `impl` ("torch" or "scratch") recomputes the recurrent layers with that implementation
    instead of the one that trained the model, e.g. "torch" to sample a scratch model fast.
    `quantize="int8"` samples and scores with 8-bit weights on the CPU: faster at batch 1,
    the loss within about 1% (docs/sampling.md); "auto" then means the CPU.
    """
    sampler = Sampler.from_checkpoint(path, device_for(device, quantize))
    if impl is not None:
        sampler.model = convert(sampler.model, impl)
    if quantize is not None:
        sampler.model = quantize_model(sampler.model, quantize)
    return sampler

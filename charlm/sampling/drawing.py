"""One request while it is drawn, a token at a time, with the network step left outside.

A `Drawing` holds what belongs to one request: its rows (one per sample), their random
numbers, the repetition-penalty masks, the drafts that decode and cut at stop strings, and the
probabilities it reports. Given the logits of its rows it draws one token per row and says
which text became complete. It never runs the network: `Batch` does, for one drawing (the
`Sampler`'s own loop) or for several at once (a server's requests for the same model), so a
request's text is made by the same code whether or not it shares the network with others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from charlm.errors import ConfigError, SamplingError
from charlm.sampling.draft import Draft, Sample
from charlm.sampling.guidance import LabelGuide
from charlm.sampling.mixing import NgramMixer
from charlm.sampling.request import Request
from charlm.sampling.strategies import Uniforms, choose
from charlm.tokenizers import Tokenizer

# The most alternatives a drawing reports per piece (OpenAI's completions allow 5).
MAX_TOP_LOGPROBS = 20

# The likeliest tokens at a position, as (text, log-probability), most likely first.
Alternatives = tuple[tuple[str, float], ...]


class Piece(NamedTuple):
    """New text of one sample, as it became complete.

    log_prob: the model's log-probability (nats, at temperature 1) of the tokens that wrote
        `text` (usually one token; more where a stop string or an incomplete character held
        text back); None unless probabilities were asked for.
    top: the most likely tokens where the piece began, as (text, log-probability), most
        likely first; empty unless alternatives were asked for.
    """

    sample: int
    text: str
    log_prob: float | None = None
    top: Alternatives = ()


class Drawing:
    """The rows of one request while they are drawn; see the module docstring.

    logprobs: None reports no probabilities; 0 the log-probability of every piece; k > 0 also
    the k most likely tokens where each piece began (OpenAI's `logprobs`).
    end_id: the end token of a model of examples, which ends a row's sample; None otherwise.
    labels: each network row's label index for a labelled model, given to every network step.
    guide: label guidance (guidance.py); each sample then has one network row per label.
    mixer: the n-gram model mixed with the network (mixing.py), drawn from as scored.
    banned: the ids never drawn (Sampler.banned_ids: the tokenizer's special ones and more).
    """

    def __init__(
        self,
        request: Request,
        tokenizer: Tokenizer,
        context_ids: list[int],
        device: torch.device,
        logprobs: int | None = None,
        *,
        end_id: int | None = None,
        labels: torch.Tensor | None = None,
        guide: LabelGuide | None = None,
        mixer: NgramMixer | None = None,
        banned: Sequence[int] = (),
    ) -> None:
        check_logprobs(logprobs)
        options = request.options
        self.request = request
        self.rows = options.num_samples
        # The rows the network steps for this drawing: a guided sample has one per label.
        self.network_rows = self.rows * (guide.num_labels if guide is not None else 1)
        self._guide = guide
        self._mixer = mixer
        self.seeds = [options.seed + row for row in range(self.rows)]
        self.prompt_tokens = len(context_ids)
        self.steps = 0  # tokens drawn per row so far
        self.cancelled = False  # set from anywhere; the next step drops the drawing
        self.labels = labels
        self._end_id = end_id
        self._tokenizer = tokenizer
        self._banned = list(banned)
        self._logprobs = logprobs
        self._uniforms = None if options.greedy else Uniforms(self.seeds, device)
        self._seen = None
        if options.repetition_penalty != 1.0:
            # A model of examples scores one id more than its tokenizer has: the end token.
            vocab_size = tokenizer.vocab_size + (end_id is not None)
            self._seen = _seen_mask(context_ids, self.rows, vocab_size, device)
        self._drafts = [
            Draft(tokenizer.stream_decoder(context_ids), options.stop) for _ in range(self.rows)
        ]
        # Per row: log-probability and alternatives of the tokens whose text is still held back.
        self._held_log_prob = [0.0] * self.rows
        self._held_top: list[Alternatives | None] = [None] * self.rows

    @property
    def done(self) -> bool:
        """No more tokens to draw: cancelled, at the length, or every row stopped."""
        if self.cancelled or self.steps >= self.request.options.length:
            return True
        return all(draft.finished for draft in self._drafts)

    def draw(self, logits: torch.Tensor) -> tuple[torch.Tensor, list[Piece]]:
        """One token per sample from the network's `logits` (network rows, vocab): the tokens
        for the network's rows, and the completed text."""
        if self._mixer is not None:
            logits = self._mixer.mixed(logits)
        if self._guide is None:
            logits = conditional = mask_banned(logits, self._banned)
        else:  # drawn from the guided scores; reported with the model's own probabilities
            conditional, guided = self._guide.logits(logits)
            conditional = mask_banned(conditional, self._banned)
            logits = mask_banned(guided, self._banned)
        tokens = choose(logits, self.request.options, _next_or_none(self._uniforms), self._seen)
        drawn = _checked_ids(tokens.tolist(), logits.shape[-1])
        log_probs, tops = self._probabilities(conditional, tokens)
        if self._seen is not None:
            self._seen.scatter_(1, tokens.unsqueeze(1), 1.0)
        self.steps += 1
        pieces = []
        for row, token in enumerate(drawn):
            draft = self._drafts[row]
            if draft.finished:
                continue
            self._hold(row, log_probs[row], tops[row])
            if token == self._end_id:  # the example is complete
                text = draft.end(token, log_probs[row])
            else:
                text = draft.add(token, log_probs[row])
            if text:
                pieces.append(self._release(row, text))
        if self._guide is not None:
            tokens = self._guide.advance(tokens)
        if self._mixer is not None:
            self._mixer.advance(tokens)
        return tokens, pieces

    def finish(self) -> list[Piece]:
        """The text every row still held back when drawing ended."""
        pieces = []
        for row, draft in enumerate(self._drafts):
            text = draft.finish()
            if text:
                pieces.append(self._release(row, text))
        return pieces

    def samples(self) -> list[Sample]:
        """The finished samples, one per row."""
        return [
            draft.sample(self.request.prefix, seed)
            for draft, seed in zip(self._drafts, self.seeds, strict=True)
        ]

    def finish_reason(self, row: int) -> str:
        """ "stop" where a stop string or the end of an example ended the row, else "length"
        (OpenAI's words)."""
        return "stop" if self._drafts[row].finished else "length"

    def num_tokens(self, row: int) -> int:
        """Tokens drawn for `row`, including any that spelled a stop string."""
        return self._drafts[row].num_tokens

    def _probabilities(
        self, logits: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[list[float | None], list[Alternatives]]:
        """Each row's log-probability of its token, and its alternatives, as asked for."""
        if self._logprobs is None:
            return [None] * self.rows, [()] * self.rows
        log_softmax = logits.float().log_softmax(dim=-1)  # (rows, vocab), at temperature 1
        return predicted(log_softmax, tokens, self._logprobs, self._token_text)

    def _token_text(self, token: int) -> str:
        return token_text(self._tokenizer, self._end_id, token)

    def _hold(self, row: int, log_prob: float | None, top: Alternatives) -> None:
        if log_prob is not None:
            self._held_log_prob[row] += log_prob
        if self._held_top[row] is None:
            self._held_top[row] = top  # the alternatives where the coming piece begins

    def _release(self, row: int, text: str) -> Piece:
        log_prob = self._held_log_prob[row] if self._logprobs is not None else None
        piece = Piece(row, text, log_prob, self._held_top[row] or ())
        self._held_log_prob[row], self._held_top[row] = 0.0, None
        return piece


def predicted(
    log_probs: torch.Tensor, targets: Sequence[int] | torch.Tensor, top: int,
    name: Callable[[int], str],
) -> tuple[list[float], list[Alternatives]]:  # fmt: skip
    """Each target's log-probability and the `top` likeliest tokens at its position (named by
    `name`, most likely first), from `log_probs` (positions, vocab), which predict `targets`
    in order."""
    wanted = torch.as_tensor(targets, device=log_probs.device).unsqueeze(1)
    chosen = log_probs.gather(1, wanted).squeeze(1).tolist()
    if top == 0:
        return chosen, [()] * len(chosen)
    best = log_probs.topk(min(top, log_probs.shape[-1]), dim=-1)
    alternatives = [
        tuple((name(i), v) for i, v in zip(ids, values, strict=True))
        for ids, values in zip(best.indices.tolist(), best.values.tolist(), strict=True)
    ]
    return chosen, alternatives


def token_text(tokenizer: Tokenizer, end_id: int | None, token: int) -> str:
    """How an alternative is named: its text; the end of an example writes none ("")."""
    return "" if token == end_id else tokenizer.decode([token])


def check_logprobs(logprobs: int | None) -> None:
    """Raise ConfigError unless `logprobs` is None or an integer in [0, MAX_TOP_LOGPROBS]."""
    if logprobs is None:
        return
    if isinstance(logprobs, bool) or not isinstance(logprobs, int):
        raise ConfigError(f"logprobs must be an integer or None, got {logprobs!r}")
    if not 0 <= logprobs <= MAX_TOP_LOGPROBS:
        raise ConfigError(f"logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {logprobs}")


def _seen_mask(
    context_ids: list[int], rows: int, vocab_size: int, device: torch.device
) -> torch.Tensor:
    """(rows, vocab) mask of the tokens the repetition penalty applies to, from the prefix."""
    seen = torch.zeros(rows, vocab_size, device=device)
    if context_ids:
        seen[:, torch.as_tensor(context_ids, device=device)] = 1.0
    return seen


def mask_banned(logits: torch.Tensor, banned: list[int]) -> torch.Tensor:
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

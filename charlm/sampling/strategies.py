"""The per-token step: from a row of logits to one token id.

The logits go through the transformations in the same order as in Hugging Face transformers:
repetition penalty, temperature, top-k, top-p, min-p. One token is then drawn per row
by inverse CDF (a cumulative sum and a binary search), which needs a single random number per
row and is several times faster than `torch.multinomial` on a batch (see benchmarks/sampling.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from charlm.sampling.options import DEFAULTS, SamplingOptions

# Random numbers are drawn this many at a time per sample, outside the per-token loop.
RANDOM_BLOCK = 256


def process_logits(
    logits: torch.Tensor, options: SamplingOptions, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """`logits` (batch, vocab) reshaped by `options`; tokens that may not be drawn get -inf.

    `seen` (batch, vocab) holds 1.0 for the tokens the repetition penalty applies to, else 0.
    The input is never modified in place. With temperature 0 only the penalty matters (argmax
    follows).
    """
    if seen is not None and options.repetition_penalty != 1.0:
        # Subtracting log(penalty) divides the probability by the penalty. Unlike CTRL's
        # divide-positive/multiply-negative logits, this does not depend on where the logits
        # happen to sit (adding a constant to all logits changes nothing), and every seen
        # token really becomes less likely.
        logits = logits.add(seen, alpha=-math.log(options.repetition_penalty))
    if options.greedy:
        return logits
    scaled = logits
    if options.temperature != 1.0:
        # Shifted so that the best logit is 0 first: a temperature near 0 then sends the others
        # to -inf (greedy in the limit) instead of overflowing every logit to +inf.
        scaled = (logits - logits.amax(dim=-1, keepdim=True)) / options.temperature
    # Top-k and min-p compare the logits as they came, which is the same comparison: divided
    # by a huge temperature they underflow into ties, and every token would be kept.
    if options.top_k is not None and options.top_k < logits.shape[-1]:
        kth_best = logits.topk(options.top_k, dim=-1).values[..., -1:]  # (batch, 1)
        scaled = scaled.masked_fill(logits < kth_best, -math.inf)
    if options.top_p < 1.0:
        scaled = _nucleus(scaled, options.top_p)
    if options.min_p > 0.0:
        scaled = scaled.masked_fill(_below_min_p(logits, options), -math.inf)
    return scaled


def _below_min_p(logits: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
    # p_i >= min_p * p_max  <=>  logit_i >= logit_max + T log(min_p): no softmax needed, and
    # the most likely token always stays. Truncation by top-k/top-p leaves p_i / p_max
    # unchanged, so the kept set does not depend on what they removed.
    threshold = logits.amax(dim=-1, keepdim=True) + options.temperature * math.log(options.min_p)
    return logits < threshold  # (batch, vocab)


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # A token is outside the nucleus when the tokens more likely than it already reach top_p;
    # the most likely token therefore always stays.
    mass_before = probs.cumsum(dim=-1) - probs
    outside_sorted = mass_before >= top_p
    outside = outside_sorted.scatter(-1, order, outside_sorted)  # back to vocabulary order
    return logits.masked_fill(outside, -math.inf)


def draw(logits: torch.Tensor, uniform: torch.Tensor, shifted: bool = False) -> torch.Tensor:
    """One id per row of `logits` (batch, vocab), drawn from softmax(logits) by inverse CDF.

    `uniform` (batch, 1) holds random numbers in (0, 1]. Because they are never 0 and never
    exceed the total mass, the search always lands on a token of non-zero probability.
    `shifted`: each row's best logit is already 0 (as `process_logits` leaves them at a
    temperature other than 1), so it is not subtracted again.
    """
    logits = logits.float()  # a no-op for float32; half precision is too coarse for a CDF
    if not shifted:
        logits = logits - logits.amax(dim=-1, keepdim=True)
    weights = logits.exp()  # unnormalised probabilities
    # A model whose logits overflow to +inf makes inf - inf = NaN in the shift: those tokens
    # share the draw rather than sending it past the end of the vocabulary.
    weights.nan_to_num_(nan=1.0)
    cdf = weights.cumsum_(dim=-1)
    target = uniform * cdf[..., -1:]  # (batch, 1), in (0, total]
    return torch.searchsorted(cdf, target).squeeze(-1)


def choose(
    logits: torch.Tensor,
    options: SamplingOptions,
    uniform: torch.Tensor | None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """The per-token step: the next id for each row of `logits` (batch, vocab).

    Argmax at temperature 0; otherwise a draw with the row's random number `uniform`
    (batch, 1) in (0, 1], which the sampler takes from per-sample generators so that a sample
    depends on its own seed only.
    """
    logits = process_logits(logits, options, seen)
    if options.greedy:
        return logits.argmax(dim=-1)
    # Shifted once is enough: a second shift would subtract the NaN that logits overflowing
    # to +inf leave there from every token, and draw from the whole vocabulary.
    return draw(logits, uniform, shifted=options.temperature != 1.0)


def sample_next(
    logits: torch.Tensor,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
    *,
    seen: torch.Tensor | None = None,
    options: SamplingOptions | None = None,
    **settings: Any,
) -> torch.Tensor:
    """One token id per row of `logits` (batch, vocab), random numbers from `generator`.

    `options` (default: `SamplingOptions()`) and any keywords of it (`top_k=40`, ...) say how;
    `temperature` None keeps the options' temperature. Keywords are checked at every call:
    in a loop, build the options once and pass `options=` alone.
    """
    if temperature is not None:
        settings["temperature"] = temperature
    options = (options or DEFAULTS).replace(**settings)
    shape = (logits.shape[0], 1)
    uniform = 1.0 - torch.rand(shape, generator=generator, device=logits.device)  # (0, 1]
    return choose(logits, options, uniform, seen)


class Uniforms:
    """Random numbers in (0, 1], one per sample per token, each from the sample's own seed.

    Drawn in blocks so that the per-token cost is one slice rather than one call per sample,
    and so that a sample's text depends on its own seed only, not on the batch around it.
    """

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self._generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self._device = device
        self._block = torch.empty(0)
        self._used = RANDOM_BLOCK

    def next(self) -> torch.Tensor:
        if self._used == RANDOM_BLOCK:
            draws = [
                torch.rand(RANDOM_BLOCK, generator=g, device=self._device) for g in self._generators
            ]
            self._block = 1.0 - torch.stack(draws)  # (samples, block); [0, 1) becomes (0, 1]
            self._used = 0
        self._used += 1
        return self._block[:, self._used - 1 : self._used]  # (samples, 1)

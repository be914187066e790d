"""The Sampler: prime the network on a prefix once, then draw one token per network step.

The prefix goes through the network in one forward call (in chunks only when it is very long),
which leaves the hidden state "primed"; each new token then costs one step of the network on
one token per sample, carrying the state forward. The prefix is never run again.

Every way of drawing text goes through `Sampler._run`, which yields `Piece`s of text as soon
as they are complete: `stream` and `pieces` pass them on, `generate` and `samples` collect
them, so streamed and collected text cannot differ. The per-token loop is a `Batch` of one
`Drawing` (batch.py, drawing.py): a server steps several requests through the same code.

A model of examples (names, sentences) starts each sample at its start token and ends it at
its end token: every sample is one example. A labelled one draws examples of a given `label`
(a sampling option), scores a text given its label, and classifies texts by Bayes' rule.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from charlm.checkpoint import Checkpoint, load_checkpoint
from charlm.data import DataOptions, LabelSet
from charlm.device import resolve_device
from charlm.errors import CharlmError, ConfigError, UnknownTokenError
from charlm.models import State, classifier_log_posterior, convert, is_classifier
from charlm.models.losses import token_log_probs
from charlm.models.ngram import NgramModel, mix
from charlm.models.posteriors import joined_with_lm, label_log_likelihoods, posterior
from charlm.models.quantized import device_for
from charlm.models.quantized import quantize as quantize_model
from charlm.sampling.batch import Batch
from charlm.sampling.beam import beam_search
from charlm.sampling.classify import Classification, encode_texts, ranked
from charlm.sampling.draft import Sample
from charlm.sampling.drawing import (
    Alternatives,
    Drawing,
    Piece,
    check_logprobs,
    mask_banned,
    predicted,
    token_text,
)
from charlm.sampling.guidance import LabelGuide
from charlm.sampling.mixing import NgramMixer, first_history, mixed_log_probs, read_on
from charlm.sampling.options import SamplingOptions
from charlm.sampling.prompt import prompt_pieces
from charlm.sampling.request import Request, call_options, check_text, make_request
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
T = TypeVar("T")


class Sampler:
    """Generate, stream, score and classify text with a trained model.

    `label_set` names the labels of a labelled model (in the order of its label indices) with
    their training counts, the learned prior of `classify`. `generative`: the sampler of the
    labelled LM a classifier keeps and classifies with (`--keep-lm`); None for the
    classifier alone.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        device: torch.device | str = "cpu",
        label_set: LabelSet | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.label_set = label_set
        config = getattr(model, "config", None)
        # A model of examples has one id more than its tokenizer: the end token.
        self.end_id: int | None = getattr(config, "end_id", None)
        num_labels = getattr(config, "num_labels", 0)
        if num_labels != (len(label_set) if label_set is not None else 0):
            raise ConfigError(
                f"the model has {num_labels} labels; give a label_set that names each of them"
            )
        self._chunk_len = max(1, min(TOKENS_PER_CALL, LOGITS_PER_CALL // tokenizer.vocab_size))
        # The prior a classifier's scores hold: "uniform" when its training loss weighed every
        # label alike (--class-weights balanced), "learned" (the training shares) otherwise.
        self.classifier_prior = "learned"
        # Ids never drawn: for a model of one-line examples, those that write a line break
        # (its training text joined the examples with them; no example holds one).
        self.never_drawn: list[int] = []
        self.generative: Sampler | None = None
        # An n-gram model mixed with the network (`charlm train --ngram`) when scoring and
        # drawing, and the network's weight in the mixture.
        self.ngram: NgramModel | None = None
        self.ngram_weight = 1.0

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto") -> Sampler:
        resolved = resolve_device(device)
        return cls.from_loaded(load_checkpoint(path, resolved), resolved)

    @classmethod
    def from_loaded(cls, checkpoint: Checkpoint, device: torch.device | str = "cpu") -> Sampler:
        """A sampler of a checkpoint already loaded: its model, tokenizer and labels."""
        saved = checkpoint.config.get("labels")
        label_set = LabelSet.from_dict(saved) if saved else None
        sampler = cls(checkpoint.model, checkpoint.tokenizer, device, label_set)
        sampler.classifier_prior = checkpoint.config.get("classifier", {}).get("prior", "learned")
        if checkpoint.generative is not None:
            sampler.generative = cls.from_loaded(checkpoint.generative, device)
        if checkpoint.ngram is not None:
            sampler.ngram, sampler.ngram_weight = checkpoint.ngram, checkpoint.ngram_weight
        if sampler.end_id is not None and _example_unit(checkpoint.config) == "lines":
            sampler.never_drawn = line_break_ids(sampler.tokenizer)
        return sampler

    @property
    def is_classifier(self) -> bool:
        """Whether the model is a discriminative classifier (`--task classify`): it
        classifies text but gives no probabilities of text, so it cannot generate or score."""
        return is_classifier(self.model)

    def _check_generative(self) -> None:
        if self.is_classifier:
            kept = (
                "; its labelled language model can: the checkpoint's `generative` folder"
                if self.generative is not None
                else "; use charlm classify / evaluate"
            )
            raise ConfigError(
                "this model is a classifier (trained with --task classify): it labels text "
                f"but cannot generate or score it{kept}"
            )

    @property
    def labels(self) -> list[str]:
        """The labels this model generates and classifies by; [] when it has none."""
        return list(self.label_set.names) if self.label_set is not None else []

    @property
    def vocab_size(self) -> int:
        """Ids the model scores: the tokenizer's, and the end token of a model of examples."""
        return self.tokenizer.vocab_size + (self.end_id is not None)

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
        label: str | None = None,
        unknown: str | None = None,
    ) -> Score:
        """Cross-entropy, perplexity and bits per character of every token of `text`.

        The first token is predicted after `prefix` (by default after a newline, as at the
        start of a paragraph); the state is carried over the whole text, fed `chunk_len`
        tokens per forward call (default: as many as keep memory bounded). Chunking does not
        change the result.

        `unknown`: what to do with pieces of `text` (and `prefix`) outside the vocabulary, as
        in `samples`:
        "error" names them all, "skip" scores the text without them (bits per character
        then count the characters that were scored), "unk" scores them as <unk>.

        A model trained with `--ngram` scores each token with the network and its n-gram model
        mixed (`ngram` at `ngram_weight`), the n-gram reading the same prefix.

        With a model of examples the text is one example, read from its start token, and its
        end token is predicted too (it counts as a token and as a character); a labelled
        model scores it given `label`, p(text | label).
        """
        self._check_generative()
        check_text(text, "text")
        check_text(prefix, "prefix")
        if chunk_len is not None and not _whole_number(chunk_len, low=1):
            raise ConfigError(f"chunk_len must be an integer >= 1, got {chunk_len!r}")
        ids = self.tokenizer.encode_array(text, unknown)
        labels = self._label_tensor(label)
        # Skipped pieces are neither predicted nor counted as characters.
        characters = len(self.tokenizer.decode(ids.tolist())) if unknown == "skip" else len(text)
        chunk_len = chunk_len or self._chunk_len
        if self.end_id is not None:
            if prefix:
                raise ConfigError("a model of examples scores each text from its own start")
            inputs = np.concatenate([[self.end_id], ids]).astype(np.int64)
            targets = np.concatenate([ids, [self.end_id]]).astype(np.int64)
            total = total_loss(self.model, inputs, targets, None, chunk_len, self.device, labels)
            return Score.from_total(total, len(targets), characters + 1)
        if len(ids) == 0:
            why = "every piece of it is unknown and was skipped" if text else "the text is empty"
            raise ConfigError(f"there is nothing to score: {why}")
        try:
            context, _ = self._encode_prefix(prefix, unknown)
        except UnknownTokenError as exc:
            raise exc.naming("the prefix") from None
        state = self._feed(context[:-1])[1] if len(context) > 1 else None
        inputs = np.concatenate([np.asarray(context[-1:], dtype=np.int64), ids[:-1]])
        if self.ngram is None:
            total = total_loss(self.model, inputs, ids, state, chunk_len, self.device)
        else:  # the network and the n-gram, each token's probabilities mixed
            network = token_log_probs(self.model, inputs, ids, state, chunk_len, self.device)
            ngram = self.ngram.log_probs(ids, context=np.asarray(context))
            total = -float(mix(network.cpu().numpy(), ngram, self.ngram_weight).sum())
        return Score.from_total(total, num_tokens=len(ids), num_characters=characters)

    @torch.inference_mode()
    def log_likelihoods(
        self, texts: Sequence[str], *, unknown: str | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """log p(text | label) in nats for every text (rows) and label (columns, in the order
        of `labels`), each text read as one example, `batch_size` texts per forward pass; a
        model of examples without labels gives log p(text), one column."""
        self._check_generative()
        if self.end_id is None:
            raise ConfigError(
                "this model reads continuous text, not examples: use score(), or train with "
                "--examples / --labels"
            )
        encoded = encode_texts(self.tokenizer, texts, unknown)
        return label_log_likelihoods(
            self.model, encoded, len(self.labels), self.end_id, self.device, batch_size
        )

    def classify(
        self,
        texts: Sequence[str],
        top_k: int | None = 3,
        prior: str = "learned",
        *,
        unknown: str | None = None,
        batch_size: int = 64,
    ) -> list[Classification]:
        """The `top_k` most probable labels of each text (all when None), best first.

        p(label | text) ∝ p(text | label) · p(label), with the prior p(label) "learned" (the
        share of each label among the training examples) or "uniform". Each batch of
        `batch_size` texts is scored under every label in one forward pass.
        """
        if self.end_id is None:
            raise ConfigError(
                "this model reads continuous text, not labelled examples; to tell which book "
                "a passage comes from, compare models of the books (classify --models)"
            )
        if not isinstance(texts, str):  # a generator is read once, and is needed twice
            texts = list(texts)
        log_post = self.label_log_posterior(
            texts, prior=prior, unknown=unknown, batch_size=batch_size
        )
        return ranked(texts, log_post, self.label_set.names, top_k)

    @torch.inference_mode()
    def label_log_posterior(
        self,
        texts: Sequence[str],
        *,
        prior: str = "learned",
        unknown: str | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """log p(label | text), (texts, labels), under `prior` ("learned": the training shares
        of the labels, or "uniform"): by Bayes' rule from a labelled language model; from a
        classifier, its scores moved from the prior they hold (`classifier_prior`) to `prior`,
        p(label | text) ∝ q(label | text) · p(label) / q(label), joined with its labelled
        LM's when it keeps one (`generative`)."""
        if self.label_set is None:
            raise ConfigError("this model has no labels to classify by: train it with --labels")
        wanted = self.label_set.log_prior(prior)
        if self.is_classifier:
            encoded = encode_texts(self.tokenizer, texts, unknown)
            scores = classifier_log_posterior(
                self.model, encoded, self.end_id, self.device, batch_size
            )
            held = self.label_set.log_prior(self.classifier_prior)
            if self.generative is None:
                return posterior(scores, wanted - held)
            # Its LM has the same labels and counts (checked when loaded): the same prior.
            lm = self.generative.log_likelihoods(texts, unknown=unknown, batch_size=batch_size)
            return joined_with_lm(scores, lm, wanted, held)
        log_likelihoods = self.log_likelihoods(texts, unknown=unknown, batch_size=batch_size)
        return posterior(log_likelihoods, wanted)

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
        return run_parts(self.start_in_parts(request, logprobs))

    @torch.inference_mode()
    def start_in_parts(
        self, request: Request, logprobs: int | None = None
    ) -> Generator[None, None, tuple[Drawing, torch.Tensor, State]]:
        """`start` one forward call at a time: a generator that pauses (yields None) between
        two calls of a long prefix and returns what `start` returns, so that a server can
        step other requests in between. The calls are those of `start`: the same result."""
        self._check_generative()
        options = request.options
        labels = self._label_tensor(options.label)
        prime_ids, context_ids = self._encode_prefix(request.prefix, options.unknown)
        rows = options.num_samples
        if options.guidance > 0:
            row_labels, guide, logits, state = self._prime_guided(labels, prime_ids, options)
        else:
            row_labels = None if labels is None else labels.expand(rows)
            guide = None
            logits, state = yield from self._feed_in_parts(prime_ids, labels=labels)  # (1, vocab)
        drawing = Drawing(
            request,
            self.tokenizer,
            context_ids,
            self.device,
            logprobs,
            end_id=self.end_id,
            labels=row_labels,
            guide=guide,
            mixer=self._mixer(prime_ids, rows),
            banned=self.banned_ids(options),
        )
        return drawing, *_repeat_rows(logits, state, rows)

    def _mixer(self, prime_ids: list[int], rows: int) -> NgramMixer | None:
        if self.ngram is None:
            return None
        return NgramMixer(self.ngram, self.ngram_weight, prime_ids, rows)

    def _prime_guided(
        self, label: torch.Tensor | None, prime_ids: list[int], options: SamplingOptions
    ) -> tuple[torch.Tensor, LabelGuide, torch.Tensor, State]:
        """The prefix primed under every label, for label guidance (guidance.py): the label of
        each network row, the guide, and the logits (labels, vocab) and state to repeat."""
        self._check_guidable()
        everyone = torch.arange(len(self.labels), device=self.device)
        tokens = torch.as_tensor(prime_ids, device=self.device).expand(len(everyone), -1)
        # The prefix of an example is short: one call for all its tokens under every label.
        logits, state = self._call(tokens, None, everyone)  # (labels, tokens, vocab)
        log_probs = logits[:, :-1].float().log_softmax(dim=-1)
        prefix = log_probs.gather(2, tokens[:, 1:].unsqueeze(-1)).sum(dim=(1, 2))
        prior = torch.as_tensor(self.label_set.log_prior("learned"), device=self.device)
        rows = options.num_samples
        guide = LabelGuide(int(label), prior.float() + prefix, rows, options.guidance)
        return everyone.repeat(rows), guide, logits[:, -1], state

    def prompt_pieces(self, request: Request, logprobs: int = 0) -> list[Piece]:
        """The prompt of `request` as the model reads it before drawing (prompt.py): pieces of
        text, each with the log-probability (nats, temperature 1) of its tokens after those
        before it and the `logprobs` likeliest tokens where it begins.

        The request's label is given and the n-gram model mixed in where there is one, as in
        `score`, and no token is masked (a prompt may hold <unk>, which a sample never
        draws): the log-probabilities of an example add up to its score less its end token,
        those of continuous text to `score(prompt[1:], prefix=prompt[0])`'s total."""
        return run_parts(self.prompt_pieces_in_parts(request, logprobs))

    @torch.inference_mode()
    def prompt_pieces_in_parts(
        self, request: Request, logprobs: int = 0
    ) -> Generator[None, None, list[Piece]]:
        """`prompt_pieces` one forward call at a time, as `start_in_parts` primes."""
        self._check_generative()
        labels = self._label_tensor(request.options.label)
        prime_ids, context_ids = self._encode_prefix(request.prefix, request.options.unknown)
        if not context_ids:  # an empty prompt: drawing starts from a primer, not from it
            return []
        targets = prime_ids[1:]
        chosen: list[float] = []
        alternatives: list[Alternatives] = []
        for log_probs in self._log_probs_after(prime_ids, labels):
            done = len(chosen)
            wanted = targets[done : done + len(log_probs)]
            more = predicted(log_probs, wanted, logprobs, self._token_text)
            chosen.extend(more[0])
            alternatives.extend(more[1])
            if len(chosen) < len(targets):
                yield
        return prompt_pieces(self.tokenizer, context_ids, chosen, alternatives)

    def _log_probs_after(
        self, ids: list[int], labels: torch.Tensor | None
    ) -> Iterator[torch.Tensor]:
        """Log-probabilities (positions, vocab) of ids[1:], each after the ids before it, a
        chunk at a time, with the n-gram model mixed in where there is one."""
        tokens = torch.as_tensor(ids[:-1], dtype=torch.long, device=self.device).unsqueeze(0)
        state = None
        if self.ngram is not None:
            histories = self.ngram.histories(ids[1:], context=ids[:1])
        for start in range(0, len(ids) - 1, self._chunk_len):
            logits, state = self._call(tokens[:, start : start + self._chunk_len], state, labels)
            logits = logits[0]
            if self.ngram is None:
                yield logits.float().log_softmax(-1)
                continue
            part = histories[start : start + len(logits)]
            yield mixed_log_probs(self.ngram, self.ngram_weight, logits, part)

    def _token_text(self, token: int) -> str:
        return token_text(self.tokenizer, self.end_id, token)  # as a drawing names it

    def network_rows(self, options: SamplingOptions) -> int:
        """The rows of the network a drawing with `options` steps: one per sample, or with
        guidance one per sample and label."""
        guided = options.guidance > 0 and self.labels
        return options.num_samples * (len(self.labels) if guided else 1)

    def step(
        self, tokens: torch.Tensor, state: State, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """One step of the network: `tokens` (rows,) in, the next logits (rows, vocab) out;
        a labelled model also takes each row's label index, `labels` (rows,)."""
        step = getattr(self.model, "step", None)  # RNNLM's one-token path (models/stepping.py)
        if step is not None:
            return step(tokens, state) if labels is None else step(tokens, state, labels=labels)
        logits, state = self._call(tokens.unsqueeze(1), state, labels)  # (rows, 1, vocab)
        return logits[:, -1], state

    def _run(self, request: Request, out: list[Sample], logprobs: int | None) -> Iterator[Piece]:
        """Yield the text of every sample as it is drawn; append the finished samples to `out`.

        Not itself in inference mode: a generator under the decorator enters and leaves it at
        every token it yields; `Batch` enters it once a step instead."""
        self._check_generative()
        if request.options.beam_width > 1:
            yield from self._run_beam(request, out, logprobs)
            return
        batch = Batch(self)
        drawing = batch.add(request, logprobs)
        while batch:
            for step in batch.step():
                yield from step.pieces
        out.extend(drawing.samples())

    @torch.inference_mode()
    def _run_beam(
        self, request: Request, out: list[Sample], logprobs: int | None = None
    ) -> Iterator[Piece]:
        """Beam search: each beam's whole text as one piece, found only at the end (with its
        log-probability when `logprobs` asks; no alternatives, which a beam does not have)."""
        options = request.options
        self.check_beam(options.beam_width)
        prime_ids, context_ids = self._encode_prefix(request.prefix, options.unknown)
        banned = self.banned_ids(options)

        def advance(tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            logits, state = self.step(tokens, state)
            return mask_banned(logits, banned), state

        logits, state = self._feed(prime_ids)  # (1, vocab)
        if self.ngram is not None:  # each beam's n-gram history travels in its state
            advance = self._mixed_advance(banned)
            history = first_history(self.ngram, prime_ids, 1)
            logits = mixed_log_probs(self.ngram, self.ngram_weight, logits, history)
            state = (state, torch.as_tensor(history, device=self.device)[None])
        logits = mask_banned(logits, banned)
        beams = beam_search(advance, logits, state, options.length, options.beam_width)
        for row, beam in enumerate(beams[: options.num_samples]):
            decoder = self.tokenizer.stream_decoder(context_ids)
            text = "".join(decoder.feed(beam.token_ids)) + decoder.flush()
            if text:
                log_prob = None if logprobs is None else beam.log_probability
                yield Piece(row, text, log_prob)
            out.append(Sample(request.prefix, text, beam.token_ids, beam.token_log_probs, None))

    def _mixed_advance(self, banned: list[int]) -> Callable:
        """Beam search's step with the n-gram mixed in: its state is (the network's, the
        n-gram histories as a (1, beams, order − 1) tensor), so beams reorder both alike."""

        def advance(tokens: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
            network_state, history = state
            logits, network_state = self.step(tokens, network_state)
            history = read_on(history[0].cpu().numpy(), tokens)
            log_probs = mixed_log_probs(self.ngram, self.ngram_weight, logits, history)
            history = torch.as_tensor(history, device=self.device)[None]
            return mask_banned(log_probs, banned), (network_state, history)

        return advance

    def _encode_prefix(
        self, prefix: str, unknown: str | None = None
    ) -> tuple[list[int], list[int]]:
        """(ids to prime the network on, ids of the prefix itself).

        An empty prefix (or one whose every piece was skipped) primes on a newline, or on
        token 0 if the vocabulary has none. An example starts with the start token.
        """
        if self.never_drawn and ("\n" in prefix or "\r" in prefix):
            raise ConfigError(
                "this model writes one-line examples: a prefix cannot hold a line break"
            )
        context = self.tokenizer.encode_array(prefix, unknown).tolist() if prefix else []
        if self.end_id is not None:
            return [self.end_id, *context], context
        if context:
            return context, context
        primer = self.tokenizer.encode_array(EMPTY_PREFIX_PRIMER, "skip").tolist()
        return primer or [0], context

    def _feed(
        self, ids: Sequence[int], state: State | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run `ids` through the network (one call per chunk); the last logits (1, vocab)."""
        return run_parts(self._feed_in_parts(ids, state, labels))

    def _feed_in_parts(
        self, ids: Sequence[int], state: State | None = None, labels: torch.Tensor | None = None
    ) -> Generator[None, None, tuple[torch.Tensor, State]]:
        """`_feed`, pausing between two calls."""
        tokens = torch.as_tensor(ids, dtype=torch.long, device=self.device).unsqueeze(0)
        for number, chunk in enumerate(tokens.split(self._chunk_len, dim=1)):
            if number:
                yield
            logits, state = self._call(chunk, state, labels)  # (1, chunk, vocab)
        return logits[:, -1], state

    def _call(self, tokens: torch.Tensor, state: State | None, labels: torch.Tensor | None):
        if labels is None:  # models without labels need not take the argument
            return self.model(tokens, state)
        return self.model(tokens, state, labels=labels)

    def banned_ids(self, options: SamplingOptions) -> list[int]:
        """The ids a sample never draws: the tokenizer's special ones (<unk> unless
        `allow_unk`) and `never_drawn`."""
        return self.tokenizer.banned_ids(options.allow_unk) + self.never_drawn

    def check_beam(self, beam_width: int) -> None:
        """Raise a one-line ConfigError if this model cannot search beams of `beam_width`."""
        if beam_width > 1 and self.end_id is not None:
            raise ConfigError(
                "beam search draws exactly --length tokens, but a model of examples ends "
                "each at its end token: sample instead (--beam-width 1)"
            )

    def check_label(self, label: str | None, guidance: float = 0.0) -> None:
        """Raise a one-line ConfigError unless `label` is what this model needs: one of its
        labels for a labelled model, None for any other; a classifier needs none, it cannot
        generate. `guidance` above 0 needs a labelled model."""
        self._check_generative()
        self._label_tensor(label)
        if guidance > 0:
            self._check_guidable()

    def _check_guidable(self) -> None:
        if self.label_set is None:
            raise ConfigError(
                "guidance steers each sample toward its label: it needs a model trained on "
                "labelled examples (--labels)"
            )

    def _label_tensor(self, label: str | None) -> torch.Tensor | None:
        """The label's index as a (1,) tensor (for every row), checked against the labels."""
        if self.label_set is None:
            if label is not None:
                raise ConfigError(
                    f"this model was trained without labels; drop the label {label!r}"
                )
            return None
        if label is None:
            raise ConfigError(
                f"this model draws and scores text of a given label; choose one of: "
                f"{', '.join(self.label_set.names)}"
            )
        return torch.tensor([self.label_set.index(label)], device=self.device)


def run_parts(parts: Generator[None, None, T]) -> T:
    """Run a generator of parts (`Sampler.start_in_parts`, ...) to its end: what it returns."""
    while True:
        try:
            next(parts)
        except StopIteration as end:
            return end.value


def _repeat_rows(logits: torch.Tensor, state: State, times: int) -> tuple[torch.Tensor, State]:
    """The rows of `logits` (rows, vocab) and `state`, `times` times over, in that order."""
    if times == 1:
        return logits, state
    rows = torch.arange(logits.shape[0], device=logits.device).repeat(times)
    return logits.index_select(0, rows), select_rows(state, rows)


def load(
    path: str | os.PathLike,
    device: str = "auto",
    impl: str | None = None,
    quantize: str | None = None,
    ngram: bool = True,
) -> Sampler:
    """Load a checkpoint directory as a `Sampler`.

    `impl` ("torch" or "scratch") recomputes the recurrent layers with that implementation
    instead of the one that trained the model, e.g. "torch" to sample a scratch model fast.
    `quantize="int8"` samples and scores with 8-bit weights on the CPU: faster at batch 1,
    the loss within about 1% (docs/sampling.md); "auto" then means the CPU. `ngram=False`
    scores with the network alone where the checkpoint also holds an n-gram model.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"path must name a checkpoint directory, got {type(path).__name__}")
    sampler = Sampler.from_checkpoint(path, device_for(device, quantize))
    if not ngram:
        sampler.ngram, sampler.ngram_weight = None, 1.0
    if impl is not None:
        for each in _networks(sampler):
            each.model = convert(each.model, impl)
    if quantize is not None:
        quantize_networks(sampler, quantize)
    return sampler


def quantize_networks(sampler: Sampler, scheme: str) -> None:
    """Quantize `sampler`'s network to `scheme` ("int8"), as `load(quantize=)` does."""
    for each in _networks(sampler):
        each.model = quantize_model(each.model, scheme)


def _networks(sampler: Sampler) -> list[Sampler]:
    # A classifier's labelled LM runs as the classifier does.
    return [each for each in (sampler, sampler.generative) if each is not None]


def line_break_ids(tokenizer: Tokenizer) -> list[int]:
    """The ids whose text holds a line break."""
    return [i for i in range(tokenizer.vocab_size) if "\n" in tokenizer.decode([i])]


def _example_unit(config: dict[str, Any]) -> str | None:
    """How the model's training data held examples ("lines", "files"), as far as its config
    says; None for continuous text or a config that does not say."""
    options = (config.get("data") or {}).get("options")
    try:
        return DataOptions.from_dict(options).example_unit if isinstance(options, dict) else None
    except (CharlmError, TypeError, ValueError):
        return None


def _whole_number(value: object, low: int) -> bool:
    """Whether `value` is an integer (NumPy's too, not a bool) of at least `low`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low

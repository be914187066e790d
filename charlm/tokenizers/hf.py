"""Subword tokenizers from Hugging Face `tokenizers`: bpe, wordpiece, unigram, and hf.

Each wraps one `tokenizers.Tokenizer` pipeline (normaliser, pre-tokenizer, model, decoder),
which serialises to a JSON object that is stored inside the checkpoint as it is, so a
checkpoint is self-contained and readable. Long texts are encoded through the library's
parallel batch API in slices that end at line breaks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFPipeline
from tokenizers import decoders, models, pre_tokenizers, trainers

from charlm.errors import TokenizerError
from charlm.limits import MAX_TOKENIZER_FILE_BYTES, MAX_VOCAB_SIZE, too_large

from .base import NO_CEILING, Option, StreamDecoder, Tokenizer, unknown_error
from .hf_limits import PipelineLimits, panics_as_errors

UNK = "<unk>"
# Text is cut after the first line break past this many characters, and the slices are
# encoded in parallel. The cut depends only on the text, so encoding is deterministic.
SLICE_CHARS = 1 << 14
SLICES_PER_BATCH = 256
BYTE_ALPHABET = 256  # a byte-level model's first tokens: every byte value


def text_slices(text: str, size: int = SLICE_CHARS) -> list[str]:
    """`text` in consecutive slices of about `size` characters, each ending at a line break."""
    slices, start = [], 0
    while start < len(text):
        cut = text.find("\n", start + size)
        end = len(text) if cut < 0 else cut + 1
        slices.append(text[start:end])
        start = end
    return slices


class HFTokenizer(Tokenizer):
    """An existing tokenizer.json (`path` option), e.g. from a model on the Hugging Face Hub."""

    name = "hf"
    description = "load an existing Hugging Face tokenizer.json (option path=FILE)"
    options = {
        "path": Option(str, None, "the tokenizer.json file to load", file=True, required=True)
    }

    def __init__(self, pipeline: HFPipeline) -> None:
        self.pipeline = pipeline
        vocab = pipeline.get_vocab(with_added_tokens=True)
        # Ids need not be contiguous; the model needs a row for the largest one.
        self._vocab_size = max(vocab.values()) + 1 if vocab else 0
        if not 0 < self._vocab_size <= MAX_VOCAB_SIZE:
            # A file may give one token the id 2**31: refused here, before any model is built
            # and before the library writes the pipeline out (to_str), which walks every id
            # up to the largest (50 s for 2**31).
            raise TokenizerError(
                "the tokenizer has no tokens"
                if not vocab
                else too_large("the tokenizer", self._vocab_size, MAX_VOCAB_SIZE, "token ids")
            )
        spec = json.loads(pipeline.to_str())
        # A pipeline from a file or a checkpoint runs under limits (see hf_limits.py); ids
        # are never padded or truncated.
        self._limits = PipelineLimits(self.name, spec)
        pipeline.no_padding()
        pipeline.no_truncation()
        self._unk_id = _unk_id(pipeline, spec["model"])
        added = pipeline.get_added_tokens_decoder()
        specials = {i for i, token in added.items() if token.special}
        if self._unk_id is not None:
            specials.add(self._unk_id)
        self._special_ids = tuple(sorted(specials))

    @classmethod
    def train(cls, text: str, **options: Any) -> HFTokenizer:
        path = Path(cls.check_options(options)["path"])
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise TokenizerError(f"{path}: not a usable tokenizer.json ({exc.strerror})") from exc
        if not path.is_file():
            raise TokenizerError(f"{path}: not a usable tokenizer.json (not a file)")
        if size > MAX_TOKENIZER_FILE_BYTES:
            raise TokenizerError(too_large(str(path), size, MAX_TOKENIZER_FILE_BYTES))
        try:
            with panics_as_errors(f"{path}: not a usable tokenizer.json"):
                return cls(HFPipeline.from_file(str(path)))
        except TokenizerError:
            raise
        except Exception as exc:  # the library raises plain Exceptions for bad files
            raise TokenizerError(
                f"{path}: not a usable tokenizer.json ({_first_line(exc)})"
            ) from exc

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def unk_id(self) -> int | None:
        return self._unk_id

    @property
    def special_ids(self) -> tuple[int, ...]:
        return self._special_ids

    def encode(self, text: str) -> np.ndarray:
        return self.encode_with_policy(text, "unk")

    def encode_with_policy(self, text: str, unknown: str) -> np.ndarray:
        slices = text_slices(text)
        parts = [np.zeros(0, dtype=np.int64)]
        unseen: list[str] = []  # every unknown piece of the whole text, for the error
        # A few MB per batch call: parallel enough, and the library's per-token objects
        # (offsets, strings) for a 100 MB book never exist all at once.
        for first in range(0, len(slices), SLICES_PER_BATCH):
            group = slices[first : first + SLICES_PER_BATCH]
            try:
                self._limits.check_growth(group)
                encodings = self._limits.encode(
                    lambda group=group: self._encode_batch(group, offsets=unknown == "error"),
                    sum(len(piece) for piece in group),
                )
            except TokenizerError:
                raise
            except Exception as exc:  # the library raises plain Exceptions
                _refuse_surrogates(group, exc)
                raise TokenizerError(
                    f"the {self.name} tokenizer failed: {_first_line(exc)}"
                ) from exc
            ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])
            if self._unk_id is not None and unknown != "unk":
                unknown_at = ids == self._unk_id
                if unknown == "error" and unknown_at.any():
                    unseen += _unknown_pieces(group, encodings, self._unk_id)
                ids = ids[~unknown_at]
            parts.append(ids)
        if unseen:
            raise unknown_error("piece", unseen)
        return np.concatenate(parts)

    def _encode_batch(self, texts: list[str], offsets: bool) -> list:
        # Without character offsets (needed only to name unknown pieces) encoding is faster.
        fast = getattr(self.pipeline, "encode_batch_fast", None)
        if offsets or fast is None:
            return self.pipeline.encode_batch(texts, add_special_tokens=False)
        return fast(texts, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        with panics_as_errors(f"the {self.name} tokenizer failed"):
            return self.pipeline.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_text(self, token: int) -> str:
        # The piece as the vocabulary spells it: byte-level pieces of one character all
        # decode to the replacement character on their own.
        return self.pipeline.id_to_token(token) or ""

    def get_state(self) -> dict[str, Any]:
        return {"tokenizer": json.loads(self.pipeline.to_str())}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HFTokenizer:
        pipeline = state.get("tokenizer") if isinstance(state, dict) else None
        if not isinstance(pipeline, dict):
            raise TokenizerError(f"{cls.name} tokenizer state needs an object under 'tokenizer'")
        try:
            with panics_as_errors(f"the saved {cls.name} tokenizer is corrupt"):
                return cls(HFPipeline.from_str(json.dumps(pipeline)))
        except TokenizerError:
            raise
        except Exception as exc:  # the library raises plain Exceptions for bad JSON
            raise TokenizerError(
                f"the saved {cls.name} tokenizer is corrupt ({_first_line(exc)})"
            ) from exc

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        if _DecodeStream is None:  # tokenizers older than 0.21
            return StreamDecoder(self, context)
        return _HFStreamDecoder(self.pipeline, context)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_surrogates(texts: list[str], exc: Exception) -> None:
    """Explain the library's failure on text holding lone surrogates, which Rust cannot take."""
    for text in texts:
        found = _LONE_SURROGATE.search(text)
        if found:
            raise TokenizerError(
                f"the text holds a lone surrogate ({found.group()!r}), which is not a Unicode "
                "character; the Hugging Face tokenizers cannot take it (char and byte can)"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unk_id(pipeline: HFPipeline, model: dict[str, Any]) -> int | None:
    """The unknown token's id: BPE and WordPiece name it, Unigram stores its id."""
    if isinstance(model.get("unk_id"), int):
        return model["unk_id"]
    unk = model.get("unk_token")
    return pipeline.token_to_id(unk) if unk else None


def _unknown_pieces(slices: list[str], encodings: list, unk_id: int) -> list[str]:
    """The text behind each unknown id, found through the encodings' character offsets."""
    return [
        source[start:end]
        for source, encoding in zip(slices, encodings, strict=True)
        for token_id, (start, end) in zip(encoding.ids, encoding.offsets, strict=True)
        if token_id == unk_id
    ]


try:
    from tokenizers.decoders import DecodeStream as _DecodeStream
except ImportError:  # pragma: no cover - depends on the installed library
    _DecodeStream = None


class _HFStreamDecoder(StreamDecoder):
    """The library's own incremental decoder, which never splits a character or a word."""

    def __init__(self, pipeline: HFPipeline, context: Sequence[int] = ()) -> None:
        self._pipeline = pipeline
        self._stream = _DecodeStream(skip_special_tokens=False)
        for token_id in context:  # prime it on the prefix; that text is already shown
            self.step(token_id)

    def step(self, token_id: int) -> str:
        with panics_as_errors("the tokenizer failed"):
            return self._stream.step(self._pipeline, int(token_id)) or ""

    def flush(self) -> str:
        return ""


def _vocab_size_option(default: int) -> Option:
    # The library allocates for the size asked for: 2**40 aborts the whole process.
    return Option(int, default, "size of the vocabulary to learn", low=1, high=MAX_VOCAB_SIZE)


def _common_options(default_vocab: int) -> dict[str, Option]:
    return {
        "vocab_size": _vocab_size_option(default_vocab),
        # The library counts in 64 bits: a larger number is an OverflowError from inside it.
        "min_freq": Option(int, 2, "pieces seen fewer times are not added", low=0, high=NO_CEILING),
    }


class _Trained(HFTokenizer):
    """A pipeline trained on the book; subclasses say which model, pre-tokenizer, decoder."""

    options = _common_options(2000)

    @classmethod
    def train(cls, text: str, **options: Any) -> HFTokenizer:
        opts = {key: option.default for key, option in cls.options.items()}
        opts.update(cls.check_options(options))
        pipeline, trainer = cls.pipeline_and_trainer(opts)
        try:
            with panics_as_errors(f"the {cls.name} tokenizer cannot be trained on this text"):
                pipeline.train_from_iterator(text_slices(text), trainer=trainer, length=len(text))
        except TokenizerError:
            raise
        except Exception as exc:  # the library raises plain Exceptions
            _refuse_surrogates([text], exc)
            raise TokenizerError(
                f"the {cls.name} tokenizer cannot be trained on this text: {_first_line(exc)}"
            ) from exc
        return cls(pipeline)

    @classmethod
    def pipeline_and_trainer(cls, opts: dict[str, Any]) -> tuple[HFPipeline, Any]:
        raise NotImplementedError


class BPETokenizer(_Trained):
    """Byte-pair encoding; byte-level by default, so every text encodes and decodes exactly."""

    name = "bpe"
    description = "byte-pair encoding trained on the book; byte-level: exact, never unknown"
    options = {
        **_common_options(2000),
        "byte_level": Option(bool, True, "work on UTF-8 bytes (false: characters and <unk>)"),
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        checked = super().check_options(options)
        vocab_size = checked.get("vocab_size", cls.options["vocab_size"].default)
        if checked.get("byte_level", True) and 0 < vocab_size < BYTE_ALPHABET:
            # The library would quietly make it 256: its alphabet alone is that many tokens.
            raise TokenizerError(
                f"byte-level bpe starts from the {BYTE_ALPHABET} byte values, so vocab_size "
                f"{vocab_size} is too small: give {BYTE_ALPHABET} or more, or byte_level=false"
            )
        return checked

    @classmethod
    def pipeline_and_trainer(cls, opts: dict[str, Any]) -> tuple[HFPipeline, Any]:
        common = {"vocab_size": opts["vocab_size"], "min_frequency": opts["min_freq"]}
        if opts["byte_level"]:
            pipeline = HFPipeline(models.BPE())
            pipeline.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            pipeline.decoder = decoders.ByteLevel()
            alphabet = pre_tokenizers.ByteLevel.alphabet()
            return pipeline, trainers.BpeTrainer(
                initial_alphabet=alphabet, show_progress=False, **common
            )
        pipeline = HFPipeline(models.BPE(unk_token=UNK))
        _metaspace(pipeline)
        return pipeline, trainers.BpeTrainer(special_tokens=[UNK], show_progress=False, **common)


class WordPieceTokenizer(_Trained):
    """BERT's WordPiece: words split at spaces and punctuation, then into ## pieces."""

    name = "wordpiece"
    description = "WordPiece (as BERT) trained on the book; decoding re-spaces punctuation"

    @classmethod
    def pipeline_and_trainer(cls, opts: dict[str, Any]) -> tuple[HFPipeline, Any]:
        pipeline = HFPipeline(models.WordPiece(unk_token=UNK))
        pipeline.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        pipeline.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        trainer = trainers.WordPieceTrainer(
            vocab_size=opts["vocab_size"],
            min_frequency=opts["min_freq"],
            special_tokens=[UNK],
            show_progress=False,
        )
        return pipeline, trainer


class UnigramTokenizer(_Trained):
    """SentencePiece's unigram model: the most likely split of each word into pieces."""

    name = "unigram"
    description = "unigram language model (as SentencePiece) trained on the book; <unk> for rest"
    options = {"vocab_size": _vocab_size_option(2000)}

    @classmethod
    def pipeline_and_trainer(cls, opts: dict[str, Any]) -> tuple[HFPipeline, Any]:
        pipeline = HFPipeline(models.Unigram())
        _metaspace(pipeline)
        trainer = trainers.UnigramTrainer(
            vocab_size=opts["vocab_size"], special_tokens=[UNK], unk_token=UNK, show_progress=False
        )
        return pipeline, trainer


def _metaspace(pipeline: HFPipeline) -> None:
    # Spaces become "▁" inside pieces; no extra space is prepended, so slices (which start
    # after a line break) decode back to exactly the text they came from.
    pipeline.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    pipeline.decoder = decoders.Metaspace(prepend_scheme="never")

"""Examples → ids for training, validation and test: read, report duplicates, split, encode.

    files ──read_examples──► examples ──split by distinct text──► train / validation / test
          ──tokenizer (trained on all the text)──► ExampleIds, each label as its index

The end token is the id after the tokenizer's last (`PreparedExamples.end_id`), so a model of
examples has a vocabulary one larger than its tokenizer's. Examples are small (the names set
is 100 KB), so they are tokenized in memory on every run; the token cache is for books.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from charlm.corpus import ExampleSet, read_examples, split_examples
from charlm.data.examples import ExampleIds, LabelSet
from charlm.data.options import DataOptions
from charlm.errors import CorpusError, UnknownTokenError
from charlm.tokenizers import Tokenizer, train_tokenizer
from charlm.tokenizers.base import joined_unknown_error

SPLIT_NAMES = {"val": "validation", "test": "test"}
SENTENCE_WORDS = 4  # examples whose median has this many words or more are sentences


@dataclass
class PreparedExamples:
    """A tokenizer, the ids of each split (None where unused) and the labels (None: none)."""

    tokenizer: Tokenizer
    train: ExampleIds
    val: ExampleIds | None
    test: ExampleIds | None
    labels: LabelSet | None
    info: dict[str, Any]  # the checkpoint's data section
    messages: list[str] = field(default_factory=list)

    @property
    def end_id(self) -> int:
        """The end token: the id after the tokenizer's own."""
        return self.tokenizer.vocab_size

    def report(self) -> list[str]:
        """Lines for the user: what was read, duplicates, the split sizes."""
        return list(self.messages)


def read_example_set(
    specs: str | os.PathLike | Sequence[str | os.PathLike], options: DataOptions
) -> ExampleSet:
    """The examples in `specs`, read as `options` say (labels, examples, columns, encoding)."""
    return read_examples(
        specs,
        labels=options.labels,
        examples=options.examples,
        text_column=options.text_column,
        label_column=options.label_column,
        encoding=options.encoding,
        keep_boilerplate=options.keep_boilerplate,
    )


def prepare_examples(
    specs: str | os.PathLike | Sequence[str | os.PathLike],
    options: DataOptions,
    *,
    tokenizer: str | Tokenizer | None = "char",
    tokenizer_options: dict[str, Any] | None = None,
) -> PreparedExamples:
    """Ids for the examples in `specs`, split as `options` say, with a tokenizer trained on
    all their text (or the given `tokenizer` instance; None: the one `tokenizer_for` chooses
    for these examples)."""
    found = read_example_set(specs, options)
    messages = [_describe_read(found)]
    duplicates = found.duplicates()
    if duplicates.describe():
        messages.append(duplicates.describe() + ("; dropped (--dedupe)" if options.dedupe else ""))
    if options.dedupe:
        found = found.deduplicated()
    splits = _split(found, options)
    labels = _labels(splits)
    if tokenizer is None:
        tokenizer, words = tokenizer_for(found.texts)
        messages.append(
            f"tokenizer: {tokenizer} (a median example of {words} word{'s' * (words != 1)}; "
            "--tokenizer chooses another)"
        )
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    else:
        text = "\n".join(t for part in splits.values() if part is not None for t in part.texts)
        tok = train_tokenizer(tokenizer, text, tokenizer_options)
    ids = {name: _encode(part, tok, labels) if part else None for name, part in splits.items()}
    sizes = ", ".join(
        f"{SPLIT_NAMES.get(name, name)} {len(part):,}" for name, part in splits.items() if part
    )
    count = len(labels) if labels else 0
    messages.append(
        f"examples: {sizes}; {count or 'no'} label{'s' * (count != 1)}, "
        f"end token id {tok.vocab_size}"
    )
    if count == 1:  # the label then says nothing: likely a directory of one file, or one column
        messages.append(
            f"only one label ({labels.names[0]}): the model cannot tell labels apart; "
            "--labels files takes one file a label, --labels dirs one directory a label"
        )
    info = _info(specs, options, found, duplicates, splits, ids, tok)
    return PreparedExamples(tok, ids["train"], ids["val"], ids["test"], labels, info, messages)


def tokenizer_for(texts: Sequence[str]) -> tuple[str, int]:
    """The tokenizer a classifier of these examples reads best, and why: words for sentences,
    characters for names and other single words (and for text written without spaces, such
    as Chinese), with the median number of space-separated words an example has.

    A classifier of MR's review sentences reached 73.0% on its first fold reading words
    against 66.7% reading characters, in the same five minutes (docs/benchmarks.md).
    """
    counts = sorted(len(text.split()) for text in texts)
    median = counts[len(counts) // 2] if counts else 0
    return ("word" if median >= SENTENCE_WORDS else "char"), median


def _split(found: ExampleSet, options: DataOptions) -> dict[str, ExampleSet | None]:
    config = options.splits()
    val_fraction, test_fraction = config.tail_fractions()
    train, val, test = split_examples(found, val_fraction, test_fraction, options.split_seed)
    parts: dict[str, ExampleSet | None] = {"train": train, "val": val, "test": test}
    for name, path in (("val", options.val_file), ("test", options.test_file)):
        if path is not None:
            given = read_example_set(path, options)
            parts[name] = given.deduplicated() if options.dedupe else given
    for name, wanted in (("val", config.has_val()), ("test", config.has_test())):
        if not wanted:
            parts[name] = None
        elif not parts[name]:
            raise CorpusError(
                f"no {SPLIT_NAMES[name]} examples: there are too few distinct texts; raise "
                f"--{name}-fraction or set it to 0"
            )
    return parts


def _labels(splits: dict[str, ExampleSet | None]) -> LabelSet | None:
    train = splits["train"]
    if train.labels is None:
        return None
    counts = train.label_counts()
    for name in ("val", "test"):
        part = splits[name]
        unseen = sorted(set(part.label_names) - set(counts)) if part is not None else []
        if unseen:
            raise CorpusError(
                f"the {SPLIT_NAMES[name]} examples have labels the training examples lack: "
                f"{', '.join(unseen[:5])}"
            )
    return LabelSet(list(counts), list(counts.values()))


def _encode(part: ExampleSet, tok: Tokenizer, labels: LabelSet | None) -> ExampleIds:
    encoded, unseen = [], []
    for text in part.texts:
        try:
            encoded.append(tok.encode_array(text))
        except UnknownTokenError as exc:  # go on: the error names every example's pieces
            unseen.append(exc)
    if unseen:
        raise joined_unknown_error(unseen)
    indices = None
    if labels is not None:
        indices = [labels.index(label) for label in part.labels]
    return ExampleIds.from_lists(encoded, indices, sum(len(t) for t in part.texts))


def _describe_read(found: ExampleSet) -> str:
    files = found.files
    encodings = sorted({f["encoding"] for f in files})
    converted = sum(1 for f in files if f.get("line_endings", "lf") != "lf")
    endings = f", {converted} with CRLF/CR line endings → LF" if converted else ""
    count = len(found.label_names) if found.labels is not None else 0
    labels = f", {count or 'no'} label{'s' * (count != 1)}"
    skipped = found.describe_skipped()
    return (
        f"read {len(files)} file{'s' if len(files) != 1 else ''} ({', '.join(encodings)}"
        f"{endings}): {len(found):,} examples ({found.unit}){labels}"
        + (f"; {skipped}" if skipped else "")
    )


def _info(specs, options, found, duplicates, splits, ids, tok) -> dict[str, Any]:
    specs = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    counts = {f"{name}_examples": len(part) if part else 0 for name, part in splits.items()}
    tokens = {f"{name}_tokens": part.num_targets if part else 0 for name, part in ids.items()}
    return {
        "inputs": [str(s) for s in specs],
        "books": found.files,
        "examples": {
            "unit": found.unit,
            "labels_from": options.labels,
            "duplicates": duplicates.repeated,
            "skipped_empty": found.skipped,  # table rows whose text is empty
            "texts_with_several_labels": duplicates.texts_with_several_labels,
            "deduplicated": options.dedupe,
            "end_id": tok.vocab_size,
            **counts,
        },
        "characters": sum(len(t) for t in found.texts),
        **tokens,
    }

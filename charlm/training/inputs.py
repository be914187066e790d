"""What a run trains on: books as one stream of ids, or short examples (labelled or not).

`prepare_inputs` reads and encodes either kind into `RunInputs`, which gives the loop its
training and validation data, builds the model that fits them, and scores the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charlm.checkpoint import Checkpoint
from charlm.corpus import resolve_inputs
from charlm.data import (
    DataOptions,
    ExampleIds,
    LabelSet,
    PreparedData,
    PreparedExamples,
    min_tokens_for_one_batch,
    prepare_data,
    prepare_examples,
)
from charlm.errors import ConfigError, CorpusError, TokenizerError, UnknownTokenError
from charlm.metrics import perplexity
from charlm.models import (
    ENCODER_FIELDS,
    RNNLM,
    ModelConfig,
    RNNClassifier,
    build_model,
    copy_language_model,
    is_classifier,
)
from charlm.models.vocabulary import with_vocabulary
from charlm.tokenizers import Tokenizer
from charlm.training.config import TrainConfig
from charlm.training.feeds import classifier_predictions, evaluate, evaluate_example_ids
from charlm.training.kept import KeptLM

Ids = np.ndarray | ExampleIds


@dataclass
class RunInputs:
    """The encoded data of a run, whichever kind it is."""

    prepared: PreparedData | PreparedExamples
    reverse: bool = False  # every split read backwards (a backward language model)
    # The run's own tokenizer, not that of the model it starts from (--init-from with
    # --tokenizer): that model's token rows are carried over to it (models/vocabulary.py).
    own_vocabulary: bool = False

    @property
    def examples(self) -> bool:
        return isinstance(self.prepared, PreparedExamples)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.prepared.tokenizer

    @property
    def labels(self) -> LabelSet | None:
        return self.prepared.labels if self.examples else None

    @property
    def splits(self) -> tuple[Ids, Ids | None, Ids | None]:
        """(train, validation, test) ids; None where a split is not used."""
        p = self.prepared
        found = (p.train, p.val, p.test) if self.examples else (p.train_ids, p.val_ids, p.test_ids)
        return tuple(_backwards(part) for part in found) if self.reverse else found

    @property
    def reads_words(self) -> bool:
        """Whether the tokenizer reads words (sentences), whose classifiers have their own
        defaults, rather than characters."""
        return self.tokenizer.name == "word"

    @property
    def val_characters(self) -> int | None:
        return None if self.examples else self.prepared.val_characters

    def sections(self) -> dict[str, Any]:
        """The checkpoint sections the data adds beside the model: the labels and counts."""
        return {"labels": self.labels.to_dict()} if self.labels is not None else {}

    def build_model(
        self, settings: dict[str, Any], base: Checkpoint | None, backward: Checkpoint | None = None
    ) -> RNNLM | RNNClassifier:
        """The network to train: `base`'s (checked to fit this data) or a new one; a new
        classifier when `base` is a language model (its encoder copied in, the backward
        direction's from `backward`)."""
        if _classifier_from_lm(settings.get("task"), base):
            if backward is not None and not self.own_vocabulary:
                _check_same_tokens(base, backward)
            forward = self.language_model_of(base)
            backward_lm = backward and self.language_model_of(backward)
            return self.classifier_from(settings, forward, backward_lm)
        if base is not None:
            self._check_base(base)
            return self.language_model_of(base)
        vocab_size = self.tokenizer.vocab_size
        if not self.examples:
            return build_model(ModelConfig(vocab_size, **settings))
        labels = len(self.labels) if self.labels is not None else 0
        return build_model(
            ModelConfig(vocab_size + 1, end_token=True, num_labels=labels, **settings)
        )

    def language_model_of(self, base: Checkpoint) -> RNNLM:
        """`base`'s model, moved onto this run's vocabulary when the run has its own."""
        if not self.own_vocabulary:
            return base.model
        return with_vocabulary(base.model, base.tokenizer, self.tokenizer)

    def classifier_from(
        self, settings: dict[str, Any], forward: RNNLM, backward: RNNLM | None = None
    ) -> RNNClassifier:
        """A new classifier of this data with the `settings`, its encoder copied from the
        language model `forward` (and its backward direction's from `backward`)."""
        if self.labels is None:
            raise ConfigError("a classifier trains on labelled examples: give --labels")
        shape = {k: getattr(forward.config, k) for k in ENCODER_FIELDS}
        config = ModelConfig(
            self.tokenizer.vocab_size + 1, end_token=True, num_labels=len(self.labels),
            **{**settings, **shape},
        )  # fmt: skip
        model = build_model(config)
        copy_language_model(model, forward, backward)
        return model

    def _check_base(self, base: Checkpoint) -> None:
        saved = list(base.config.get("labels") or {})
        names = self.labels.names if self.labels is not None else []
        if saved != names:
            raise ConfigError(
                f"{base.path} was trained on the labels {', '.join(saved) or '(none)'}; the "
                f"data has {', '.join(names) or 'none'}"
            )

    def test_loss(
        self, net: RNNLM, training: TrainConfig, device: torch.device, kept_lm: KeptLM | None = None
    ) -> float:
        """Mean nats per token of the test split (of a classifier: the share it gets wrong,
        joined with the labelled LM it keeps, as classify joins them)."""
        test = self.splits[2]
        if is_classifier(net):
            predicted = classifier_predictions(
                net, test, batch_size=training.batch_size, device=device
            )
            if kept_lm is not None:
                predicted = kept_lm.join(predicted, test, device, training.batch_size)
            return float((predicted.argmax(axis=1) != test.labels).mean())
        if self.examples:
            return evaluate_example_ids(
                net, test, batch_size=training.batch_size, device=device, seq_len=training.seq_len
            )
        return evaluate(
            net, test, batch_size=training.batch_size, seq_len=training.seq_len, device=device
        )

    def test_report(self, loss: float, net: torch.nn.Module, kept_lm: bool = False) -> str:
        """The test line; `kept_lm`: the classifier keeps a labelled LM, scored with it."""
        test = self.splits[2]
        if is_classifier(net):
            joined = " (the classifier with its language model)" if kept_lm else ""
            return f"test accuracy {1 - loss:.4f} on {len(test):,} examples{joined}"
        count = test.num_targets if self.examples else len(test)
        return f"test perplexity {perplexity(loss):.3f} on {count:,} tokens"


def prepare_inputs(
    book: Any,
    data: DataOptions,
    base: Checkpoint | None,
    tokenizer: str | None,
    options: dict[str, Any] | None,
    training: TrainConfig,
    say: Callable[[str], None],
    cached_as: dict[str, Any] | None = None,
    task: str = "lm",
    own_vocabulary: bool = False,
) -> RunInputs:
    """Read, split and encode the books or examples (books from the token cache if there;
    `cached_as`: the tokenizer spec a resumed run's first part cached its ids under). A
    classifier (`task` "classify") may start from a language model of continuous text.

    The data is read with `base`'s tokenizer, if there is a `base`, unless `own_vocabulary`:
    then with `tokenizer`, trained on the data, as a new run would."""
    classifier_from_lm = _classifier_from_lm(task, base)
    inherited = base.tokenizer if base is not None and not own_vocabulary else None
    if (
        base is not None
        and not classifier_from_lm
        and base.model.config.end_token != (data.example_unit is not None)
    ):
        kind = "short examples" if base.model.config.end_token else "continuous text"
        raise ConfigError(f"{base.path} is a model of {kind}; train it on the same kind of data")
    try:
        if data.example_unit is not None:
            prepared = prepare_examples(
                book,
                data,
                tokenizer=tokenizer if inherited is None else inherited,
                tokenizer_options=options if inherited is None else None,
            )
        else:
            prepared = prepare_data(
                resolve_inputs(book, corpus_dir=data.corpus_dir, message=say),
                tokenizer=tokenizer if inherited is None else inherited,
                tokenizer_options=options if inherited is None else None,
                splits=data.splits(),
                encoding=data.encoding,
                keep_boilerplate=data.keep_boilerplate,
                cache_dir=data.cache_dir,
                use_cache=data.use_cache,
                cached_as=cached_as,
            )
            _check_lengths(prepared, training)
    except TokenizerError as exc:
        if inherited is None:
            raise
        unseen = isinstance(exc, UnknownTokenError) and exc.summary
        raise TokenizerError(
            f"the data cannot be encoded by the tokenizer of {base.path}, which the model "
            f"comes with: {f'it has {exc.summary}' if unseen else exc}"
        ) from exc
    return RunInputs(prepared, data.reverse, own_vocabulary=own_vocabulary and base is not None)


def _classifier_from_lm(task: str | None, base: Checkpoint | None) -> bool:
    """Whether the run makes a new classifier from a language model's encoder (ULMFiT)."""
    return task == "classify" and base is not None and not is_classifier(base.model)


def _check_same_tokens(forward: Checkpoint, backward: Checkpoint) -> None:
    """The directions of a classifier share one embedding, so its two language models must
    read the same tokens under the same ids (the least-squares map between their embeddings
    pairs rows by id)."""
    back = backward.tokenizer
    if not forward.tokenizer.is_saved_as(back.name, back.get_state()):
        raise ConfigError(
            f"{backward.path} reads other tokens than {forward.path}: train both language "
            "models with the same tokenizer, or name one with --tokenizer to move both onto it"
        )


def _backwards(part: Ids | None) -> Ids | None:
    if part is None:
        return None
    return part.reversed() if isinstance(part, ExampleIds) else part[::-1].copy()


def _check_lengths(prepared: PreparedData, training: TrainConfig) -> None:
    train_ids, val_ids, test_ids = prepared.train_ids, prepared.val_ids, prepared.test_ids
    need = min_tokens_for_one_batch(training.batch_size, training.seq_len)
    if len(train_ids) < need:
        raise CorpusError(
            f"the training text has {len(train_ids)} tokens, too few for one batch of "
            f"{training.batch_size} x {training.seq_len} (needs {need}); use a longer book "
            "or a smaller --batch-size / --seq-len"
        )
    if val_ids is not None and len(val_ids) < 2:
        raise CorpusError(
            "the validation text is shorter than 2 tokens; raise --val-fraction or set it to 0"
        )
    if test_ids is not None and len(test_ids) < 2:
        raise CorpusError("the test text is shorter than 2 tokens; raise --test-fraction")

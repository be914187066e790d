"""The recurrent language model: embedding → stacked RNN / GRU / LSTM → linear to the vocabulary.

The output layer is a full softmax (one linear layer) or, for large vocabularies, an adaptive
softmax (charlm/models/heads.py).

A model of examples (names, sentences) has one more token than its tokenizer, the end token
(`end_token`; the last id), which ends every example and also stands first in each as its
start. A model of labelled examples is conditioned on the label (`num_labels` > 0), as
`label_input` says:

    token       the label's vector replaces the start token's embedding: the network reads
                the label first, then the example (a learned "label token")
    every-step  the label's vector is joined to the input at every step, as in the PyTorch
                tutorial that generates names of a chosen language
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from charlm.errors import ConfigError
from charlm.models import scratch
from charlm.models.cells import CELLS, IMPLS
from charlm.models.heads import (
    DEFAULT_CUTOFFS,
    SOFTMAXES,
    AdaptiveHead,
    default_cutoffs,
    parse_cutoffs,
)
from charlm.models.int8_step import NativeNetwork
from charlm.models.losses import token_nll
from charlm.models.stepping import FusedWeights
from charlm.options import check_types, option

# An RNN or GRU state is one tensor; an LSTM state is a (hidden, cell) pair.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

# The φ of a plain RNN cell (GRU and LSTM have their own gates), as the scratch RNN has them.
NONLINEARITIES = tuple(scratch.NONLINEARITIES)
LABEL_INPUTS = ("token", "every-step")
# lm: a language model (of labelled examples, a generative classifier); classify: a
# discriminative classifier on the same encoder (charlm/models/classifier.py).
TASKS = ("lm", "classify")
POOLINGS = ("last", "mean", "max", "concat")
_FRACTION = {"low": 0, "high": 1, "high_open": True}


@dataclass
class ModelConfig:
    """The shape of a model; stored in the checkpoint so the same network can be rebuilt."""

    vocab_size: int
    cell: str = option("lstm", "Recurrent cell.", flag="--model", choices=tuple(CELLS))
    impl: str = option(  # the weights convert both ways
        "torch",
        "torch: PyTorch's fast layers; scratch: the same cells written out from the textbook "
        "equations (slower, same numbers).",
        choices=tuple(IMPLS),
    )
    one_hot: bool = option(  # the textbook's input
        False,
        "Feed one-hot vectors of vocabulary size instead of an embedding (--embed is then unused).",
    )
    # `examples=`: the defaults for short examples (names), measured in docs/labelled-text.md.
    num_layers: int = option(
        2, "Number of stacked recurrent layers.", flag="--layers", low=1, examples=1
    )
    # `words=`: a classifier of sentences (MR over 10 folds: 77.0% with these, 72.9% with the
    # defaults of names; docs/benchmarks.md#classifiers).
    hidden_size: int = option(
        512, "Hidden units per layer.", flag="--hidden", low=1, examples=256, words=128
    )
    embed_size: int = option(
        64, "Size of the token embedding.", flag="--embed", low=1, examples=32, words=128
    )
    dropout: float = option(0.1, "Dropout between stacked layers.", **_FRACTION, examples=0.0)
    # `classify=`: a classifier learns from one label per example, not from every character,
    # and overfits the names in 4 epochs without more dropout (docs/benchmarks.md#classifiers).
    embed_dropout: float = option(
        0.0, "Dropout on the embedded input tokens.", **_FRACTION, classify=0.2, words=0.5
    )
    output_dropout: float = option(
        0.0,
        "Dropout on the last layer's output, before the head.",
        **_FRACTION,
        examples=0.2,
        classify=0.5,
    )
    tie_weights: bool = option(
        False,
        "Share the embedding matrix with the output layer (needs --embed = --hidden).",
        negatable=True,
    )
    nonlinearity: str = option(
        "tanh", "Activation of --model rnn (GRU/LSTM have gates).", choices=NONLINEARITIES
    )
    softmax: str = option(
        "full",
        "Output layer: full, or adaptive (much faster for word vocabularies of 10k+ tokens; "
        "see --cutoffs).",
        choices=SOFTMAXES,
    )
    cutoffs: list[int] | None = option(  # None: the defaults that fit the vocabulary
        None,
        "Adaptive softmax: where its clusters of rarer tokens start, e.g. 2000,10000.",
        parse=parse_cutoffs,
        metavar="N,N,...",
        shown_default=f"{','.join(map(str, DEFAULT_CUTOFFS))}, those below the vocabulary size",
    )
    init_range: float | None = option(
        None,
        "Initialise every weight uniformly in ±this (0.1 in Zaremba et al.).",
        low=0,
        low_open=True,
        shown_default="PyTorch's initialisation",
    )
    label_input: str = option(
        "every-step",
        "How a labelled model reads the label: token: once, in place of the start token; "
        "every-step: joined to the input at every step.",
        choices=LABEL_INPUTS,
    )
    label_size: int = option(
        16, "Size of the label vector joined to each input (--label-input every-step).", low=1
    )
    task: str = option(
        "lm",
        "lm: a language model (with --labels, a generative classifier by Bayes' rule); "
        "classify: a discriminative classifier of labelled examples on the same encoder.",
        choices=TASKS,
    )
    # Both ways for every classifier: on the names, pretrained (the default for an alphabet),
    # 84.3% against 83.8% unidirectional; MR, 10 folds: 77.0% against 76.6%.
    bidirectional: bool = option(
        False,
        "--task classify: read each example both ways (a backward direction too).",
        negatable=True,
        classify=True,
    )
    pooling: str = option(
        "concat",
        "--task classify: what the label is read from: the last state, the mean or max of the "
        "states over the example, or concat (all three, as ULMFiT).",
        choices=POOLINGS,
        words="max",
    )
    # Set from the data, not on the command line: the last id ends (and starts) each example,
    # and the number of labels the model is conditioned on (0: none).
    end_token: bool = False
    num_labels: int = 0

    @property
    def end_id(self) -> int | None:
        """The end token's id (the last one), or None for a model of continuous text."""
        return self.vocab_size - 1 if self.end_token else None

    def __post_init__(self) -> None:
        check_types(self)
        if self.cell not in CELLS:
            raise ConfigError(f"unknown model {self.cell!r}; choose one of {', '.join(CELLS)}")
        CELLS[self.cell].layer_class(self.impl)  # refuses an unknown impl, or torch without one
        for name in ("vocab_size", "embed_size", "hidden_size", "num_layers", "label_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):  # e.g. a hand-edited file
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for name in ("dropout", "embed_dropout", "output_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        for name in ("one_hot", "tie_weights", "end_token"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ConfigError(f"unknown nonlinearity {self.nonlinearity!r}; use tanh or relu")
        if self.nonlinearity != "tanh" and not CELLS[self.cell].nonlinearity:
            raise ConfigError(
                f"--nonlinearity {self.nonlinearity} applies to --model rnn only, not {self.cell}"
            )
        if self.tie_weights and self.one_hot:
            raise ConfigError("--tie-weights needs an embedding to share; drop --one-hot")
        if self.tie_weights and self.embed_size != self.hidden_size:
            raise ConfigError(
                "tied weights share one matrix between the embedding and the output layer, "
                f"so --embed must equal --hidden (got {self.embed_size} and {self.hidden_size})"
            )
        if self.init_range is not None and not self.init_range > 0:
            raise ConfigError(f"init_range must be positive, got {self.init_range}")
        self._check_labels()
        self._check_softmax()
        self._check_task()

    def _check_task(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; use {' or '.join(TASKS)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}; use one of {', '.join(POOLINGS)}")
        if not isinstance(self.bidirectional, bool):
            raise ConfigError(f"bidirectional must be true or false, got {self.bidirectional!r}")
        if self.task == "lm":
            if self.bidirectional:
                raise ConfigError(
                    "a language model reads left to right: --bidirectional needs --task classify"
                )
            return
        if self.impl != "torch":
            raise ConfigError("--task classify runs on PyTorch's layers: drop --impl scratch")
        if self.one_hot or self.tie_weights or self.softmax != "full":
            raise ConfigError(
                "--task classify has no output softmax over tokens: drop --one-hot, "
                "--tie-weights and --softmax adaptive"
            )

    def _check_labels(self) -> None:
        if self.label_input not in LABEL_INPUTS:
            raise ConfigError(
                f"unknown label input {self.label_input!r}; use {' or '.join(LABEL_INPUTS)}"
            )
        labels = self.num_labels
        if isinstance(labels, bool) or not isinstance(labels, int) or labels < 0:
            raise ConfigError(f"num_labels must be an integer >= 0, got {labels!r}")
        if self.task == "classify" and (labels == 1 or (labels == 0 and self.end_token)):
            raise ConfigError("a classifier needs examples of at least two labels (--labels)")
        if labels and not self.end_token:
            raise ConfigError("a labelled model reads examples: it needs the end token")
        if self.end_token and self.vocab_size < 2:
            raise ConfigError("a model of examples needs at least one token besides the end")

    def _check_softmax(self) -> None:
        if self.softmax not in SOFTMAXES:
            raise ConfigError(f"unknown softmax {self.softmax!r}; use full or adaptive")
        if self.softmax == "full":
            if self.cutoffs is not None:
                raise ConfigError("--cutoffs applies to --softmax adaptive only")
            return
        if self.tie_weights:
            raise ConfigError(
                "--tie-weights needs --softmax full: the adaptive softmax has no single output "
                "matrix to share with the embedding"
            )
        if self.cutoffs is None:
            # Record the cutoffs actually used, so the checkpoint rebuilds the same head.
            self.cutoffs = default_cutoffs(self.vocab_size)
            if not self.cutoffs:
                raise ConfigError(
                    f"--softmax adaptive needs a vocabulary larger than its first cutoff "
                    f"({DEFAULT_CUTOFFS[0]}); this one has {self.vocab_size} tokens (a "
                    "character vocabulary?): use --softmax full, or give smaller --cutoffs"
                )
        self.cutoffs = [int(c) for c in self.cutoffs]
        ordered = all(a < b for a, b in zip(self.cutoffs, self.cutoffs[1:]))
        if not self.cutoffs or not ordered or self.cutoffs[0] < 1:
            raise ConfigError(f"--cutoffs must be increasing positive ids, got {self.cutoffs}")
        if self.cutoffs[-1] >= self.vocab_size:
            raise ConfigError(
                f"--cutoffs must all be below the vocabulary size ({self.vocab_size} tokens), "
                f"got {self.cutoffs}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def layer_groups(
    bottom: list[nn.Module | None], rnn: nn.Module, num_layers: int, head: nn.Module
) -> list[list[nn.Parameter]]:
    """A network's parameters in layers, bottom to top: the `bottom` modules (the input's
    embeddings), each recurrent layer (both directions), the head. What discriminative
    rates and gradual unfreezing go by. A matrix shared by two layers (tied embedding and
    output) is counted once, in the upper: an optimizer takes each parameter once."""
    groups: list[list[nn.Parameter]] = [
        [p for module in bottom if module is not None for p in module.parameters()]
    ]
    for layer in range(num_layers):
        groups.append(
            [p for name, p in rnn.named_parameters() if name.endswith(f"_l{layer}")
             or f"_l{layer}_" in name]
        )  # fmt: skip
    groups.append(list(head.parameters()))
    seen: set[int] = set()
    for group in reversed(groups):
        group[:] = [p for p in group if id(p) not in seen]
        seen.update(id(p) for p in group)
    return groups


class RNNLM(nn.Module):
    """A stacked recurrent language model; inputs and outputs are batch-first."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self._fused: FusedWeights | None = None  # the step's layout of the weights, when used
        # A whole one-token step (embedding, layers, output layer) in place of the modules',
        # for the batches it `takes`: quantize() sets it for an int8 model stepped in C.
        self.token_step: NativeNetwork | None = None
        # One-hot input multiplies W_xh by a unit vector, i.e. picks one of its columns: an
        # embedding lookup in disguise, with the first layer's input size = vocabulary size.
        self.embedding = (
            None if config.one_hot else nn.Embedding(config.vocab_size, config.embed_size)
        )
        input_size = config.vocab_size if config.one_hot else config.embed_size
        # A label's vector stands in for the start token (same size as a token's input) or is
        # joined to every input.
        self.label_embedding = None
        if config.num_labels:
            every_step = config.label_input == "every-step"
            label_size = config.label_size if every_step else input_size
            self.label_embedding = nn.Embedding(config.num_labels, label_size)
            input_size += label_size if every_step else 0
        # nn.RNN/GRU/LSTM apply dropout between stacked layers only, never after the last.
        between_layers = config.dropout if config.num_layers > 1 else 0.0
        cell = CELLS[config.cell]
        extra = {"nonlinearity": config.nonlinearity} if cell.nonlinearity else {}
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        self.rnn = cell.layer_class(config.impl)(
            input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=between_layers,
            batch_first=True,
            **extra,
        )
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.head: nn.Module
        if config.softmax == "adaptive":
            self.head = AdaptiveHead(config.hidden_size, config.vocab_size, config.cutoffs)
        else:
            self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            # One (vocab, size) matrix both looks tokens up and scores them: fewer parameters,
            # and each token's input and output vectors learn from each other.
            self.head.weight = self.embedding.weight
        if config.init_range is not None:
            # Zaremba et al. (2014) draw every parameter, biases included, from U(−r, r).
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -config.init_range, config.init_range)

    @property
    def reference(self) -> torch.Tensor:
        """A tensor whose device and dtype are the model's (its activations' dtype)."""
        # An int8 model's recurrent layers keep only their float biases, as buffers.
        return next(itertools.chain(self.rnn.parameters(), self.rnn.buffers()))

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """The parameters in layers, bottom to top: the token (and label) embeddings, each
        recurrent layer, the head (what `--lr-decay-per-layer` goes by)."""
        bottom = [self.embedding, self.label_embedding]
        return layer_groups(bottom, self.rnn, self.config.num_layers, self.head)

    def begin_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The all-zero state a sequence starts from."""
        device = device if device is not None else self.reference.device
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        zeros = torch.zeros(shape, device=device, dtype=self.reference.dtype)
        parts = CELLS[self.config.cell].state_size  # 1: H; 2: the LSTM's (H, C)
        return zeros if parts == 1 else tuple(zeros.clone() for _ in range(parts))

    def forward(
        self,
        tokens: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """Scores for the next token at every position, and the state after the last one.

        The scores (batch, seq, vocab) are logits, or log-probabilities with the adaptive
        softmax: either way their softmax is the model's distribution. Given `targets`
        (batch, seq), the first result is instead each target's loss −log p in nats
        (batch, seq), computed without scoring the whole vocabulary where the head allows.
        A labelled model needs the `labels` (batch,) of the rows, or (1,) for all of them.
        """
        if state is None:
            state = self.begin_state(tokens.shape[0], tokens.device)
        embedded = self.embed_dropout(self._inputs(tokens, labels))
        outputs, state = self.rnn(embedded, state)  # (batch, seq, hidden)
        outputs = self.output_dropout(outputs)
        if targets is None:
            return self.head(outputs), state  # (batch, seq, vocab)
        if isinstance(self.head, AdaptiveHead):
            return self.head.nll(outputs, targets), state  # (batch, seq)
        # Flattened first, so the output layer is one matrix product with its bias (addmm).
        logits = self.head(outputs.flatten(0, 1)).float()  # (batch·seq, vocab)
        return token_nll(logits, targets.flatten()).view_as(targets), state  # (batch, seq)

    def step(
        self, tokens: torch.Tensor, state: State | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """The scores after one more token per row: tokens (batch,) → (batch, vocab), state.

        The same numbers as `forward` on sequences of one token (to float rounding; an int8
        model's to its quantization). In evaluation mode on a CPU, PyTorch's layers and int8
        layers are stepped through their equations, which costs less per token than
        calling the layer (charlm/models/stepping.py, quantized.py), and an int8 model whose
        step was built in C takes the whole step there (its `token_step`).
        """
        rows, whole = tokens.shape[0], self.token_step
        stepping = not self.training and tokens.device.type == "cpu"
        if stepping and whole is not None and whole.takes(rows) and labels is None:
            if state is None:
                state = self.begin_state(rows, tokens.device)
            return whole(tokens, state)
        step = self._layer_step(rows) if stepping else None
        if step is None:
            scores, state = self(tokens.unsqueeze(1), state, labels=labels)  # (batch, 1, vocab)
            return scores[:, 0], state
        if state is None:
            state = self.begin_state(tokens.shape[0], tokens.device)
        inputs = self._inputs(tokens.unsqueeze(1), labels)[:, 0]  # (batch, input)
        outputs, state = step(inputs, state)  # (batch, hidden)
        return self.head(outputs), state  # (batch, vocab)

    def _layer_step(
        self, rows: int
    ) -> Callable[[torch.Tensor, State], tuple[torch.Tensor, State]] | None:
        """How the recurrent layers take one step of `rows` rows without being called on a
        sequence: by their own `one_step` (int8 layers), or PyTorch's layers by their weights
        laid out for it; None for layers stepped by a call on a one-token sequence (int8 LSTM
        and GRU layers without the C step or above its rows, whose call is the faster; the
        scratch implementation's, a plugin's)."""
        own = getattr(self.rnn, "one_step", None)
        if own is not None:
            return own(rows)
        if not FusedWeights.fits(self.rnn):
            return None
        if self._fused is None or self._fused.layer is not self.rnn:
            self._fused = FusedWeights(self.rnn)  # once per layer (quantize replaces it)
        return self._fused.step

    def _inputs(self, tokens: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What the recurrent layers read: the embedded (or one-hot) tokens (batch, seq, ·),
        with its label in them for a labelled model."""
        if self.embedding is None:
            embedded = F.one_hot(tokens, self.config.vocab_size).to(self.reference.dtype)
        else:
            embedded = self.embedding(tokens)
        if self.label_embedding is not None:
            return self._condition(tokens, embedded, labels)
        if labels is not None:
            raise ConfigError("this model was trained without labels; give no label")
        return embedded

    def _condition(
        self, tokens: torch.Tensor, embedded: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """The inputs with the label in them: at the start tokens, or joined to every step."""
        if labels is None:
            raise ConfigError("this model is conditioned on a label: give one for every row")
        vectors = self.label_embedding(labels.to(tokens.device))  # (batch or 1, label size)
        batch, seq, _ = embedded.shape
        spread = vectors[:, None, :].expand(batch, seq, -1)  # (batch, seq, label size)
        if self.config.label_input == "every-step":
            return torch.cat([embedded, spread], dim=-1)  # (batch, seq, input + label size)
        # Every example starts with the end token; there the network reads the label instead.
        starts = (tokens == self.config.end_id).unsqueeze(-1)  # (batch, seq, 1)
        return torch.where(starts, spread.to(embedded.dtype), embedded)


def detach_state(state: State) -> State:
    """Cut the graph behind `state` so backprop stops at the batch boundary (truncated BPTT).

    The values are kept, so the next batch still starts where this one ended.
    """
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""A discriminative text classifier on the language model's encoder (`--task classify`).

    tokens ─► embedding ─► RNN / GRU / LSTM (one or both directions) ─► pooling ─► linear ─► label

The embedding and recurrent layers are named and shaped as in `RNNLM`, so a language model's
can be copied in (`from_language_model`, the ULMFiT recipe). Rows are padded examples as
`pad_examples` makes them (the start token, then the example); the encoder reads them padded,
each direction from its own start (models/padded.py), so each row's result is the same alone
or padded in a batch.

Pooling reads the label from the states over the example: `last` (the final state, of both
directions when bidirectional), `mean`, `max`, or `concat` (all three, as ULMFiT).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from charlm.data import pad_examples
from charlm.errors import ConfigError
from charlm.models.cells import CELLS
from charlm.models.padded import last_states, run_padded
from charlm.models.rnnlm import ModelConfig, layer_groups

FEATURES_PER_POOLING = {"last": 1, "mean": 1, "max": 1, "concat": 3}


class RNNClassifier(nn.Module):
    """Embedding → recurrent encoder → pooled states → one score per label."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.task != "classify" or config.num_labels < 2:
            raise ConfigError("RNNClassifier needs a config with task classify and 2+ labels")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_size)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        cell = CELLS[config.cell]
        extra = {"nonlinearity": config.nonlinearity} if cell.nonlinearity else {}
        self.rnn = cell.layer_class("torch")(
            config.embed_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=config.bidirectional,
            **extra,
        )
        self.directions = 2 if config.bidirectional else 1
        width = config.hidden_size * self.directions * FEATURES_PER_POOLING[config.pooling]
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.head = nn.Linear(width, config.num_labels)
        if config.init_range is not None:
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -config.init_range, config.init_range)

    @property
    def reference(self) -> torch.Tensor:
        """A parameter whose device and dtype are the model's."""
        return next(self.rnn.parameters())

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Label scores (logits) (batch, labels) of padded rows `tokens` (batch, seq) whose
        first `lengths` (batch,) positions are real."""
        embedded = self.embed_dropout(self.embedding(tokens))  # (batch, seq, embed)
        outputs = run_padded(self.rnn, embedded, lengths)  # (batch, seq, directions·hidden)
        last = last_states(outputs, lengths, self.directions)
        features = self._pool(outputs, last, lengths)
        return self.head(self.output_dropout(features))  # (batch, labels)

    def _pool(
        self, outputs: torch.Tensor, last: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling == "last":
            return last
        seq = outputs.shape[1]
        real = (
            torch.arange(seq, device=outputs.device)[None, :] < lengths.to(outputs.device)[:, None]
        )
        real = real.unsqueeze(-1)  # (batch, seq, 1)
        mean = (outputs * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
        top = outputs.masked_fill(~real, float("-inf")).amax(dim=1)  # (batch, directions·hidden)
        if pooling == "mean":
            return mean
        if pooling == "max":
            return top
        return torch.cat([last, mean, top], dim=-1)  # (batch, 3·directions·hidden)

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """The parameters in layers, bottom to top: embedding, each recurrent layer, head
        (what discriminative learning rates and gradual unfreezing go by)."""
        return layer_groups([self.embedding], self.rnn, self.config.num_layers, self.head)


def is_classifier(model: nn.Module) -> bool:
    """Whether `model` is a discriminative classifier (`--task classify`), not a language
    model; models without a config (plugins' own) are language models."""
    return getattr(getattr(model, "config", None), "task", "lm") == "classify"


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """Each padded row's real positions (batch,) from its mask (batch, seq)."""
    return mask.sum(dim=1).round().long()


@torch.inference_mode()
def classifier_log_posterior(
    model: nn.Module,
    encoded: Sequence[np.ndarray],
    end_id: int,
    device: torch.device,
    texts_per_call: int = 64,
) -> np.ndarray:
    """log p(label | text), (texts, labels), of a discriminative classifier (`--task
    classify`) in evaluation mode: one forward pass per batch of texts of about the same
    length."""
    scores = np.empty((len(encoded), model.config.num_labels), dtype=np.float64)
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    for start in range(0, len(order), texts_per_call):
        chosen = order[start : start + texts_per_call]
        batch = pad_examples([encoded[i] for i in chosen], end_id)
        lengths = lengths_of(batch.mask)  # the start token and the text
        logits = model(batch.inputs.to(device), lengths.to(device))  # (texts, labels)
        scores[chosen] = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
    return scores


# The ModelConfig fields a classifier takes from the language model its encoder starts from.
ENCODER_FIELDS = ("cell", "num_layers", "hidden_size", "embed_size", "nonlinearity")


def copy_language_model(
    model: RNNClassifier, forward: nn.Module, backward: nn.Module | None = None
) -> None:
    """Start `model`'s embedding and recurrent layers from language models (ULMFiT): the
    forward direction from `forward`, the backward one from `backward` (an LM trained on
    reversed text, `charlm train --reverse`). The head stays freshly initialised.

    Where a bidirectional layer above the first reads both directions of the layer below,
    each direction's weights on the other direction's input start at zero, so that at the
    start each direction computes what its language model did. The embedding is the forward
    model's: the backward model's first-layer input weights are mapped onto it through the
    least-squares fit of one embedding by the other (exact when they match up to a linear map).
    """
    config = model.config
    for source in (forward, backward):
        if source is None:
            continue
        lm = source.config
        same = (lm.cell, lm.num_layers, lm.hidden_size, lm.embed_size)
        if source.embedding is None or same != (
            config.cell,
            config.num_layers,
            config.hidden_size,
            config.embed_size,
        ):
            raise ConfigError(
                "the classifier takes the language model's embedding and recurrent layers: "
                f"that model is a {lm.num_layers}-layer {lm.cell} of {lm.hidden_size} units with "
                f"embedding {'none (one-hot)' if source.embedding is None else lm.embed_size}"
            )
    if backward is not None and not config.bidirectional:
        raise ConfigError("a backward language model initialises a --bidirectional classifier")
    with torch.no_grad():
        rows = min(model.embedding.weight.shape[0], forward.embedding.weight.shape[0])
        model.embedding.weight[:rows] = forward.embedding.weight[:rows]
        _copy_layers(model, forward, "", 0)
        if backward is not None:
            _copy_layers(model, backward, "_reverse", config.hidden_size)
            reverse_input = model.rnn.weight_ih_l0_reverse
            reverse_input.copy_(reverse_input @ _embedding_map(forward, backward, rows).T)


def _embedding_map(forward: nn.Module, backward: nn.Module, rows: int) -> torch.Tensor:
    """M (embed, embed) with E_backward ≈ E_forward · M over the tokens both have."""
    ahead = forward.embedding.weight[:rows].double()
    back = backward.embedding.weight[:rows].double()
    return torch.linalg.lstsq(ahead, back).solution.to(forward.embedding.weight.dtype)


def _copy_layers(model: RNNClassifier, lm: nn.Module, suffix: str, offset: int) -> None:
    config = model.config
    source = dict(lm.rnn.named_parameters())
    target = dict(model.rnn.named_parameters())
    for layer in range(config.num_layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            src = source[f"{kind}_l{layer}"]
            dst = target[f"{kind}_l{layer}{suffix}"]
            if kind != "weight_ih":
                dst.copy_(src)
            elif layer == 0:  # a labelled LM's first layer also reads the label: not taken
                dst.copy_(src[:, : config.embed_size])
            elif config.bidirectional:
                dst.zero_()
                dst[:, offset : offset + config.hidden_size] = src
            else:
                dst.copy_(src)

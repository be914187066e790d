"""A trained language model moved onto a new vocabulary, token by token (ULMFiT).

A model trained on one text starts a model of another that has its own tokenizer: every
token both vocabularies spell alike (`Tokenizer.token_text`) keeps its rows of the embedding
and the output layer, and a token the old vocabulary lacks starts at the mean of the old rows
(Howard & Ruder, 2018), an average token rather than a random one. The recurrent layers (and
labels) are copied as they are.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from charlm.errors import ConfigError
from charlm.models.rnnlm import RNNLM
from charlm.tokenizers import Tokenizer


def shared_tokens(old: Tokenizer, new: Tokenizer) -> tuple[list[int], list[int]]:
    """(ids in `new`, ids in `old`) of the tokens named alike in both (`token_text`):
    the words, and the markers, which decode to no text at all."""
    by_text: dict[str, int] = {}
    for token in range(old.vocab_size):
        by_text.setdefault(old.token_text(token), token)
    pairs = [
        (token, by_text[text])
        for token in range(new.vocab_size)
        if (text := new.token_text(token)) and text in by_text
    ]
    return [new_id for new_id, _ in pairs], [old_id for _, old_id in pairs]


def with_vocabulary(model: RNNLM, old: Tokenizer, new: Tokenizer) -> RNNLM:
    """`model` (whose tokenizer is `old`) on the vocabulary of `new`; see the module docstring.

    A model of examples keeps its end token as the last row.
    """
    config = model.config
    if config.one_hot or config.softmax != "full":
        raise ConfigError(
            "a new vocabulary carries each token's rows of the embedding and the output layer "
            "over: the model needs both (not --one-hot, not --softmax adaptive)"
        )
    new_ids, old_ids = shared_tokens(old, new)
    if config.end_token:
        new_ids, old_ids = new_ids + [new.vocab_size], old_ids + [old.vocab_size]
    # The fresh weights are overwritten at once: keep the caller's random stream untouched.
    with torch.random.fork_rng(devices=[]):
        moved = RNNLM(replace(config, vocab_size=new.vocab_size + config.end_token))
    kept = {
        name: tensor
        for name, tensor in model.state_dict().items()
        if not name.startswith(("embedding.", "head."))
    }
    moved.load_state_dict(kept, strict=False)
    rows = (torch.as_tensor(new_ids, dtype=torch.long), torch.as_tensor(old_ids, dtype=torch.long))
    with torch.no_grad():
        _carry(moved.embedding.weight, model.embedding.weight, *rows)
        if not config.tie_weights:  # tied: the output layer's weight is the embedding
            _carry(moved.head.weight, model.head.weight, *rows)
        _carry(moved.head.bias, model.head.bias, *rows)
    reference = model.reference
    return moved.to(device=reference.device, dtype=reference.dtype).train(model.training)


def _carry(
    target: torch.Tensor, source: torch.Tensor, new_ids: torch.Tensor, old_ids: torch.Tensor
) -> None:
    target.copy_(source.mean(dim=0).expand_as(target))
    target[new_ids] = source[old_ids.to(source.device)].to(target.device)

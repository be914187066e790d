"""The labelled LM a classifier keeps (`--keep-lm`): saved beside it, and scored with it.

A classifier of names pretrains a labelled LM of its training names (charlm/training/pretrain.py)
and keeps it: `charlm classify` ranks the labels by the two models together
(charlm/models/posteriors.py). The run scores the pair the same way, so that the evaluation it
keeps as the best and the test accuracy it reports are those of what `classify` will use. The
LM no longer trains by then: its log p(example | label) of the validation and test examples
are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from charlm.checkpoint import CONFIG_NAME, GENERATIVE_NAME, Checkpoint, files, save_checkpoint
from charlm.data import ExampleIds, LabelSet
from charlm.models import RNNLM
from charlm.models.posteriors import joined_with_lm, label_log_likelihoods
from charlm.tokenizers import Tokenizer
from charlm.training.config import TrainConfig

if TYPE_CHECKING:  # pretraining runs the training loop, which joins with a KeptLM
    from charlm.training.pretrain import PretrainedEncoder


def held_prior(training: TrainConfig) -> str:
    """The prior a classifier's scores hold: uniform when its loss weighed every label alike
    (`--class-weights balanced`), else the training shares of the labels."""
    return "uniform" if training.class_weights == "balanced" else "learned"


@dataclass
class KeptLM:
    """The labelled LM a classifier keeps, the sections of its own checkpoint, and the priors
    the two are joined under: the learned one (`classify`'s default) and the classifier's own."""

    model: RNNLM
    sections: dict[str, Any]
    log_prior: np.ndarray
    held_log_prior: np.ndarray
    _likelihoods: dict[int, tuple[ExampleIds, np.ndarray]] = field(default_factory=dict, repr=False)

    def save_beside(self, directory: Path, tokenizer: Tokenizer) -> None:
        """Into `directory`'s `generative` folder, unless it is there: a complete checkpoint
        of its own (`charlm generate out/generative --label ...` works on it)."""
        folder = files.subdirectory(files.subdirectory(directory, create=True) / GENERATIVE_NAME)
        if not (folder / CONFIG_NAME).is_file():
            save_checkpoint(folder, self.model, tokenizer, **self.sections)

    def join(
        self, scores: np.ndarray, examples: ExampleIds, device: torch.device, batch_size: int
    ) -> np.ndarray:
        """The classifier's log p(label | example) (`scores`) joined with this LM's, under the
        learned prior, as `classify` joins them."""
        return joined_with_lm(
            scores, self._log_likelihoods(examples, device, batch_size), self.log_prior,
            self.held_log_prior,
        )  # fmt: skip

    @torch.inference_mode()
    def _log_likelihoods(
        self, examples: ExampleIds, device: torch.device, batch_size: int
    ) -> np.ndarray:
        cached = self._likelihoods.get(id(examples))
        if cached is not None and cached[0] is examples:
            return cached[1]
        config = self.model.config
        rows = [examples.example(i) for i in range(len(examples))]
        self.model.to(device).eval()
        found = label_log_likelihoods(
            self.model, rows, config.num_labels, config.end_id, device, batch_size
        )
        self._likelihoods[id(examples)] = (examples, found)
        return found


def lm_to_keep(
    resumed: Checkpoint | None,
    pretrained: PretrainedEncoder | None,
    labels: LabelSet | None,
    sections: dict[str, Any],
    training: TrainConfig,
) -> KeptLM | None:
    """The LM the classifier keeps: the labelled forward LM its pretraining just trained,
    whose own checkpoint gets `sections` (the classifier's data record, its labels), or in a
    resumed run the one the first part saved (for a `best` copy that part had not made yet)."""
    if resumed is None and (pretrained is None or not pretrained.kept):
        return None
    priors = {
        "log_prior": labels.log_prior("learned"),
        "held_log_prior": labels.log_prior(held_prior(training)),
    }
    if resumed is not None:
        keys = ("data", "results", "val_perplexity", "labels")
        saved = {k: resumed.config[k] for k in keys if k in resumed.config}
        return KeptLM(resumed.model, saved, **priors)
    results = pretrained.summary["forward"]
    own = {"results": results, "val_perplexity": results["val_perplexity"], **sections}
    return KeptLM(pretrained.forward, own, **priors)

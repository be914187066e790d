"""The labelled LM a classifier keeps (`--keep-lm`): saved beside it, and scored with it.

A classifier of names pretrains a labelled LM of its training names (charlm/training/pretrain.py)
and keeps it: `charlm classify` ranks the labels by the two models together
(charlm/models/posteriors.py), and so does the run's test line, so that the accuracy a run
reports is the one `classify` gives. Which evaluation is kept as the best is still chosen by
the classifier alone (charlm/training/feeds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
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

if TYPE_CHECKING:  # pretrain.py imports inputs.py, which imports this module
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

    def save_beside(self, directory: Path, tokenizer: Tokenizer) -> None:
        """Into `directory`'s `generative` folder, unless it is there: a complete checkpoint
        of its own (`charlm generate out/generative --label ...` works on it)."""
        folder = files.subdirectory(files.subdirectory(directory, create=True) / GENERATIVE_NAME)
        if not (folder / CONFIG_NAME).is_file():
            save_checkpoint(folder, self.model, tokenizer, **self.sections)

    @torch.inference_mode()
    def join(
        self, scores: np.ndarray, examples: ExampleIds, device: torch.device, batch_size: int
    ) -> np.ndarray:
        """The classifier's log p(label | example) (`scores`) joined with this LM's, under the
        learned prior, as `classify` joins them."""
        config = self.model.config
        rows = [examples.example(i) for i in range(len(examples))]
        self.model.to(device).eval()
        likelihoods = label_log_likelihoods(
            self.model, rows, config.num_labels, config.end_id, device, batch_size
        )
        return joined_with_lm(scores, likelihoods, self.log_prior, self.held_log_prior)


def lm_to_keep(
    carried: Checkpoint | None,
    pretrained: PretrainedEncoder | None,
    labels: LabelSet | None,
    sections: dict[str, Any],
    training: TrainConfig,
) -> KeptLM | None:
    """The LM the classifier keeps: the labelled forward LM its pretraining just trained,
    whose own checkpoint gets `sections` (the classifier's data record, its labels), or the
    one `carried` from the classifier the run goes on from (resumed, or `--init-from`),
    unchanged, its labels counted as this run counts them."""
    if carried is None and (pretrained is None or not pretrained.kept):
        return None
    priors = {
        "log_prior": labels.log_prior("learned"),
        "held_log_prior": labels.log_prior(held_prior(training)),
    }
    if carried is not None:
        keys = ("data", "results", "val_perplexity")
        own = {k: carried.config[k] for k in keys if k in carried.config}
        return KeptLM(carried.model, {**own, "labels": sections["labels"]}, **priors)
    results = pretrained.summary["forward"]
    own = {"results": results, "val_perplexity": results["val_perplexity"], **sections}
    return KeptLM(pretrained.forward, own, **priors)

"""Label guidance: draw text that reads more like its label than a plain conditional sample.

A labelled model gives p(token | text so far, label) for every label, so it also gives the
text's marginal, p(token | text so far) = Σ_l p(l | text so far) · p(token | text so far, l),
where p(l | text so far) is the model's own Bayes posterior (the learned prior times the
likelihood of the tokens drawn so far). Guidance with scale s draws from

    log p(token | label) + s · (log p(token | label) − log p(token))

which is classifier-free guidance (Ho & Salimans, 2022) with the model's own mixture over
labels as the unconditional model: s = 0 is the plain conditional sample; s > 0 favours the
tokens that make the label more probable given the text. It costs one network row per label
for every sample: each sample's rows carry the same text under every label.
"""

from __future__ import annotations

import torch


class LabelGuide:
    """The guidance of one drawing of `samples` samples of label index `label`.

    `log_joint` (labels,): log p(l) + log p(prefix | l) for each label l, where the drawing
    starts. The network's rows are sample-major: row n · labels + l is sample n under label l.
    """

    def __init__(self, label: int, log_joint: torch.Tensor, samples: int, scale: float) -> None:
        self.label = label
        self.scale = scale
        self.num_labels = log_joint.shape[0]
        self._log_joint = log_joint.float().expand(samples, -1).clone()  # (samples, labels)
        self._log_probs: torch.Tensor | None = None  # (samples, labels, vocab), the last step's

    def logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From the network's `logits` (samples · labels, vocab): each sample's conditional
        log-probabilities under its label and the guided logits to draw from, (samples, vocab)."""
        log_probs = logits.float().log_softmax(dim=-1).view(-1, self.num_labels, logits.shape[-1])
        self._log_probs = log_probs
        conditional = log_probs[:, self.label]
        posterior = self._log_joint.log_softmax(dim=-1).unsqueeze(-1)  # log p(l | text so far)
        marginal = torch.logsumexp(posterior + log_probs, dim=1)
        guided = conditional + self.scale * (conditional - marginal)
        # A token no label can produce has no direction to be guided in (−inf − −inf).
        guided = guided.nan_to_num(nan=float("-inf"))
        return conditional, guided

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Take each sample's drawn token (samples,) into its posterior; the tokens for the
        network's rows (samples · labels,)."""
        index = tokens.view(-1, 1, 1).expand(-1, self.num_labels, 1)
        self._log_joint += self._log_probs.gather(2, index).squeeze(2)
        return tokens.repeat_interleave(self.num_labels)

    def log_posterior(self) -> torch.Tensor:
        """log p(label | text drawn so far) of each sample (samples, labels)."""
        return self._log_joint.log_softmax(dim=-1)

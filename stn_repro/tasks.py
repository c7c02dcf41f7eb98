"""Tasks: what a model's outputs are scored against. Each gives the training loss and counts
the samples it gets wrong (the table metric is the % of those), chosen by ``dataset.task``.

``smoothing`` is cross entropy's label smoothing (``schedule.label_smoothing``).

- ``classify``: logits ``(B, K)``, labels ``(B,)``; cross entropy; wrong when the arg-max is.
- ``sequence``: logits ``(B, L, K)``, labels ``(B, L)`` (class ``K - 1`` = "no digit" past the
  end, so the length is implied); the sum over the L positions of each position's cross
  entropy (L independent softmax classifiers); wrong unless every position is right (sequence
  error, Goodfellow et al. 2013).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class Classify:
    caption = "% error"

    def loss(self, logits: Tensor, labels: Tensor, smoothing: float = 0.0) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)

    def wrong(self, logits: Tensor, labels: Tensor) -> Tensor:
        return (logits.argmax(-1) != labels).sum()


class Sequence:
    caption = "% sequence error"

    def loss(self, logits: Tensor, labels: Tensor, smoothing: float = 0.0) -> Tensor:
        per_position = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none",
                                       label_smoothing=smoothing)
        return per_position.view(labels.shape).sum(1).mean()

    def wrong(self, logits: Tensor, labels: Tensor) -> Tensor:
        return (logits.argmax(-1) != labels).any(1).sum()


TASKS = {"classify": Classify(), "sequence": Sequence()}

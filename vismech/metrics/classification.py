"""Per-item classification metrics, judged by the subject classifier itself."""
from __future__ import annotations

import torch

from ..registry import METRICS
from .base import ItemMetric


def correct(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) float64: 1 where the top-1 class of `probs` (N, K) is the item's label, else 0."""
    return (probs.argmax(-1) == labels).double()


def true_class_prob(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) float64: each item's probability of its own label."""
    return probs.gather(1, labels[:, None]).squeeze(1).double()


@METRICS.register()
class Accuracy(ItemMetric):
    """Top-1 accuracy of the (edited) classifier on the item's ground-truth label.

    Per item: ``1[argmax_k p_k = y]``, p the classifier's probabilities and y the item's label.

    Args:
        ids: (N,) item ids. probs: (N, K) class probabilities. labels: (N,) ground-truth classes.

    Example:
        >>> import torch
        >>> m = Accuracy()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([[0.2, 0.8], [0.6, 0.4]]), torch.tensor([1, 1]))
        >>> m.compute()[1]
        tensor([1., 0.], dtype=torch.float64)
    """

    name = "accuracy"
    direction = "higher"
    units = "fraction of items (0-1)"

    def update(self, ids: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, correct(probs, labels))


@METRICS.register()
class TrueClassProb(ItemMetric):
    """Softmax probability of the ground-truth class under the edit (what the pruning papers plot as "accuracy").

    Per item: ``p_y``.

    Args:
        ids: (N,) item ids. probs: (N, K) class probabilities. labels: (N,) ground-truth classes.

    Example:
        >>> import torch
        >>> m = TrueClassProb()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([[0.25, 0.75], [0.5, 0.5]]), torch.tensor([1, 0]))
        >>> m.compute()[1]
        tensor([0.7500, 0.5000], dtype=torch.float64)
    """

    name = "true_class_prob"
    direction = "higher"
    units = "probability (0-1)"

    def update(self, ids: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, true_class_prob(probs, labels))

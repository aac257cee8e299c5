"""Per-item classification metrics, judged by the subject classifier itself."""
from __future__ import annotations

from ..registry import METRICS
from .base import ItemMetric


@METRICS.register()
class Accuracy(ItemMetric):
    """Top-1 accuracy of the (edited) classifier on the item's ground-truth label."""

    name = "accuracy"
    direction = "higher"
    units = "fraction of items (0-1)"


@METRICS.register()
class TrueClassProb(ItemMetric):
    """Softmax probability of the ground-truth class under the edit (what the pruning papers plot as "accuracy")."""

    name = "true_class_prob"
    direction = "higher"
    units = "probability (0-1)"

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
class TrueClassProbDrop(ItemMetric):
    """Unedited minus edited softmax probability of the ground-truth class: how much the edit hurt the class."""

    name = "true_class_prob_drop"
    direction = "higher"
    units = "probability (0-1)"

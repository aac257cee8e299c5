"""Per-image metrics of the neuron-path task."""
from __future__ import annotations

from ..registry import METRICS
from .base import ItemMetric


@METRICS.register()
class JointAttributionScore(ItemMetric):
    """JAS of the image's path (ref form, m = 20): how much the path carries the true-class probability."""

    name = "jas"
    direction = "higher"
    units = "true-class probability (signed, ref form)"


@METRICS.register()
class ProbabilityRatio(ItemMetric):
    """p_edit(y) / p_base(y) with the path's units scaled by the strength; at removal (0) lower is better."""

    name = "prob_ratio"
    direction = "lower"
    units = "ratio of true-class probabilities"


@METRICS.register()
class Top1Change(ItemMetric):
    """Edited minus unedited top-1 correctness of each image (-1, 0, 1); at removal (0) lower is better."""

    name = "top1_change"
    direction = "lower"
    units = "change of the fraction of correct images"


@METRICS.register()
class PathConsistency(ItemMetric):
    """Share of the image's (layer, rank) slots whose unit is its class path's unit there (the per-layer mode
    over the class's images): how class-specific, rather than image-specific, the paths are."""

    name = "path_consistency"
    set_level = True
    direction = "higher"
    units = "fraction of path slots (0-1)"


@METRICS.register()
class ClassSimilarity(ItemMetric):
    """Mean cosine similarity between the image's class (layer, unit) frequency vector and every other class's;
    lower means paths that tell the classes apart."""

    name = "class_similarity"
    set_level = True
    direction = "lower"
    units = "cosine similarity (0-1)"

"""Per-image metrics of the neuron-path task."""
from __future__ import annotations

import torch

from ..registry import METRICS
from .base import ItemMetric
from .classification import correct, true_class_prob


@METRICS.register()
class JointAttributionScore(ItemMetric):
    """JAS of the image's path (ref form, m = 20): how much the path carries the true-class probability.

    Per image: ``JAS_ref(path)``, the path method's joint attribution of its path (`methods.neuron_path`),
    given finished.

    Args:
        ids: (N,) item ids. values: (N,) each image's JAS.

    Example:
        >>> import torch
        >>> m = JointAttributionScore()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([0.5, -0.25]))
        >>> m.compute()[1].mean().item()
        0.125
    """

    name = "jas"
    direction = "higher"
    units = "true-class probability (signed, ref form)"


@METRICS.register()
class ProbabilityRatio(ItemMetric):
    """p_edit(y) / p_base(y) with the path's units scaled by the strength; at removal (0) lower is better.

    Per image: ``p_edit,y / p_base,y``.

    Args:
        ids: (N,) item ids. edited, base: (N, K) probabilities with and without the edit. labels: (N,) true classes.

    Example:
        >>> import torch
        >>> m = ProbabilityRatio()
        >>> edited, base = torch.tensor([[0.25, 0.75], [0.5, 0.5]]), torch.tensor([[0.5, 0.5], [0.5, 0.5]])
        >>> m.update(torch.tensor([0, 1]), edited, base, torch.tensor([0, 1]))
        >>> m.compute()[1]
        tensor([0.5000, 1.0000], dtype=torch.float64)
    """

    name = "prob_ratio"
    direction = "lower"
    units = "ratio of true-class probabilities"

    def update(self, ids: torch.Tensor, edited: torch.Tensor, base: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, true_class_prob(edited, labels) / true_class_prob(base, labels))


@METRICS.register()
class Top1Change(ItemMetric):
    """Edited minus unedited top-1 correctness of each image (-1, 0, 1); at removal (0) lower is better.

    Per image: ``1[argmax p_edit = y] - 1[argmax p_base = y]``.

    Args:
        ids: (N,) item ids. edited, base: (N, K) probabilities with and without the edit. labels: (N,) true classes.

    Example:
        >>> import torch
        >>> m = Top1Change()
        >>> edited, base = torch.tensor([[0.9, 0.1], [0.9, 0.1]]), torch.tensor([[0.1, 0.9], [0.9, 0.1]])
        >>> m.update(torch.tensor([0, 1]), edited, base, torch.tensor([1, 0]))
        >>> m.compute()[1]
        tensor([-1.,  0.], dtype=torch.float64)
    """

    name = "top1_change"
    direction = "lower"
    units = "change of the fraction of correct images"

    def update(self, ids: torch.Tensor, edited: torch.Tensor, base: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, correct(edited, labels) - correct(base, labels))


@METRICS.register()
class PathConsistency(ItemMetric):
    """Share of the image's (layer, rank) slots whose unit is its class path's unit there (the per-layer mode
    over the class's images): how class-specific, rather than image-specific, the paths are.

    Per image: ``(1/|S|) sum_{s in S} 1[path_s = class_path_s]``, given finished by the path method.

    Args:
        ids: (N,) item ids. values: (N,) each image's share of slots.

    Example:
        >>> import torch
        >>> m = PathConsistency()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([1.0, 0.5]))
        >>> m.compute()[1].mean().item()
        0.75
    """

    name = "path_consistency"
    set_level = True
    direction = "higher"
    units = "fraction of path slots (0-1)"


@METRICS.register()
class ClassSimilarity(ItemMetric):
    """Mean cosine similarity between the image's class (layer, unit) frequency vector and every other class's;
    lower means paths that tell the classes apart.

    Per image of class c: ``mean_{c' != c} cos(f_c, f_c')``, given finished by the path method.

    Args:
        ids: (N,) item ids. values: (N,) each image's class similarity.

    Example:
        >>> import torch
        >>> m = ClassSimilarity()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([0.25, 0.25]))
        >>> m.compute()[1].mean().item()
        0.25
    """

    name = "class_similarity"
    set_level = True
    direction = "lower"
    units = "cosine similarity (0-1)"

"""Metrics of generated images, judged by models outside the subject: a classifier, CLIP, a feature space for FID.

Each judged metric's fingerprint carries its judge's fingerprint (weights digest, preprocessing, scale), so numbers
from different judges never share a leaderboard table.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..datasets.world import COLOURS
from ..registry import METRICS
from .base import Direction, ItemMetric, SetMetric


class JudgedMetric(ItemMetric):
    """An item metric whose value comes from a judge; `judge` is that judge's fingerprint items. `direction` can
    be set per run where the task's goal decides it (erasing a concept wants its accuracy down, amplifying up)."""

    run_parameters: ClassVar[tuple[str, ...]] = ("judge", "direction", "target")  # set by a run, not by the code

    def __init__(self, judge: dict[str, Any] | None = None, direction: Direction | None = None, **kwargs):
        super().__init__(**kwargs)
        self.judge = dict(judge or {})
        if direction is not None:
            self.direction = direction

    def fingerprint_items(self) -> dict[str, Any]:
        return {**super().fingerprint_items(), "direction": self.direction, "judge": self.judge}


class JudgedSetMetric(SetMetric, JudgedMetric):
    pass


@METRICS.register()
class TargetAccuracy(JudgedMetric):
    """Judge's top-1 accuracy on images of the target concept's prompts (erase: lower is better; amplify: higher)."""

    name = "target_accuracy"
    direction = "lower"
    units = "fraction of images (0-1)"


@METRICS.register()
class TargetProbability(JudgedMetric):
    """Judge's probability of the target concept on images of its prompts (erase: lower is better; amplify: higher)."""

    name = "target_prob"
    direction = "lower"
    units = "probability (0-1)"


@METRICS.register()
class OtherAccuracy(JudgedMetric):
    """Judge's top-1 accuracy on images of every other concept's prompts: what an edit must keep."""

    name = "other_accuracy"
    direction = "higher"
    units = "fraction of images (0-1)"


@METRICS.register()
class ClipScore(JudgedMetric):
    """CLIP-T: text alignment of an image with its prompt, 100 * max(cos(image, text), 0) (the CLIPScore scale,
    w = 1, as torchmetrics' CLIPScore)."""

    name = "clip_t"
    direction = "higher"
    units = "100 x cosine, clipped at 0 (0-100)"


@METRICS.register()
class ClipImageSimilarity(JudgedMetric):
    """CLIP-I: cosine between the CLIP image embeddings of the edited image and the unedited one of the same seed."""

    name = "clip_i"
    direction = "higher"
    units = "cosine similarity (-1 to 1)"


class Gaussian:
    """Mean and covariance of a feature set, with the covariance's symmetric square root for the FID's trace term."""

    def __init__(self, features: np.ndarray):
        self.mu, self.cov = features.mean(0), np.cov(features, rowvar=False)
        w, v = np.linalg.eigh(self.cov)
        self.root = (v * np.sqrt(w.clip(min=0))) @ v.T


def frechet_distance(a: np.ndarray, b: Gaussian) -> float:
    """FID between feature rows `a` and the Gaussian `b`: |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^1/2).

    tr((C_a C_b)^1/2) is the sum of the square roots of the eigenvalues of a symmetric PSD matrix with the same
    non-zero spectrum: R C_a R (R = C_b^1/2, d x d) or, with fewer items than features, X C_b X^T / (n - 1) (X the
    centred rows, n x n). Both are exact and need no general matrix square root of a singular product.
    """
    n = len(a)
    centred = a - a.mean(0)
    if n < a.shape[1]:  # C_a itself (d x d) is never formed: tr C_a is the centred rows' squared norm
        product = centred @ b.cov @ centred.T / (n - 1)
    else:
        product = b.root @ (centred.T @ centred / (n - 1)) @ b.root
    trace_root = np.sqrt(np.linalg.eigvalsh(product).clip(min=0)).sum()
    trace_a = float((centred ** 2).sum()) / (n - 1)
    return float(((a.mean(0) - b.mu) ** 2).sum() + trace_a + np.trace(b.cov) - 2 * trace_root)


@METRICS.register()
class FID(JudgedSetMetric):
    """Fréchet distance between the generated images' features and a fixed reference set's, in the judge's feature
    space (mini: judge_world's pooled features; paper: Inception pool3). The reference set is part of the judge."""

    name = "fid"
    direction = "lower"
    units = "Fréchet distance in the judge's feature space (not comparable across feature spaces)"

    def __init__(self, judge: dict[str, Any] | None = None, reference: torch.Tensor | None = None, **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.reference = None if reference is None else Gaussian(reference.double().cpu().numpy())

    def statistic(self, rows: torch.Tensor) -> float:
        return frechet_distance(rows.numpy(), self.reference)


@METRICS.register()
class FairnessDiscrepancy(JudgedSetMetric):
    """FD: L2 distance between the mean attribute probability vector of the images and the target distribution."""

    name = "fd"
    direction = "lower"
    units = "L2 distance between probability vectors (0-1.41)"

    def __init__(self, judge: dict[str, Any] | None = None, target: tuple[float, ...] = (), **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.target = tuple(float(p) for p in target)

    def fingerprint_items(self) -> dict[str, Any]:
        return {**super().fingerprint_items(), "target": self.target}

    def statistic(self, rows: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm(rows.mean(0) - torch.tensor(self.target, dtype=rows.dtype)))


class AttributeShare(JudgedMetric):
    """Share of the images whose attribute is one class (per item: 1 if its measured class is `value`, else 0), by
    the task's labeler (the exact pixel rule on the mini world, or a judge). One subclass per class value, made by
    `share_metric`, so each has a registered name (`share_red`) that a record and the leaderboard can look up."""

    value: ClassVar[str] = ""
    direction = "higher"  # nominal: whether a share should rise or fall depends on the target; fd ranks
    units = "fraction of images (0-1)"


def share_metric(value: str) -> type[AttributeShare]:
    """The registered `share_<value>` metric class (made and registered on first use)."""
    name = f"share_{value}"
    if name not in METRICS:
        cls = type(f"AttributeShare_{value}", (AttributeShare,), {
            "name": name, "value": value,
            "__doc__": f"Share of the images whose attribute is '{value}' (per item: 1 or 0)."})
        METRICS.add(name, cls)
    return METRICS.get(name)


for _colour in COLOURS:  # the mini world's attribute values: their records must resolve without the task loaded
    share_metric(_colour)


@METRICS.register()
class JudgeAgreement(JudgedMetric):
    """Per image: 1 when the exact pixel rule and the judge's attribute head name the same class (an image the pixel
    rule sees no colour in counts as a disagreement), else 0; it says how far judge-based numbers can be trusted."""

    name = "judge_agreement"
    direction = "higher"
    units = "fraction of images (0-1)"


@METRICS.register()
class NoFaceRate(JudgedMetric):
    """Share of images where the face detector found no face: they are left out of the attribute shares and the
    FD, so a rising rate means the FD is read on fewer, and differently chosen, images."""

    name = "no_face_rate"
    direction = "lower"
    units = "fraction of images (0-1)"

"""Metrics of generated images, judged by models outside the subject: a classifier, CLIP, a feature space for FID.

Each judged metric's fingerprint carries its judge's fingerprint (weights digest, preprocessing, scale), so numbers
from different judges never share a leaderboard table.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch_fidelity.metric_kid import kernel_poly

from ..datasets.world import COLOURS
from ..registry import METRICS
from ..stats import Estimate, squared_norm_interval
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


# FID's jackknife covers the population Frechet distance only with enough items per feature dimension: at n = 64
# and d = 32 it covered 0.88 of 200 replications (bias -0.5 of a true 2.7), at n = 192 (6 d) 0.96-0.99
# (tests/test_coverage.py checks 5 d and over); below that the record gives the plug-in without an interval.
FID_ITEMS_PER_DIMENSION = 5


@METRICS.register()
class FID(JudgedSetMetric):
    """Fréchet distance between the generated images' features and a fixed reference set's, in the judge's feature
    space (mini: judge_world's pooled features; paper: Inception pool3). The reference set is part of the judge.

    The estimate is the jackknife's, which removes the plug-in's 1/n bias; with fewer than
    `FID_ITEMS_PER_DIMENSION` items per feature dimension no interval is honest, and the record gives the plug-in
    (the papers' number at this n) with a note instead."""

    name = "fid"
    version = "2"  # 2: jackknife estimate and interval (1: plug-in with a percentile bootstrap)
    direction = "lower"
    units = "Fréchet distance in the judge's feature space (not comparable across feature spaces)"

    def __init__(self, judge: dict[str, Any] | None = None, reference: torch.Tensor | None = None, **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.reference = None if reference is None else Gaussian(reference.double().cpu().numpy())

    def statistic(self, rows: np.ndarray) -> float:
        return frechet_distance(rows, self.reference)

    def interval_note(self, n: int, rows: np.ndarray) -> str | None:
        d = rows.shape[1]
        if n < FID_ITEMS_PER_DIMENSION * d:
            return (f"no honest interval: {n} items < {FID_ITEMS_PER_DIMENSION} x {d} feature dimensions; "
                    f"plug-in FID, biased upwards at this n")
        return None


@METRICS.register()
class KID(JudgedSetMetric):
    """Kernel inception distance: the unbiased MMD^2 between the generated images' features X (n) and a fixed
    reference set's Y (m), with torch-fidelity's polynomial kernel k(x, y) = (x.y / d + 1)^3:
    sum_{i != j} k(x_i, x_j) / n(n - 1) + sum_{i != j} k(y_i, y_j) / m(m - 1) - 2 sum_{i, j} k(x_i, y_j) / nm.
    Unbiased at any n (its jackknife returns it unchanged), so its interval is honest where FID's is not; it can
    fall below 0 when the two distributions are close. Each item's row keeps its mean kernel to the reference."""

    name = "kid"
    direction = "lower"
    units = "MMD^2, polynomial kernel (x.y/d + 1)^3, in the judge's feature space"

    def __init__(self, judge: dict[str, Any] | None = None, reference: torch.Tensor | None = None, **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.reference = None if reference is None else reference.double().cpu().numpy()
        if self.reference is not None:
            m = len(self.reference)
            k_yy = kernel_poly(self.reference, self.reference)
            self.reference_term = float((k_yy.sum() - np.trace(k_yy)) / (m * (m - 1)))

    def update(self, ids: torch.Tensor, features: torch.Tensor) -> None:
        x = torch.as_tensor(features, dtype=torch.float64).reshape(len(ids), -1)
        cross = kernel_poly(x.cpu().numpy(), self.reference).mean(1)
        super().update(ids, torch.cat([x, torch.from_numpy(cross)[:, None].to(x)], 1))

    def statistic(self, rows: np.ndarray) -> float:
        x, cross = rows[:, :-1], rows[:, -1]
        n = len(x)
        k_xx = kernel_poly(x, x)
        return float((k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + self.reference_term - 2 * cross.mean())


@METRICS.register()
class FairnessDiscrepancy(JudgedSetMetric):
    """FD: L2 distance between the mean attribute probability vector of the images and the target distribution.

    The statistic is FD^2 = |mean(p) - target|^2, whose plug-in is biased upwards by tr(Cov p) / n (at a true FD
    of 0 it is never 0): the estimate is the unbiased U-statistic with a score interval
    (vismech.stats.squared_norm_interval), reported as their square roots, clipped at 0. Its jackknife
    pseudo-values (of FD^2) pair two records' FDs item group by item group."""

    name = "fd"
    version = "2"  # 2: unbiased FD^2 with a score interval, reported as their square roots (1: plug-in with a percentile bootstrap)
    direction = "lower"
    units = "L2 distance between probability vectors (0-1.41)"
    transform = "sqrt"

    def __init__(self, judge: dict[str, Any] | None = None, target: tuple[float, ...] = (), **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.target = tuple(float(p) for p in target)

    def fingerprint_items(self) -> dict[str, Any]:
        return {**super().fingerprint_items(), "target": self.target}

    def statistic(self, rows: np.ndarray) -> float:
        return float(((rows.mean(0) - np.asarray(self.target)) ** 2).sum())

    def estimate(self, rows: np.ndarray, pseudo: np.ndarray) -> Estimate:
        return squared_norm_interval(rows - np.asarray(self.target))


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

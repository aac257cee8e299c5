"""Metrics of generated images, judged by models outside the subject: a classifier, CLIP, a feature space for FID.

Each metric's `update` takes what its judge gives (probabilities, embeddings, features, labels) and computes the
per-item value; the formula lives here once. Each judged metric's fingerprint carries its judge's fingerprint
(weights digest, preprocessing, scale), so numbers from different judges never share a leaderboard table.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch_fidelity.metric_kid import kernel_poly
from torch_fidelity.metric_prc import calc_cdist_full

from ..registry import METRICS
from ..errors import VismechError
from ..stats import Estimate, fraction_jackknife_estimate, squared_norm_interval
from .base import Direction, ItemMetric, SetMetric
from .classification import correct, true_class_prob


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
    """Judge's top-1 accuracy on images of the target concept's prompts (erase: lower is better; amplify: higher).

    Per image: ``1[argmax_k p_k = y]``, p the judge's class probabilities and y the prompt's class.

    Args:
        ids: (N,) item ids. probs: (N, K) judge probabilities. labels: (N,) class index of each image's prompt.

    Example:
        >>> import torch
        >>> m = TargetAccuracy()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([[0.7, 0.3], [0.6, 0.4]]), torch.tensor([0, 1]))
        >>> m.compute()[1]
        tensor([1., 0.], dtype=torch.float64)
    """

    name = "target_accuracy"
    direction = "lower"
    units = "fraction of images (0-1)"

    def update(self, ids: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, correct(probs, labels))


@METRICS.register()
class TargetProbability(JudgedMetric):
    """Judge's probability of the target concept on images of its prompts (erase: lower is better; amplify: higher).

    Per image: ``p_y``, the judge's probability of the prompt's class y.

    Args:
        ids: (N,) item ids. probs: (N, K) judge probabilities. labels: (N,) class index of each image's prompt.

    Example:
        >>> import torch
        >>> m = TargetProbability()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([[0.75, 0.25], [0.5, 0.5]]), torch.tensor([0, 1]))
        >>> m.compute()[1]
        tensor([0.7500, 0.5000], dtype=torch.float64)
    """

    name = "target_prob"
    direction = "lower"
    units = "probability (0-1)"

    def update(self, ids: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, true_class_prob(probs, labels))


@METRICS.register()
class OtherAccuracy(JudgedMetric):
    """Judge's top-1 accuracy on images of every other concept's prompts: what an edit must keep.

    Per image: ``1[argmax_k p_k = y]``, as `TargetAccuracy`, on the other classes' images.

    Args:
        ids: (N,) item ids. probs: (N, K) judge probabilities. labels: (N,) class index of each image's prompt.

    Example:
        >>> import torch
        >>> m = OtherAccuracy()
        >>> m.update(torch.tensor([4, 2]), torch.tensor([[0.1, 0.9], [0.2, 0.8]]), torch.tensor([1, 0]))
        >>> m.compute()
        (tensor([2, 4]), tensor([0., 1.], dtype=torch.float64))
    """

    name = "other_accuracy"
    direction = "higher"
    units = "fraction of images (0-1)"

    def update(self, ids: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.add_values(ids, correct(probs, labels))


@METRICS.register()
class ClipScore(JudgedMetric):
    """CLIP-T: text alignment of an image with its prompt, 100 x the CLIP cosine clamped at 0 for each image.

    Per image: ``100 * max(cos(E_I, E_T), 0)`` with E_I, E_T the L2-normalised CLIP image and text embeddings
    (the CLIPScore scale, w = 1). The clamp is per image, so the mean over images is the mean of the clamped
    values; torchmetrics' CLIPScore clamps the mean of the raw cosines instead. The two agree only when no
    image's cosine is negative.

    Args:
        ids: (N,) item ids. image: (N, d) image embeddings. text: (N, d) text embeddings (both L2-normalised).

    Example:
        >>> import torch
        >>> m = ClipScore()
        >>> image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> text = torch.tensor([[0.5, 0.0], [0.0, -0.25]])  # a negative cosine counts 0 here, not -25
        >>> m.update(torch.tensor([0, 1]), image, text)
        >>> m.compute()[1]
        tensor([50.,  0.], dtype=torch.float64)
    """

    name = "clip_t"
    direction = "higher"
    units = "100 x cosine, clipped at 0 (0-100)"

    def update(self, ids: torch.Tensor, image: torch.Tensor, text: torch.Tensor) -> None:
        self.add_values(ids, 100 * (image * text).sum(-1).double().cpu().clamp_min(0))


@METRICS.register()
class ClipImageSimilarity(JudgedMetric):
    """CLIP-I: cosine between the CLIP image embeddings of the edited image and the unedited one of the same seed.

    Per image: ``cos(E_edited, E_unedited)``, clipped to [-1, 1] (float32 products of unit vectors can overshoot).

    Args:
        ids: (N,) item ids. edited, unedited: (N, d) L2-normalised CLIP image embeddings.

    Example:
        >>> import torch
        >>> m = ClipImageSimilarity()
        >>> unedited = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> m.update(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [0.0, -1.0]]), unedited)
        >>> m.compute()[1]
        tensor([ 1., -1.], dtype=torch.float64)
    """

    name = "clip_i"
    direction = "higher"
    units = "cosine similarity (-1 to 1)"

    def update(self, ids: torch.Tensor, edited: torch.Tensor, unedited: torch.Tensor) -> None:
        self.add_values(ids, (edited * unedited).sum(-1).double().cpu().clamp(-1, 1))


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

    Over the run's feature rows (mean mu_a, covariance C_a) and the reference's (mu_b, C_b):
    ``|mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2))`` (see `frechet_distance`).

    The estimate is the jackknife's, which removes the plug-in's 1/n bias; with fewer than
    `FID_ITEMS_PER_DIMENSION` items per feature dimension no interval is honest, and the record gives the plug-in
    (the papers' number at this n) with a note instead.

    Args:
        ids: (N,) item ids. features: (N, d) judge features of each image (to `update`).
        judge: the feature judge's fingerprint items. reference: (M, d) reference features.

    Example:
        >>> import torch
        >>> m = FID(reference=torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
        >>> m.update(torch.arange(4), torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 2.0], [3.0, 2.0]]))
        >>> round(m.statistic(m.compute()[1].numpy()), 6)  # the same spread, shifted by 1: |mu_a - mu_b|^2
        1.0
    """

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
    fall below 0 when the two distributions are close. Each item's row keeps its mean kernel to the reference.

    ``MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)``

    Args:
        ids: (N,) item ids. features: (N, d) judge features of each image (to `update`).
        judge: the feature judge's fingerprint items. reference: (M, d) reference features.

    Example:
        >>> import torch
        >>> m = KID(reference=torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        >>> m.update(torch.arange(2), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        >>> # k = 1, 1, 8 for (a, a), (a, b), (b, b): 1 + 1 - 2 x 11/4; unbiased, so below 0 for equal sets
        >>> round(m.statistic(m.compute()[1].numpy()), 6)
        -3.5
    """

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
        self.check_finite(torch.as_tensor(ids), x)
        cross = kernel_poly(x.cpu().numpy(), self.reference).mean(1)
        super().update(ids, torch.cat([x, torch.from_numpy(cross)[:, None].to(x)], 1))

    def statistic(self, rows: np.ndarray) -> float:
        x, cross = rows[:, :-1], rows[:, -1]
        n = len(x)
        k_xx = kernel_poly(x, x)
        return float((k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + self.reference_term - 2 * cross.mean())


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row (k + 1-th with itself at distance 0), as torch-fidelity's
    precision and recall take it."""
    return calc_cdist_full(features, features).kthvalue(k + 1, dim=1).values


def inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(N,) 1.0 where a point lies within some centre's radius: on a k-NN manifold estimate."""
    return (calc_cdist_full(points, centres) <= radii[None]).any(1).double()


PRC_NEIGHBOURHOOD = 3  # torch-fidelity's default (prc_neighborhood), Kynkäänniemi et al.'s k


class ManifoldMetric(JudgedMetric):
    """Precision and recall: k-nearest-neighbour manifolds of the judge's features and of its reference set's."""

    def __init__(self, judge: dict[str, Any] | None = None, reference: torch.Tensor | None = None,
                 neighbourhood: int = PRC_NEIGHBOURHOOD, **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.neighbourhood = neighbourhood
        self.reference = None if reference is None else torch.as_tensor(reference, dtype=torch.float64).cpu()

    def fingerprint_items(self) -> dict[str, Any]:
        return {**super().fingerprint_items(), "neighbourhood": self.neighbourhood,
                "distance": "L2 in float64 (torch-fidelity calc_cdist_full)"}


@METRICS.register()
class Precision(ManifoldMetric):
    """Improved precision (Kynkäänniemi et al. 2019, torch-fidelity's `precision`): per generated image, 1 when its
    features fall inside the reference's k-nearest-neighbour manifold (within the k-th neighbour distance of some
    reference image), else 0; the mean is the fidelity of the images, whatever their diversity.

    Per image: ``1[exists j: |x - y_j| <= r_k(y_j)]``, r_k(y_j) the distance from y_j to its k-th nearest other
    reference row. The reference is fixed, so the images are independent items (a Wilson interval).

    Args:
        ids: (N,) item ids. features: (N, d) judge features of each image (to `update`).
        judge: the feature judge's fingerprint items. reference: (M, d) reference features. neighbourhood: k.

    Example:
        >>> import torch
        >>> reference = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
        >>> m = Precision(reference=reference, neighbourhood=1)  # radii 1, 1, 1 and 6.40 (to (1, 0))
        >>> m.update(torch.arange(3), torch.tensor([[0.5, 0.5], [20.0, 20.0], [-1.5, 0.0]]))
        >>> m.compute()[1]
        tensor([1., 0., 0.], dtype=torch.float64)
    """

    name = "precision"
    direction = "higher"
    units = "fraction of images inside the reference's k-NN feature manifold (0-1)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.radii = None if self.reference is None else knn_radii(self.reference, self.neighbourhood)

    def update(self, ids: torch.Tensor, features: torch.Tensor) -> None:
        x = torch.as_tensor(features, dtype=torch.float64).reshape(len(ids), -1).cpu()
        self.check_finite(torch.as_tensor(ids), x)  # a NaN distance compares False: it would count as off-manifold
        self.add_values(ids, inside_any_ball(x, self.reference, self.radii))


@METRICS.register()
class Recall(JudgedSetMetric, ManifoldMetric):
    """Improved recall (Kynkäänniemi et al. 2019, torch-fidelity's `recall`): the fraction of reference images
    inside the generated images' k-nearest-neighbour manifold; the diversity of the images, whatever their
    fidelity. A debiasing edit that widens the attribute mix should raise it, not lower precision.

    ``mean_j 1[exists i: |y_j - x_i| <= r_k(x_i)]``, r_k(x_i) the distance from image i to its k-th nearest other
    image. It depends on every image (a set-level metric). The value is the plug-in at the run's n, which is what
    two methods on the same n compare; the interval is the jackknife's standard error around it
    (vismech.stats.fraction_jackknife_estimate: conservative).

    Args:
        ids: (N,) item ids. features: (N, d) judge features of each image (to `update`).
        judge: the feature judge's fingerprint items. reference: (M, d) reference features. neighbourhood: k.

    Example:
        >>> import torch
        >>> m = Recall(reference=torch.tensor([[0.0, 0.0], [0.0, 3.0], [9.0, 9.0]]), neighbourhood=1)
        >>> m.update(torch.arange(3), torch.tensor([[0.0, 0.5], [0.0, -0.5], [0.0, 2.5]]))
        >>> # radii 1, 1 and 2: (0, 0) and (0, 3) are covered, (9, 9) is not
        >>> round(m.statistic(m.compute()[1].numpy()), 6)
        0.666667
    """

    name = "recall"
    direction = "higher"
    units = "fraction of reference images inside the images' k-NN feature manifold (0-1)"

    def statistic(self, rows: np.ndarray) -> float:
        x = torch.from_numpy(np.ascontiguousarray(rows))
        k = min(self.neighbourhood, len(x) - 1)  # a jackknife subset of very few images
        return float(inside_any_ball(self.reference, x, knn_radii(x, k)).mean())

    def estimate(self, rows: np.ndarray, pseudo: np.ndarray) -> Estimate:
        return fraction_jackknife_estimate(self.statistic(rows), pseudo)


@METRICS.register()
class KIDPerClass(JudgedSetMetric):
    """KID within attribute classes: the mean, over the classes, of the KID between the images the task's labeler
    puts in a class and the reference images of that class (its ground truth on the mini world), so image quality
    is read apart from the attribute mix an edit changes. Classes with fewer than two images (or reference images)
    are left out of the mean; each class weighs the same.

    ``mean_c MMD^2_u(X_c, Y_c)`` with `KID`'s kernel; each item's row keeps its features, its class and its mean
    kernel to its class's reference images. Jackknifed as KID.

    Args:
        ids: (N,) item ids. features: (N, d) judge features. labels: (N,) class index of each image (-1: none).
        judge: the feature judge's fingerprint items. reference: (M, d) reference features.
        reference_labels: (M,) class index of each reference image (-1: none of the task's classes).

    Example:
        >>> import torch
        >>> m = KIDPerClass(reference=torch.tensor([[0.0], [0.0], [3.0], [3.0]]),
        ...                 reference_labels=torch.tensor([0, 0, 1, 1]))
        >>> m.update(torch.arange(4), torch.tensor([[0.0], [0.0], [3.0], [3.0]]), torch.tensor([0, 0, 1, 1]))
        >>> round(m.statistic(m.compute()[1].numpy()), 6)  # each class's images are its reference: 0 in both
        0.0
    """

    name = "kid_per_class"
    direction = "lower"
    units = "MMD^2, polynomial kernel (x.y/d + 1)^3, mean over attribute classes, in the judge's feature space"

    def __init__(self, judge: dict[str, Any] | None = None, reference: torch.Tensor | None = None,
                 reference_labels: torch.Tensor | None = None, **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.classes: dict[int, tuple[np.ndarray, float]] = {}  # class -> (its reference rows, its k_yy term)
        if reference is not None:
            y, labels = reference.double().cpu().numpy(), np.asarray(reference_labels)
            for c in sorted(set(labels.tolist()) - {-1}):
                rows = y[labels == c]
                if len(rows) >= 2:
                    k_yy = kernel_poly(rows, rows)
                    self.classes[c] = rows, float((k_yy.sum() - np.trace(k_yy)) / (len(rows) * (len(rows) - 1)))

    def update(self, ids: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> None:
        x = torch.as_tensor(features, dtype=torch.float64).reshape(len(ids), -1).cpu()
        self.check_finite(torch.as_tensor(ids), x)
        labels = torch.as_tensor(labels).reshape(-1).cpu()
        cross = torch.zeros(len(ids), dtype=torch.float64)
        for c, (reference, _) in self.classes.items():
            mine = labels == c
            if mine.any():
                cross[mine] = torch.from_numpy(kernel_poly(x[mine].numpy(), reference).mean(1))
        super().update(ids, torch.cat([x, labels[:, None].to(x), cross[:, None]], 1))

    def statistic(self, rows: np.ndarray) -> float:
        x, labels, cross = rows[:, :-2], rows[:, -2].astype(int), rows[:, -1]
        per_class = []
        for c, (_, reference_term) in self.classes.items():
            mine = labels == c
            n = int(mine.sum())
            if n >= 2:
                k_xx = kernel_poly(x[mine], x[mine])
                per_class.append((k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + reference_term - 2 * cross[mine].mean())
        if not per_class:
            raise VismechError(f"metric '{self.name}' has no class with two images and two reference images")
        return float(np.mean(per_class))


@METRICS.register()
class FairnessDiscrepancy(JudgedSetMetric):
    """FD: L2 distance between the mean attribute probability vector of the images and the target distribution.

    ``FD = || (1/N) sum_i p_i - t ||_2`` over the images' judge probability rows p_i and the target t.

    The statistic is FD^2 = |mean(p) - target|^2, whose plug-in is biased upwards by tr(Cov p) / n (at a true FD
    of 0 it is never 0): the estimate is the unbiased U-statistic with a score interval
    (vismech.stats.squared_norm_interval), reported as their square roots, clipped at 0. Its jackknife
    pseudo-values (of FD^2) pair two records' FDs item group by item group.

    Args:
        ids: (N,) item ids. probs: (N, K) attribute probabilities (to `update`).
        judge: the attribute judge's fingerprint items. target: the K target shares.

    Example:
        >>> import torch
        >>> m = FairnessDiscrepancy(target=(0.5, 0.5))
        >>> m.update(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        >>> round(m.statistic(m.compute()[1].numpy()), 6)  # FD^2 of mean (1, 0) against (0.5, 0.5)
        0.5
    """

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
    `share_metric` and registered as `share_<value>` on first lookup, so a record and the leaderboard find it
    whatever classes the run had.

    Per image: ``1[classes[label] = value]``; the mean is the class's share.

    Args:
        ids: (N,) item ids. labels: (N,) index into `classes` of each image's measured class (-1: none).
        classes: the task's classes, in the labels' order.

    Example:
        >>> import torch
        >>> m = share_metric("red")()
        >>> m.update(torch.tensor([0, 1, 2]), torch.tensor([1, 0, -1]), ("green", "red"))
        >>> m.compute()[1]
        tensor([1., 0., 0.], dtype=torch.float64)
    """

    value: ClassVar[str] = ""
    direction = "higher"  # nominal: whether a share should rise or fall depends on the target; fd ranks
    units = "fraction of images (0-1)"

    def update(self, ids: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> None:
        self.add_values(ids, (labels == classes.index(self.value)).double())


_SHARES: dict[str, type[AttributeShare]] = {}


def share_metric(value: str) -> type[AttributeShare]:
    """Share of the images whose attribute is the class (one registered metric per class, made on first use)."""
    if value not in _SHARES:
        name = f"share_{value}"
        _SHARES[value] = type(f"AttributeShare_{value}", (AttributeShare,), {
            "name": name, "value": value,
            "__doc__": f"Share of the images whose attribute is '{value}' (per item: 1 or 0)."})
        METRICS.add(name, _SHARES[value])
    return _SHARES[value]


METRICS.add_family("share_", share_metric)


@METRICS.register()
class JudgeAgreement(JudgedMetric):
    """Per image: 1 when the exact pixel rule and the judge's attribute head name the same class (an image the pixel
    rule sees no colour in counts as a disagreement), else 0; it says how far judge-based numbers can be trusted.

    Per image: ``1[pixel = argmax_k p_k]``.

    Args:
        ids: (N,) item ids. pixel: (N,) the pixel rule's class index (-1: none). probs: (N, K) judge probabilities.

    Example:
        >>> import torch
        >>> m = JudgeAgreement()
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]])
        >>> m.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, -1]), probs)
        >>> m.compute()[1]
        tensor([1., 0., 0.], dtype=torch.float64)
    """

    name = "judge_agreement"
    direction = "higher"
    units = "fraction of images (0-1)"

    def update(self, ids: torch.Tensor, pixel: torch.Tensor, probs: torch.Tensor) -> None:
        self.add_values(ids, (pixel == probs.argmax(1)).double())


@METRICS.register()
class NoFaceRate(JudgedMetric):
    """Share of images where the face detector found no face: they are left out of the attribute shares and the
    FD, so a rising rate means the FD is read on fewer, and differently chosen, images.

    Per image: ``1[no face found]``.

    Args:
        ids: (N,) item ids. found: (N,) bool, whether the detector found a face.

    Example:
        >>> import torch
        >>> m = NoFaceRate()
        >>> m.update(torch.tensor([0, 1]), torch.tensor([True, False]))
        >>> m.compute()[1]
        tensor([0., 1.], dtype=torch.float64)
    """

    name = "no_face_rate"
    direction = "lower"
    units = "fraction of images (0-1)"

    def update(self, ids: torch.Tensor, found: torch.Tensor) -> None:
        self.add_values(ids, (~found).double())

"""Distances between the distribution of generated images and a reference set's, in a judge's embedding space,
beyond the Fréchet and polynomial-kernel ones of vismech.metrics.generation.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..registry import METRICS
from .generation import JudgedSetMetric

CMMD_SIGMA = 10.0  # the Gaussian kernel's bandwidth in CMMD's definition (Jayasumana et al. 2024)
CMMD_SCALE = 1000.0  # CMMD reports 1000 x MMD^2
BLOCK = 2048  # rows of a kernel block: a 30k reference set never holds a 30k x 30k matrix


def gaussian_kernel(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA) -> np.ndarray:
    """k(x, y) = exp(-|x - y|^2 / 2 sigma^2) for every row pair, (len(x), len(y))."""
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-np.maximum(squared, 0.0) / (2 * sigma ** 2))


def kernel_row_means(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA) -> np.ndarray:
    """(len(x),): each row's mean kernel to every row of y, computed a block of y at a time."""
    total = np.zeros(len(x))
    for start in range(0, len(y), BLOCK):
        total += gaussian_kernel(x, y[start:start + BLOCK], sigma).sum(1)
    return total / len(y)


def off_diagonal_mean(x: np.ndarray, sigma: float = CMMD_SIGMA) -> float:
    """mean_{i != j} k(x_i, x_j), a block of rows at a time; k(x, x) = 1 on the diagonal."""
    n = len(x)
    total = sum(gaussian_kernel(x[start:start + BLOCK], x, sigma).sum() for start in range(0, n, BLOCK))
    return float((total - n) / (n * (n - 1)))


@METRICS.register()
class CMMD(JudgedSetMetric):
    """CMMD (Jayasumana et al. 2024, "Rethinking FID"): 1000 x the unbiased MMD^2 between the generated images'
    CLIP ViT-L/14@336px embeddings X (n, L2-normalised) and a fixed reference set's Y (m), with the Gaussian kernel
    k(x, y) = exp(-|x - y|^2 / 2 sigma^2), sigma = 10. Unbiased at any n, as KID, so its jackknife returns it
    unchanged and gives an honest interval; it can fall below 0 when the two distributions are close. (The CMMD
    release averages each kernel matrix over its diagonal too, which adds 1000 (1 - mean off-diagonal k) (1/n +
    1/m) > 0; the paper's estimator, used here, leaves the diagonal out.) Each item's row keeps its embedding and
    its mean kernel to the reference.

    ``CMMD = 1000 (mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j))``

    Args:
        ids: (N,) item ids. embeddings: (N, d) the CMMD judge's L2-normalised embeddings (to `update`).
        judge: the CMMD judge's fingerprint items. reference: (M, d) reference embeddings.

    Example:
        >>> import torch
        >>> m = CMMD(reference=torch.tensor([[0.0, 0.0], [0.0, 20.0]]))
        >>> m.update(torch.arange(2), torch.tensor([[0.0, 0.0], [0.0, 20.0]]))
        >>> # the same two points: k = e^-2 (|a - b|^2 = 400 = 4 sigma^2) within each set, and across the sets
        >>> # 1, e^-2, e^-2, 1 (mean (1 + e^-2) / 2): 1000 (2 e^-2 - (1 + e^-2)) = 1000 (e^-2 - 1)
        >>> round(m.statistic(m.compute()[1].numpy()), 6)
        -864.664717
    """

    name = "cmmd"
    direction = "lower"
    units = "1000 x MMD^2 (unbiased), Gaussian kernel sigma 10, in CLIP ViT-L/14@336px embeddings (L2-normalised)"

    def __init__(self, judge: dict[str, Any] | None = None, reference: torch.Tensor | None = None, **kwargs):
        super().__init__(judge=judge, **kwargs)
        self.reference = None if reference is None else reference.double().cpu().numpy()
        if self.reference is not None:
            self.reference_term = off_diagonal_mean(self.reference)

    def update(self, ids: torch.Tensor, embeddings: torch.Tensor) -> None:
        x = torch.as_tensor(embeddings, dtype=torch.float64).reshape(len(ids), -1)
        cross = kernel_row_means(x.cpu().numpy(), self.reference)
        super().update(ids, torch.cat([x, torch.from_numpy(cross)[:, None].to(x)], 1))

    def statistic(self, rows: np.ndarray) -> float:
        x, cross = rows[:, :-1], rows[:, -1]
        return CMMD_SCALE * (off_diagonal_mean(x) + self.reference_term - 2 * float(cross.mean()))

"""Bootstrap statistics over items: confidence intervals and paired method-vs-method comparisons."""
from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_ci(values, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over items. A single item (or constant values) gives a zero-width CI."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    idx = _rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_difference_ci(a, b, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same items (same seeds) and its paired bootstrap CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs values on the same items, got {a.shape} and {b.shape}")
    diff = a - b
    low, high = bootstrap_ci(diff, resamples=resamples, level=level, seed=seed)
    return float(diff.mean()), low, high


def is_tie(a, b, **kwargs) -> bool:
    """True when the paired CI of the mean difference contains zero."""
    _, low, high = paired_difference_ci(a, b, **kwargs)
    return low <= 0.0 <= high

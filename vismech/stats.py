"""Intervals and paired comparisons, chosen by their measured coverage (tests/test_coverage.py).

Every number on the board is a mean over pseudo-items, so one interval rule and one tie test serve every metric:
- a per-item metric (accuracy, a CLIP score, a path's JAS) is the mean of its item values: a Wilson score interval
  when every value is 0 or 1 (it stays honest at 0 of 64 and at 64 of 64, where a bootstrap collapses to a point),
  else a Student-t interval;
- FD, the norm of a mean vector, takes a score interval (`squared_norm_interval`), the only one of those tried
  that covers at a true FD of 0 as well as away from it;
- another set-level statistic (FID, KID: a function of the whole item set, biased in n when it is a plug-in) is
  jackknifed: the items are dealt into at most `MAX_GROUPS` interleaved groups, each left out in turn, and the
  pseudo-values g T - (g - 1) T_-k remove the statistic's 1/n bias (exactly for a degree-2 statistic such as FD^2
  or KID); their mean is the estimate and their Student-t interval the CI. The interval is reported on the
  metric's own scale through a monotone transform (FD = sqrt(FD^2), clipped at 0);
- recall, a k-nearest-neighbour fraction of the reference, keeps its plug-in with the jackknife's (conservative)
  standard error (`fraction_jackknife_estimate`).
Two records on the same items compare by the paired t interval of the difference of their (pseudo-)values: the
same interval rule applied to item-by-item differences, so set-level metrics get ties as per-item ones do.
No draw is random: the same values give the same interval on any machine.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy

LEVEL = 0.95
# The jackknife's groups: with more, the t interval over-covers a plug-in FID (0.99 at n = 192 with one item a
# group, 0.98 at n = 64 with 24 or 64 groups); 16 gave 0.95-0.97 at n = 64, 192 and 1000 over 300 replications.
MAX_GROUPS = 16


@dataclass(frozen=True)
class Estimate:
    """A point value and its interval; `low`/`high` are None where no honest interval exists (`note` says why)."""

    value: float
    low: float | None
    high: float | None
    method: str  # "wilson", "t", "jackknife-t", "jackknife-se", "score" or "none"
    note: str | None = None


def is_binary(values: np.ndarray) -> bool:
    return bool(values.size) and bool(np.all((values == 0) | (values == 1)))


def wilson(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion from 0/1 values."""
    n, k = values.size, float(values.sum())
    z = _scipy.norm.ppf(0.5 + level / 2)
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean (n - 1 degrees of freedom); constant values give a zero-width interval."""
    n, mean = values.size, float(values.mean())
    if n < 2:
        raise ValueError("a t interval needs at least two values")
    half = _scipy.t.ppf(0.5 + level / 2, n - 1) * float(values.std(ddof=1)) / np.sqrt(n)
    return mean - half, mean + half


def mean_estimate(values, level: float = LEVEL) -> Estimate:
    """The mean of per-item values and its interval (Wilson for 0/1 values, else Student-t)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("an estimate needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, None, None, "none", "one item: no interval")
    if is_binary(x):
        low, high = wilson(x, level)
        return Estimate(mean, min(low, mean), max(high, mean), "wilson")
    low, high = t_interval(x, level)
    return Estimate(mean, min(low, mean), max(high, mean), "t")


def jackknife_groups(n: int, max_groups: int | None = None) -> list[np.ndarray]:
    """Positions 0..n-1 dealt round-robin into min(n, max_groups) groups: interleaved, so a group spans the item
    order (prompts, classes) instead of one block of it; the same n always gives the same groups."""
    g = min(n, max_groups or MAX_GROUPS)
    return [np.arange(k, n, g) for k in range(g)]


def pseudo_values(rows: np.ndarray, statistic: Callable[[np.ndarray], float],
                  max_groups: int | None = None) -> np.ndarray:
    """Delete-a-group jackknife pseudo-values g T(all) - (g - 1) T(all but group k), one per group."""
    n = len(rows)
    groups = jackknife_groups(n, max_groups)
    g = len(groups)
    if g < 2:
        raise ValueError("a jackknife needs at least two items")
    full = statistic(rows)
    keep = np.ones(n, dtype=bool)
    out = np.empty(g)
    for k, group in enumerate(groups):
        keep[group] = False
        out[k] = g * full - (g - 1) * statistic(rows[keep])
        keep[group] = True
    return out


def pseudo_estimate(pseudo, transform: Callable[[float], float] = float, level: float = LEVEL) -> Estimate:
    """Jackknife estimate (mean of the pseudo-values) and its t interval, both through the monotone `transform`."""
    p = np.asarray(pseudo, dtype=np.float64)
    low, high = t_interval(p, level)
    value = transform(float(p.mean()))
    return Estimate(value, min(transform(low), value), max(transform(high), value), "jackknife-t")


def fraction_jackknife_estimate(plugin: float, pseudo, level: float = LEVEL) -> Estimate:
    """A set-level fraction (recall) whose expectation is what a benchmark compares: the plug-in at the run's n,
    with the jackknife's standard error and a t interval, clipped to [0, 1].

    A k-nearest-neighbour statistic is not a smooth function of a mean, so the pseudo-values' mean extrapolates a
    bias that is not 1/n (it covered 0.70-0.82 in simulation); around the plug-in the interval is conservative,
    as the jackknife variance is biased upwards (Efron-Stein): 15-40 % wider than the true standard deviation
    at n = 64 and 192, coverage 0.97-1.0 (tests/test_coverage.py)."""
    p = np.asarray(pseudo, dtype=np.float64)
    low, high = t_interval(p, level)
    half = (high - low) / 2
    return Estimate(float(plugin), max(0.0, plugin - half), min(1.0, plugin + half), "jackknife-se")


def squared_norm_interval(y, level: float = LEVEL) -> Estimate:
    """|E y|^2 from rows y (n, k), reported as |E y|: the unbiased U-statistic and a score interval.

    U = sum_{i != j} y_i.y_j / n(n - 1) has variance (4 (n - 1) z1 + 2 z2) / n(n - 1) with z1 = mu' C mu and
    z2 = tr C^2 (+ terms in |mu|^4 that cancel). As Wilson's interval does for a proportion, the variance is taken
    at each candidate value v = |mu|^2 (z1 = v w, w the variance along the mean's direction) instead of at the
    estimate, so the interval's ends are the roots of (U - v)^2 = z^2 (4 (n - 1) w v + 2 tr C^2) / n(n - 1). A
    Wald interval fails here: at a true distance of 0 its variance is largest exactly where U is, and it never
    excludes 0 (coverage 1.0 instead of 0.95, test_coverage.py).
    """
    y = np.asarray(y, dtype=np.float64)
    n, k = y.shape
    if n < 3:
        raise ValueError("a squared-norm interval needs at least three rows")
    total = y.sum(0)
    u = float((total @ total - (y * y).sum()) / (n * (n - 1)))
    mean, cov = y.mean(0), np.cov(y, rowvar=False).reshape(k, k)
    norm = float(mean @ mean)
    w = float(mean @ cov @ mean) / norm if norm > 0 else float(np.trace(cov)) / k
    z2 = _scipy.norm.ppf(0.5 + level / 2) ** 2 / (n * (n - 1))
    b, c = 2 * u + z2 * 4 * (n - 1) * w, u * u - z2 * 2 * float(np.trace(cov @ cov))
    half = np.sqrt(max(b * b - 4 * c, 0.0)) / 2
    value = sqrt_clipped(u)
    return Estimate(value, min(sqrt_clipped(b / 2 - half), value), max(sqrt_clipped(b / 2 + half), value), "score")


def sqrt_clipped(x: float) -> float:
    """The reported scale of a squared distance: its estimate may fall below 0 where the truth is near 0."""
    return float(np.sqrt(max(x, 0.0)))


TRANSFORMS: dict[str, Callable[[float], float]] = {"identity": float, "sqrt": sqrt_clipped}


def paired_difference(a, b, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of a - b over the same items (or the same jackknife groups) and its paired t interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs values on the same items, got {a.shape} and {b.shape}")
    diff = a - b
    if diff.size < 2:
        raise ValueError("paired comparison needs at least two items")
    low, high = t_interval(diff, level)
    return float(diff.mean()), low, high


def is_tie(a, b, level: float = LEVEL) -> bool:
    """True when the paired interval of the mean difference contains zero."""
    _, low, high = paired_difference(a, b, level)
    return bool(low <= 0.0 <= high)

"""Trade-off tasks compare methods at matched quality: each method's primary metric read off its sweep's curve
where the quality bounds hold, never at its unedited point.

A sweep in strength order is a piecewise-linear curve through its points. Between two neighbours every metric is
interpolated item by item (per-item values, or a set-level metric's jackknife pseudo-values), so the
interpolated point has an interval and pairs with other records exactly as a measured point does. Along a
segment each bound is linear in the weight, so the weights that meet every bound form one interval, and the best
primary value on it lies at one of its ends: the candidates are the measured points within budget and the ends
of each segment's feasible interval. The identity point (strength 0 of an edit) is never a candidate, except for
a method whose every point is the identity (the no-op): an edit must be ranked by what it does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .stats import TRANSFORMS, Estimate, fraction_jackknife_estimate, mean_estimate, pseudo_estimate

Summary = dict[str, Any]  # one metric's summary, as ItemMetric.summarize gives it
Point = dict[str, Summary]  # every metric at one sweep point
NO_POINT = "no point within budget"


@dataclass(frozen=True)
class Bound:
    """`metric` must stay at most / at least `limit` (a quality level derived from the unedited point)."""

    metric: str
    limit: float
    keep: Literal["at most", "at least"]

    def slack(self, value: float) -> float:
        """>= 0 where the bound holds."""
        return self.limit - value if self.keep == "at most" else value - self.limit

    def describe(self) -> str:
        return f"{self.metric} {self.keep} {self.limit:.4g}"


def interpolate(a: Summary, b: Summary, weight: float) -> Summary:
    """`a` and `b` (the same metric on the same items at two sweep points) at (1 - weight) a + weight b; a set-level
    metric's pseudo-values are interpolated on the scale it jackknifes (its `transform` maps them to its value)."""
    if weight == 0:
        return a
    if weight == 1:
        return b
    out = {k: v for k, v in a.items() if k not in ("item_values", "pseudo_values", "plugin_value")}
    if a.get("item_values") is not None:
        values = (1 - weight) * np.asarray(a["item_values"]) + weight * np.asarray(b["item_values"])
        estimate, out["item_values"] = mean_estimate(values), values.tolist()
    elif a.get("pseudo_values") is not None and a.get("ci_method") == "jackknife-se":  # recall: around its plug-in
        pseudo = (1 - weight) * np.asarray(a["pseudo_values"]) + weight * np.asarray(b["pseudo_values"])
        out["plugin_value"] = (1 - weight) * a["plugin_value"] + weight * b["plugin_value"]
        estimate, out["pseudo_values"] = fraction_jackknife_estimate(out["plugin_value"], pseudo), pseudo.tolist()
    elif a.get("pseudo_values") is not None:
        pseudo = (1 - weight) * np.asarray(a["pseudo_values"]) + weight * np.asarray(b["pseudo_values"])
        estimate, out["pseudo_values"] = pseudo_estimate(pseudo, TRANSFORMS[a.get("transform", "identity")]), pseudo.tolist()
    else:  # no interval at either end (FID below its items-per-dimension): the value alone
        estimate = Estimate((1 - weight) * a["value"] + weight * b["value"], None, None, "none", a.get("ci_note"))
    out.update(value=estimate.value, ci_low=estimate.low, ci_high=estimate.high, ci_method=estimate.method,
               ci_note=estimate.note)
    return out


def _feasible_weights(a: Point, b: Point, bounds: list[Bound]) -> tuple[float, float] | None:
    """The weights w in [0, 1] at which (1 - w) a + w b meets every bound (linear in w), or None."""
    low, high = 0.0, 1.0
    for bound in bounds:
        sa, sb = bound.slack(a[bound.metric]["value"]), bound.slack(b[bound.metric]["value"])
        if sa < 0 and sb < 0:
            return None
        if sa < 0 or sb < 0:  # the slack crosses 0 at w = sa / (sa - sb)
            cross = sa / (sa - sb)
            low, high = (max(low, cross), high) if sa < 0 else (low, min(high, cross))
    return (low, high) if low <= high else None


def matched_point(strengths: list[float], points: list[Point], primary: str, direction: str, bounds: list[Bound],
                  identity: list[bool]) -> dict[str, Any]:
    """The headline (fields of `vismech.results.Headline` but `rule`): the best primary value on the sweep's curve
    where every bound holds, the identity point excluded unless every point is the identity."""
    order = sorted(range(len(strengths)), key=lambda i: strengths[i])
    allow_identity = all(identity)
    sign = 1 if direction == "higher" else -1
    candidates: list[tuple[int, int, float]] = []  # (point i, point j, weight of j)
    for i in order:
        if (allow_identity or not identity[i]) and all(b.slack(points[i][b.metric]["value"]) >= 0 for b in bounds):
            candidates.append((i, i, 0.0))
    for i, j in zip(order, order[1:]):
        span = _feasible_weights(points[i], points[j], bounds)
        if span is None:
            continue
        for w in span:
            if 0 < w < 1 or (w == 0 and not identity[i]) or (w == 1 and not identity[j]):
                candidates.append((i, j, w))
    if not candidates:
        return {"strength": strengths[order[0]], "status": NO_POINT}

    def at(c: tuple[int, int, float]) -> Point:
        i, j, w = c
        return {name: interpolate(points[i][name], points[j][name], w) for name in points[i]}

    def score(c: tuple[int, int, float]) -> tuple[float, float]:
        i, j, w = c
        return (-sign * at(c)[primary]["value"], (1 - w) * strengths[i] + w * strengths[j])

    best = min(candidates, key=score)
    i, j, w = best
    if i == j or w in (0.0, 1.0):
        return {"strength": strengths[j if w == 1.0 else i], "status": "sweep point"}
    return {"strength": (1 - w) * strengths[i] + w * strengths[j], "status": "interpolated",
            "between": (strengths[i], strengths[j]), "weight": w, "metrics": at(best)}

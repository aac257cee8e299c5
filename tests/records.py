"""Hand-built result records for schema and leaderboard tests, and the comparison of two runs' records."""
from __future__ import annotations

import math

from vismech.results import (Cost, Headline, ItemSet, MethodInfo, MetricResult, Provenance, ResultRecord, Seeds,
                             SubjectInfo, SweepPoint)
from vismech.stats import mean_estimate


def metric(name, values, direction="higher", fingerprint="fp-a"):
    e = mean_estimate(values)
    return MetricResult(name=name, value=e.value, ci_low=e.low, ci_high=e.high, ci_level=0.95, ci_method=e.method,
                        n=len(values), direction=direction, units="u", fingerprint=fingerprint,
                        fingerprint_items={"metric": name}, item_ids=list(range(len(values))),
                        item_values=list(values))


def record(method="m", values=(0.1, 0.2, 0.3, 0.4), *, track="mini", task="t", subject="s", direction="higher",
           fingerprint="fp-a", control=False, kind="reproduced", digest=None) -> ResultRecord:
    m = metric("score", list(values), direction, fingerprint)
    return ResultRecord(
        task=task, benchmark_version="1", primary_metric="score", protocol="p",
        method=MethodInfo(name=method, source="vismech", control=control, config={}, config_digest=digest or method * 8,
                          finding_digest="f"),
        subject=SubjectInfo(id=subject, track=track, weights_digest="w" * 64, source="src"),
        items=ItemSet(name="items", size=len(values), digest="i" * 64),
        seeds=Seeds(run_seed=0, scheme="x"),
        sweep=[SweepPoint(strength=1.0, metrics={"score": m})],
        headline=Headline(strength=1.0, rule="r"),
        cost=Cost(wall_time_s=1, fit_time_s=0, fit_reused=False, fit_forward_passes=0, fit_backward_passes=0,
                  forward_passes=2, forward_rows=8, backward_passes=0,
                  peak_memory_mb=1, device="cpu", world_size=1),
        provenance=Provenance(git_commit="c" * 40, git_dirty=False, libraries={}, python="3", platform="x",
                              created="2026-01-01T00:00:00+00:00", kind=kind),
        config={},
    )


def assert_same_sweep(a: dict, b: dict, exact: tuple[str, ...], rtol: float) -> None:
    """Two records' sweeps agree: the same points, metrics and item ids; the `exact` metrics bit for bit (values,
    mean and CI), the others' item values and means within `rtol` (relative; 1e-7 absolute near zero), the
    tolerance where float32 kernels may differ in the last bits (another batch size, another process count)."""
    def close(x: float, y: float) -> bool:
        return math.isclose(x, y, rel_tol=rtol, abs_tol=1e-7)

    assert [p["strength"] for p in a["sweep"]] == [p["strength"] for p in b["sweep"]]
    for pa, pb in zip(a["sweep"], b["sweep"]):
        assert pa["metrics"].keys() == pb["metrics"].keys(), pa["strength"]
        for name, m in pa["metrics"].items():
            o, key = pb["metrics"][name], (pa["strength"], name)
            assert m.get("item_ids") == o.get("item_ids"), key
            if name in exact:
                assert m == o, key
                continue
            assert close(m["value"], o["value"]), (key, m["value"], o["value"])
            if m.get("item_values") is not None:  # set-level metrics (FID, FD) have no per-item list
                assert all(close(x, y) for x, y in zip(m["item_values"], o["item_values"])), key

"""Hand-built result records for schema and leaderboard tests."""
from __future__ import annotations

from vismech.results import (Cost, Headline, ItemSet, MethodInfo, MetricResult, Provenance, ResultRecord, Seeds,
                             SubjectInfo, SweepPoint)
from vismech.stats import bootstrap_ci


def metric(name, values, direction="higher", fingerprint="fp-a"):
    low, high = bootstrap_ci(values)
    return MetricResult(name=name, value=sum(values) / len(values), ci_low=low, ci_high=high, ci_level=0.95,
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

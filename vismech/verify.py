"""`vismech verify RECORD.json`: re-run a record's exact config and check every claimed number.

The re-run uses the record's config and seeds with a fresh findings cache (the fit is part of what is verified)
and no loggers. Each metric at each sweep point passes when the re-run's mean lies inside the claimed 95% CI; with
`--limit N` the re-run covers the first N items and the CI is recomputed on the claimed values of those same items
(set-level metrics, which depend on every item of the run, are skipped then). The outcome is written beside the
record as `<record>.verification.json`, tied to the record's sha256: the leaderboard marks a row verified only
while the record file is the one that was checked.

A record is data: its config is only read as Hydra values for the suite's own loaders and methods. A config that
asks Hydra to instantiate anything (`_target_`) is refused.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import VismechError
from .io import atomic_write_text
from .results import ResultRecord, load_record, provenance
from .stats import mean_estimate
from .verification import TOLERANCE, MetricCheck, Verification, sha256_of, verification_path


def _refuse_targets(node: Any, where: str = "config") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                raise VismechError(f"record {where} asks to instantiate '{value}'; records are data and are never "
                                   f"executed")
            _refuse_targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_targets(value, f"{where}[{i}]")


def rerun_config(record: ResultRecord, workdir: Path, limit: int | None):
    from omegaconf import OmegaConf

    _refuse_targets(record.config)
    for key in ("task", "method", "model", "trainer", "seed"):
        if key not in record.config:
            raise VismechError(f"record config has no '{key}'; it cannot be re-run")
    cfg = OmegaConf.create(record.config)
    cfg.paths = {"results_dir": str(workdir / "results"), "cache_dir": str(workdir / "cache"), "leaderboard": None,
                 "runs_dir": str(workdir / "runs")}
    cfg.logger = None
    if limit is not None:
        cfg.task.limit = limit
    return cfg


def compare(claimed: ResultRecord, rerun: ResultRecord, subset: bool) -> tuple[list[MetricCheck], list[str]]:
    from .registry import METRICS

    checks, skipped = [], []
    points = {p.strength: p for p in rerun.sweep}
    for point in claimed.sweep:
        if point.strength not in points:
            raise VismechError(f"the re-run has no sweep point at strength {point.strength}")
        for name, mine in point.metrics.items():
            theirs = points[point.strength].metrics.get(name)
            if theirs is None:
                raise VismechError(f"the re-run has no metric '{name}' at strength {point.strength}")
            if subset and METRICS.get(name).set_level:
                skipped.append(f"{name}@{point.strength:g}")
                continue
            low, high, value, diff = mine.ci_low, mine.ci_high, mine.value, None
            if mine.item_ids is not None and theirs.item_ids is not None:
                claimed_of = dict(zip(mine.item_ids, mine.item_values))
                missing = [i for i in theirs.item_ids if i not in claimed_of]
                if missing:
                    raise VismechError(f"the re-run has items the record lacks: {missing[:5]}")
                values = [claimed_of[i] for i in theirs.item_ids]
                diff = max(abs(a - b) for a, b in zip(values, theirs.item_values))
                if subset:
                    value = sum(values) / len(values)
                    estimate = mean_estimate(values)
                    low, high = estimate.low, estimate.high
            if low is None:  # no honest interval (FID at few items a dimension): the value itself must repeat
                passed = abs(theirs.value - value) <= 1e-6 * max(1.0, abs(value))  # float32 features' last bits
            else:
                passed = low - TOLERANCE <= theirs.value <= high + TOLERANCE
            checks.append(MetricCheck(strength=point.strength, metric=name, claimed=value, ci_low=low, ci_high=high,
                                      rerun=theirs.value, max_item_difference=diff, passed=passed))
    return checks, skipped


def verify(record_path: str | Path, limit: int | None = None) -> Verification:
    """Re-run the record and write its verification beside it; returns it (passed or not)."""
    from .runner import execute

    record_path = Path(record_path)
    claimed = load_record(record_path)
    if claimed.provenance.kind == "reported":
        raise VismechError(f"'{record_path}' holds numbers reported by a paper; there is no run to repeat")
    digest = sha256_of(record_path)
    with tempfile.TemporaryDirectory(prefix="vismech-verify-") as tmp:
        outcome = execute(rerun_config(claimed, Path(tmp), limit))
    checks, skipped = compare(claimed, outcome.record, subset=limit is not None)
    result = Verification(record_file=record_path.name, record_sha256=digest, passed=all(c.passed for c in checks),
                          items="all" if limit is None else f"first {limit}", skipped=skipped, checks=checks,
                          git_commit=provenance().git_commit, device=outcome.record.cost.device,
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    atomic_write_text(verification_path(record_path), result.model_dump_json(indent=2) + "\n")
    return result


def table(result: Verification) -> str:
    rows = [f"{'strength':>8}  {'metric':<20} {'claimed':>10} {'CI':>23} {'re-run':>10} {'max item diff':>14}  ok"]
    for c in result.checks:
        diff = "-" if c.max_item_difference is None else f"{c.max_item_difference:.2e}"
        ci = "(no interval)" if c.ci_low is None else f"[{c.ci_low:>9.4f}, {c.ci_high:>9.4f}]"
        rows.append(f"{c.strength:>8g}  {c.metric:<20} {c.claimed:>10.4f} {ci:>23} "
                    f"{c.rerun:>10.4f} {diff:>14}  {'yes' if c.passed else 'NO'}")
    if result.skipped:
        rows.append(f"skipped (set-level, not reproducible on a subset): {', '.join(result.skipped)}")
    rows.append(f"{'VERIFIED' if result.passed else 'MISMATCH'} on {result.items} items")
    return "\n".join(rows)

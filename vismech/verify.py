"""`vismech verify RECORD.json|FOLDER ...`: re-run each record's exact config and check every claimed number.

Before anything runs, each record is loaded and validated, its summaries recomputed from its own item values
(`vismech.results.summary_mismatch`): a record whose value or interval its items do not give is refused.
The re-run uses the record's config and seeds with a fresh findings cache (the fit is part of what is verified)
and no loggers. On all items, each metric at each sweep point passes when the re-run's mean lies inside the
claimed 95% CI and the re-run has the same items. With `--limit N` the re-run covers the first N items and passes
only when it gives the claimed values of those items (within float32 kernel noise): a subset is checked item by
item, never by its summary alone. Set-level metrics, which depend on every item of the run, are skipped then.
The outcome is written beside the record (`vismech.verification_file`), bound to what the record measured; a
partial check never replaces a full verification of the same record.

A record is data: its config is only read as Hydra values for the suite's own loaders and methods. A config that
asks Hydra to instantiate anything (`_target_`) is refused.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import VismechError
from .results import ResultRecord, load_record, provenance
from .stats import mean_estimate
from .verification_file import ALL_ITEMS, MetricCheck, Verification, measured_digest, write_verification

TOLERANCE = 1e-9  # float noise on a CI bound is not a mismatch
# a re-run on a subset must give the claimed items' values: float32 kernels (another device, another batch size)
# differ in the last bits, about 1e-6 relative; more than 1e-4 is another computation
ITEM_TOLERANCE = 1e-4


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
            same_items = True
            if mine.item_values is None and mine.item_ids is not None and theirs.item_ids is not None:
                # a set-level metric keeps its items' ids, not values: the same items, the value inside the CI
                same_items = theirs.item_ids == mine.item_ids
                if mine.pseudo_values is not None and theirs.pseudo_values is not None:
                    diff = max(abs(a - b) for a, b in zip(mine.pseudo_values, theirs.pseudo_values))
            elif mine.item_ids is not None and theirs.item_ids is not None:
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
                    same_items = all(abs(a - b) <= ITEM_TOLERANCE * max(1.0, abs(a))
                                     for a, b in zip(values, theirs.item_values))
                else:
                    same_items = theirs.item_ids == mine.item_ids
            elif subset:  # no items to compare: a subset's summary alone proves nothing
                same_items = False
            if low is None:  # no honest interval (FID at few items a dimension): the value itself must repeat
                passed = same_items and abs(theirs.value - value) <= 1e-6 * max(1.0, abs(value))
            else:
                passed = same_items and low - TOLERANCE <= theirs.value <= high + TOLERANCE
            checks.append(MetricCheck(strength=point.strength, metric=name, claimed=value, ci_low=low, ci_high=high,
                                      rerun=theirs.value, max_item_difference=diff, passed=passed))
    return checks, skipped


def verify(record_path: str | Path, limit: int | None = None) -> tuple[Verification, bool]:
    """Re-run the record and write its verification beside it. Returns (verification, written): a partial
    verification is not written over a full one of the same record."""
    from .runner import execute

    record_path = Path(record_path)
    claimed = load_record(record_path)
    check_rerunnable(record_path, claimed)
    with tempfile.TemporaryDirectory(prefix="vismech-verify-") as tmp:
        outcome = execute(rerun_config(claimed, Path(tmp), limit))
    if limit is not None and outcome.record.items.size > limit:
        raise VismechError(f"task '{claimed.task}' does not honour --limit (the re-run has {outcome.record.items.size} "
                           f"items, not at most {limit}); verify it on all items")
    checks, skipped = compare(claimed, outcome.record, subset=limit is not None)
    result = Verification(record_file=record_path.name, measured_digest=measured_digest(claimed),
                          passed=all(c.passed for c in checks),
                          items=ALL_ITEMS if limit is None else f"first {limit}", skipped=skipped, checks=checks,
                          git_commit=provenance().git_commit, device=outcome.record.cost.device,
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return result, write_verification(record_path, claimed, result)


def check_rerunnable(record_path: Path, record: ResultRecord) -> None:
    """Refuse, before any work, a record that has no run to repeat."""
    if record.provenance.kind == "reported":
        raise VismechError(f"'{record_path}' holds numbers reported by a paper; there is no run to repeat")
    _refuse_targets(record.config)


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

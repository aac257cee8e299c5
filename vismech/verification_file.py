"""Verification files: what `vismech verify` found for a record, kept beside it as `<record>.verification.json`.

A verification is bound to what the record measured, not to when it was written: `measured_digest` hashes the
record without its time stamps and timings (creation time, wall and fit seconds, peak memory, whether the fit or
batches were reused). A record rewritten with the same config, items, values and code keeps its verified mark; a
record whose numbers, config or code version changed loses it. A partial verification (`--limit`) never replaces a
full one of the same record.

This module is the one place that reads and writes these files: `verify` writes them and the leaderboard reads
them, without either importing the other.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from .io import atomic_write_text
from .results import ResultRecord, load_record

SUFFIX = ".verification.json"
ALL_ITEMS = "all"
# parts of a record that say when and how fast it was made, not what it measured
UNMEASURED = {"provenance": ("created",),
              "cost": ("wall_time_s", "fit_time_s", "peak_memory_mb", "fit_reused", "resumed_batches")}


class MetricCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    strength: float
    metric: str
    claimed: float
    ci_low: float | None  # None: the metric has no honest interval at its n, and its value must repeat
    ci_high: float | None
    rerun: float
    max_item_difference: float | None
    passed: bool


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    record_file: str
    measured_digest: str | None = None
    record_sha256: str | None = None  # files written before measured digests: bound to the record's exact bytes
    passed: bool
    items: str  # "all" or "first N"
    skipped: list[str]
    checks: list[MetricCheck]
    git_commit: str
    device: str
    created: str

    @property
    def full(self) -> bool:
        return self.items == ALL_ITEMS


def measured_digest(record: ResultRecord) -> str:
    """Hash of what the record measured: config, items, values, code version; not its time stamps or timings."""
    data = json.loads(record.model_dump_json())
    for section, keys in UNMEASURED.items():
        for key in keys:
            data[section].pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verification_path(record_path: str | Path) -> Path:
    record_path = Path(record_path)
    return record_path.with_name(record_path.name[: -len(".json")] + SUFFIX)


def read_verification(record_path: str | Path) -> Verification | None:
    """The verification file beside the record, whatever record it was made for; None if absent or unreadable."""
    path = verification_path(record_path)
    if not path.is_file():
        return None
    try:
        return Verification.model_validate_json(path.read_text())
    except (ValidationError, ValueError, OSError):
        return None


def binds(found: Verification, record_path: Path, record: ResultRecord) -> bool:
    """Whether `found` was made for this record's measured content."""
    if found.measured_digest is not None:
        return found.measured_digest == measured_digest(record)
    return found.record_sha256 is not None and found.record_sha256 == sha256_of(record_path)


def load_verification(record_path: str | Path, record: ResultRecord | None = None) -> Verification | None:
    """The verification of this record's measured content, or None (none made, unreadable, or made for other
    values, config or code)."""
    record_path = Path(record_path)
    found = read_verification(record_path)
    if found is None:
        return None
    return found if binds(found, record_path, record or load_record(record_path)) else None


def write_verification(record_path: str | Path, record: ResultRecord, result: Verification) -> bool:
    """Write `result` beside the record unless a full verification of the same measured content is there and
    `result` is partial; returns whether the file was written."""
    record_path = Path(record_path)
    existing = load_verification(record_path, record)
    if existing is not None and existing.full and not result.full:
        return False
    atomic_write_text(verification_path(record_path), result.model_dump_json(indent=2) + "\n")
    return True


def status(record_path: str | Path, record: ResultRecord) -> str:
    """The leaderboard's "verified" cell: "", "yes (all items)", "yes (first N items)" or "MISMATCH"."""
    found = load_verification(record_path, record)
    if found is None:
        return ""
    return f"yes ({found.items} items)" if found.passed else "MISMATCH"

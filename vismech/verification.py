"""Verification files: what `vismech verify` wrote beside a record, read by the verifier and by the board.

The board reads them here, without importing the verifier (which re-runs records through the runner).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

SUFFIX = ".verification.json"
TOLERANCE = 1e-9  # float noise on a CI bound is not a mismatch


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
    record_sha256: str
    passed: bool
    items: str  # "all" or "first N"
    skipped: list[str]
    checks: list[MetricCheck]
    git_commit: str
    device: str
    created: str


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verification_path(record_path: Path) -> Path:
    return record_path.with_name(record_path.name[: -len(".json")] + SUFFIX)


def load_verification(record_path: Path) -> Verification | None:
    """The verification of this exact record file, or None (none made, unreadable, or made for other bytes)."""
    path = verification_path(Path(record_path))
    if not path.is_file():
        return None
    try:
        found = Verification.model_validate_json(path.read_text())
    except ValueError:
        return None
    return found if found.record_sha256 == sha256_of(record_path) else None

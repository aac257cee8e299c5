"""Content-addressed store for expensive artifacts (findings): a changed input gives a new key, a hit skips the work."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .finding import META_FILE, Finding
from .io import atomic_directory

COST_FILE = "fit_cost.json"


def content_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def finding_path(self, key: str) -> Path:
        return self.root / "findings" / key[:2] / key

    def finding(self, key: str, produce: Callable[[], tuple[Finding, dict[str, Any]]]
                ) -> tuple[Finding, dict[str, Any], bool]:
        """Load the finding stored under `key` with the cost of making it, or produce and store both.

        `produce` returns (finding, cost). Returns (finding, cost, was_cached): a result that reuses a finding still
        reports what the finding cost. The finding and its cost appear together (one folder renamed into place),
        so a run killed at any moment leaves either both or neither; a folder without its cost file (written by an
        older vismech and interrupted) is made again."""
        path = self.finding_path(key)
        if (path / META_FILE).is_file() and (path / COST_FILE).is_file():
            return Finding.load(path), json.loads((path / COST_FILE).read_text()), True
        finding, cost = produce()
        with atomic_directory(path) as tmp:
            finding.save(tmp)
            (tmp / COST_FILE).write_text(json.dumps(cost, indent=2, sort_keys=True) + "\n")
        return finding, cost, False


def finding_key(subject_digest: str, method_name: str, method_version: str, config: dict, seed: int,
                data_digest: str, code: dict) -> str:
    """`code`: the method's `code_identity()`, so that a changed fit is never answered by an old finding."""
    return content_key(kind="finding", subject=subject_digest, method=method_name, method_version=method_version,
                       config=config, seed=seed, data=data_digest, vismech=__version__, code=code)

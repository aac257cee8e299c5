"""Content-addressed store for expensive artifacts (findings): a changed input gives a new key, a hit skips the work."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .finding import META_FILE, Finding


def content_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def finding_path(self, key: str) -> Path:
        return self.root / "findings" / key[:2] / key

    def finding(self, key: str, produce: Callable[[], Finding]) -> tuple[Finding, bool]:
        """Load the finding stored under `key`, or produce and store it. Returns (finding, was_cached)."""
        path = self.finding_path(key)
        if (path / META_FILE).is_file():
            return Finding.load(path), True
        finding = produce()
        finding.save(path)
        return finding, False


def finding_key(subject_digest: str, method_name: str, method_version: str, config: dict, seed: int,
                data_digest: str) -> str:
    return content_key(kind="finding", subject=subject_digest, method=method_name, method_version=method_version,
                       config=config, seed=seed, data=data_digest, vismech=__version__)

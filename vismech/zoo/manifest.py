"""The mini zoo's manifest: for each shipped model, its weights file, sha256, recipe, seed and measured quality."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import VismechError
from ..io import atomic_write_json

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def manifest_entry(name: str) -> dict[str, Any]:
    manifest = read_manifest()
    if name not in manifest:
        raise VismechError(f"mini model '{name}' has no shipped weights; build them with `vismech zoo build {name}`")
    return manifest[name]


def shipped_weights(name: str) -> Path:
    """Path of a shipped weights file, checked against the manifest's sha256."""
    entry = manifest_entry(name)
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise VismechError(f"weights of mini model '{name}' are missing at '{path}'; rebuild with `vismech zoo build {name}`")
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise VismechError(f"weights '{path}' do not match the manifest (sha256 {digest[:12]} != {entry['sha256'][:12]}); "
                           f"rebuild with `vismech zoo build {name}`")
    return path


def update_manifest(name: str, entry: dict[str, Any], path: Path = MANIFEST) -> None:
    manifest = read_manifest(path)
    manifest[name] = entry
    atomic_write_json(path, manifest)

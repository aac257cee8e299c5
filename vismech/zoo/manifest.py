"""The mini zoo's manifest: for each shipped model, the sha256 of every file in its folder, its recipe, seed,
training time and measured quality. Weights live in `weights/<name>/`."""
from __future__ import annotations

import fcntl
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


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, keyed by its path relative to the folder."""
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def read_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def manifest_entry(name: str) -> dict[str, Any]:
    manifest = read_manifest()
    if name not in manifest:
        raise VismechError(f"mini model '{name}' has no shipped weights; build them with `vismech zoo build {name}`")
    return manifest[name]


def shipped_folder(name: str) -> Path:
    """The folder of a shipped model, every file checked against the manifest's sha256."""
    entry = manifest_entry(name)
    folder = WEIGHTS_DIR / name
    found = folder_hashes(folder) if folder.is_dir() else {}
    for rel, digest in entry["files"].items():
        if rel not in found:
            raise VismechError(f"file '{rel}' of mini model '{name}' is missing from '{folder}'; "
                               f"rebuild with `vismech zoo build {name}`")
        if found[rel] != digest:
            raise VismechError(f"'{folder / rel}' does not match the manifest (sha256 {found[rel][:12]} != "
                               f"{digest[:12]}); rebuild with `vismech zoo build {name}`")
    return folder


def update_manifest(name: str, entry: dict[str, Any], path: Path = MANIFEST) -> None:
    """Read-modify-write under a lock, so that builds running side by side cannot drop each other's entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(path)
        manifest[name] = entry
        atomic_write_json(path, manifest)


def flat(value: Any, prefix: str = "") -> list[str]:
    """`key=value` lines of a nested mapping (`a.b=1`), lists as comma lists, floats to 4 digits: a manifest field
    a person can read."""
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in flat(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    if isinstance(value, float):
        value = f"{value:.4g}"
    return [f"{prefix.rstrip('.')}={value}" if prefix else str(value)]

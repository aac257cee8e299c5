"""The generation cache: every generated image stored once under a content key, read by every metric.

A key hashes what decides an image: the subject's weights digest, the method and its finding's digest, the
strength, sampler and steps, guidance, prompt, seed, dtype and the producer's version. A new metric on an old run
therefore generates nothing, a changed input never reuses a stale image, and a run killed at any moment restarts
where it stopped: each image is one file written atomically (temporary name, then rename), so a file that exists
is whole.

Layout: `<cache>/generations/<key[:2]>/<key>.safetensors`, one image tensor each (float32, exactly what the
sampler returned, so a cached and a fresh image are the same bits).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .errors import VismechError
from .io import atomic_write_bytes
from .store import content_key

TENSOR = "image"


def generation_key(**parts: Any) -> str:
    """The key of one image; `parts` must name everything the image depends on (see the module docstring)."""
    missing = {"subject", "method", "finding", "strength", "sampler", "steps", "guidance", "prompt", "seed",
               "dtype", "producer"} - set(parts)
    if missing:
        raise VismechError(f"a generation key needs {', '.join(sorted(missing))}")
    return content_key(kind="generation", **parts)


@dataclass
class CacheStats:
    images: int
    bytes: int
    partial: int  # temporary files of writes that never finished


class GenerationCache:
    def __init__(self, root: str | Path):
        self.root = Path(root) / "generations"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return load(data)[TENSOR]
        except (SafetensorError, KeyError, ValueError):
            raise VismechError(f"cached image '{path}' is corrupt; delete it (or run `vismech cache gc --all`) and "
                               f"run again") from None

    def put(self, key: str, image: torch.Tensor) -> None:
        if not torch.isfinite(image).all():
            raise VismechError(f"generated image for key {key[:12]} has non-finite values (NaN or inf)")
        atomic_write_bytes(self.path(key), save({TENSOR: image.detach().cpu().float().contiguous()}))

    def images(self, keys: Sequence[str], make: Callable[[list[int]], torch.Tensor],
               batch_size: int = 64) -> tuple[torch.Tensor, int]:
        """Images for `keys` in order: cached ones are read, the others made by `make(indices)` in batches of at
        most `batch_size` and stored as each batch finishes. Returns (images, how many were made)."""
        found = [self.get(k) for k in keys]
        todo = [i for i, image in enumerate(found) if image is None]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            made = make(chunk)
            if made.shape[0] != len(chunk):
                raise VismechError(f"the generator made {made.shape[0]} images for {len(chunk)} requests")
            for i, image in zip(chunk, made):
                self.put(keys[i], image)
                found[i] = self.get(keys[i])  # what later runs will read, bit for bit
        return torch.stack(found), len(todo)

    def stats(self) -> CacheStats:
        files = list(self.root.rglob("*")) if self.root.is_dir() else []
        whole = [p for p in files if p.suffix == ".safetensors"]
        partial = [p for p in files if p.is_file() and p.name.endswith(".tmp")]
        return CacheStats(len(whole), sum(p.stat().st_size for p in whole), len(partial))

    def gc(self, older_than_days: float | None = None, everything: bool = False) -> int:
        """Delete unfinished writes, and images unused for `older_than_days` (or all images); returns files removed."""
        if not self.root.is_dir():
            return 0
        cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
        removed = 0
        for path in self.root.rglob("*"):
            if not path.is_file():
                continue
            stale = path.name.endswith(".tmp") or everything or (cutoff is not None and path.stat().st_atime < cutoff)
            if stale:
                os.unlink(path)
                removed += 1
        return removed

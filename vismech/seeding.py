"""Per-item seeds: derived from (run seed, item id) only, never from rank or batch index."""
from __future__ import annotations

import hashlib

import torch

SCHEME = "sha256(f'{run_seed}|{item_id}')[:8] little-endian, masked to 63 bits"


def item_seed(run_seed: int, item_id: int) -> int:
    digest = hashlib.sha256(f"{int(run_seed)}|{int(item_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def item_generator(run_seed: int, item_id: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(item_seed(run_seed, item_id))

"""scikit-learn's bundled 8x8 digits (1,797 images, offline) as items with stable ids."""
from __future__ import annotations

import hashlib
from functools import lru_cache

import torch
from torch.utils.data import Dataset

from ..errors import VismechError

SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    return images, torch.tensor(digits.target, dtype=torch.int64)


def split_ids(split: str) -> list[int]:
    """Every fourth image (id % 4 == 0) is held out for testing; the split depends on the id only."""
    if split not in SPLITS:
        raise VismechError(f"unknown digits split '{split}'; known splits: {', '.join(SPLITS)}")
    n = _load()[0].shape[0]
    return [i for i in range(n) if (i % 4 == 0) == (split == "test")]


class DigitsItems(Dataset):
    """Items {id, image, label} of one split; `limit` keeps the first items by id."""

    def __init__(self, split: str = "test", limit: int | None = None):
        ids = split_ids(split)
        if limit is not None:
            if limit < 1:
                raise VismechError(f"item limit must be >= 1, got {limit}")
            ids = ids[:limit]
        self.split, self.ids = split, ids
        self.name = f"sklearn-digits/{split}" + (f"[:{limit}]" if limit else "")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        images, labels = _load()
        i = self.ids[index]
        return {"id": i, "image": images[i], "label": labels[i]}

    def digest(self) -> str:
        images, labels = _load()
        h = hashlib.sha256(self.name.encode())
        idx = torch.tensor(self.ids)
        h.update(idx.numpy().tobytes())
        h.update(images[idx].numpy().tobytes())
        h.update(labels[idx].numpy().tobytes())
        return h.hexdigest()

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = _load()
        idx = torch.tensor(self.ids)
        return idx, images[idx], labels[idx]

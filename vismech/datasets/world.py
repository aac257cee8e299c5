"""The mini world: Fashion-MNIST garments, coloured and patterned by rule, with a deliberately skewed train split.

Each item id fixes a source garment (its class is the "item" attribute) and, through a hash of (world seed, id),
a foreground colour, a background and a pattern. Because every attribute is painted by a known rule, it can be
read back from the pixels exactly (`measure_*`), so a benchmark knows the ground truth of any image, generated
ones included. Source: the Debian package `dataset-fashion-mnist` (IDX files under
/usr/share/datasets/fashion-mnist, or the folder in $VISMECH_FASHION_MNIST), read with gzip and numpy only.

Splits take disjoint source images, following Fashion-MNIST's own train/test split:
  train  ids     0-49999  Fashion-MNIST train[:50000]  colours skewed (`WorldConfig.skew`): the biased data
  judge  ids 50000-59999  Fashion-MNIST train[50000:]  colours uniform: for training judges without the bias
  test   ids 60000-69999  Fashion-MNIST test           colours uniform: for evaluation and reference statistics
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .selection import describe_per_class, per_class_slice
from ..errors import VismechError

SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
SOURCE_ENV = "VISMECH_FASHION_MNIST"
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
# Pure hues only (one channel 0, one channel 1): a blend of a pure hue with black or white keeps its hue and
# adds no chroma, which is what makes `measure_colour` exact.
COLOURS = {"red": (1.0, 0.0, 0.0), "yellow": (1.0, 1.0, 0.0), "green": (0.0, 1.0, 0.0),
           "cyan": (0.0, 1.0, 1.0), "blue": (0.0, 0.0, 1.0), "magenta": (1.0, 0.0, 1.0)}
BACKGROUNDS = ("black", "white")
PATTERNS = ("plain", "checked")
SIZES = (16, 32)
SPLITS = {"train": (0, 50_000), "judge": (50_000, 60_000), "test": (60_000, 70_000)}
N_ITEMS = 70_000
HASH_SCHEME = "sha256(f'vismech-world|{seed}|{id}'): bytes 0-7 colour, 8-15 background, 16-23 pattern, " \
              "each little-endian uint64 >> 11 as a uniform in [0, 1)"
# With the checkerboard of `measure_pattern`, a plain garment has at least 0.32x as much chroma on the dark squares
# as on the light ones (minimum over all 70,000 sources; 0.65 at the 0.1% quantile), a clean checked one none.
CHECKED_BELOW = 0.25


@dataclass(frozen=True)
class WorldConfig:
    """What defines a world; equal configs give bit-identical items."""

    seed: int = 0
    size: int = 16  # 16 px: a small DDPM trains on a 2-core CPU in minutes; 32 px costs about 4x
    palette: tuple[str, ...] = ("red", "green", "blue", "yellow")
    skew: tuple[float, ...] = (0.7, 0.1, 0.1, 0.1)  # P(colour) on the train split, aligned with `palette`

    def __post_init__(self):
        object.__setattr__(self, "palette", tuple(self.palette))
        object.__setattr__(self, "skew", tuple(float(p) for p in self.skew))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise VismechError(f"world seed must be an integer, got {self.seed!r}")
        if self.size not in SIZES:
            raise VismechError(f"world image size must be one of {SIZES}, got {self.size!r}")
        unknown = [c for c in self.palette if c not in COLOURS]
        if unknown:
            raise VismechError(f"unknown world colour(s) {unknown}; known colours: {', '.join(COLOURS)}")
        if len(self.palette) < 2 or len(set(self.palette)) != len(self.palette):
            raise VismechError(f"world palette needs at least two distinct colours, got {self.palette}")
        if len(self.skew) != len(self.palette):
            raise VismechError(f"world skew has {len(self.skew)} probabilities for {len(self.palette)} colours")
        if any(not math.isfinite(p) or p < 0 for p in self.skew) or abs(sum(self.skew) - 1) > 1e-6:
            raise VismechError(f"world skew must be non-negative probabilities summing to 1, got {self.skew}")

    def colour_probs(self, split: str) -> tuple[float, ...]:
        _check_split(split)
        return self.skew if split == "train" else (1 / len(self.palette),) * len(self.palette)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise VismechError(f"unknown world split '{split}'; known splits: {', '.join(SPLITS)}")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if data[:3] != b"\x00\x00\x08":  # 0x08: unsigned bytes
        raise VismechError(f"{path} is not an IDX file of unsigned bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@lru_cache(maxsize=1)
def _source() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 garments in id order (train then test) as uint8 (N, 28, 28), and their classes."""
    root = Path(os.environ.get(SOURCE_ENV, SOURCE_DIR))
    files = [root / f"{p}-{k}-idx{d}-ubyte.gz" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise VismechError(f"Fashion-MNIST not found ({', '.join(missing)}); install the Debian package "
                           f"dataset-fashion-mnist or point ${SOURCE_ENV} at a folder with its IDX files")
    train_x, train_y, test_x, test_y = (_read_idx(f) for f in files)
    images, labels = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y]).astype(np.int64)
    if images.shape != (N_ITEMS, 28, 28) or labels.shape != (N_ITEMS,):
        raise VismechError(f"unexpected Fashion-MNIST shapes {images.shape}, {labels.shape} in {root}")
    return images, labels


@lru_cache(maxsize=8)
def _table(config: WorldConfig) -> dict[str, np.ndarray]:
    """Every attribute of every id, as int64 arrays indexed by id."""
    ids = np.arange(N_ITEMS)
    raw = b"".join(hashlib.sha256(f"vismech-world|{config.seed}|{i}".encode()).digest()[:24] for i in ids)
    u = (np.frombuffer(raw, dtype="<u8").reshape(N_ITEMS, 3) >> np.uint64(11)) * 2.0**-53
    colour = np.empty(N_ITEMS, dtype=np.int64)
    for split, (lo, hi) in SPLITS.items():
        cdf = np.cumsum(config.colour_probs(split))
        # side="right" skips zero-probability colours; the clip absorbs a cdf that ends at 1 - epsilon
        colour[lo:hi] = np.minimum(np.searchsorted(cdf, u[lo:hi, 0], side="right"), len(cdf) - 1)
    return {"label": _source()[1], "colour": colour,
            "background": (u[:, 1] < 0.5).astype(np.int64), "pattern": (u[:, 2] < 0.5).astype(np.int64)}


def _check_ids(ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= N_ITEMS):
        raise VismechError(f"world item ids run from 0 to {N_ITEMS - 1}")
    return ids


def _checker(size: int) -> np.ndarray:
    """The squares a checked garment leaves empty: an 8 x 8 board at any size."""
    cell = size // 8
    yy, xx = np.indices((size, size)) // cell
    return (yy + xx) % 2 == 1


def render(ids, config: WorldConfig = WorldConfig()) -> torch.Tensor:
    """Images (N, 3, size, size) in [0, 1]; exact arithmetic, so an id gives the same bits in any batch."""
    ids = _check_ids(ids)
    table = _table(config)
    ink = np.pad(_source()[0][ids].astype(np.int32), ((0, 0), (2, 2), (2, 2)))  # 28 -> 32, content untouched
    if config.size == 16:  # exact 2 x 2 box filter: an integer sum, then one division
        ink = ink[:, 0::2, 0::2] + ink[:, 1::2, 0::2] + ink[:, 0::2, 1::2] + ink[:, 1::2, 1::2]
    alpha = ink.astype(np.float32) / np.float32(255 * (4 if config.size == 16 else 1))
    alpha[(table["pattern"][ids] == 1)[:, None, None] & _checker(config.size)] = 0.0
    rgb = np.array([COLOURS[c] for c in config.palette], dtype=np.float32)[table["colour"][ids]]  # (N, 3)
    bg = table["background"][ids].astype(np.float32)[:, None, None, None]
    # bg + (fg - bg) * alpha takes only the values 0, alpha, 1 - alpha and 1: no rounding leaves [0, 1]
    return torch.from_numpy(bg + (rgb[:, :, None, None] - bg) * alpha[:, None])


def attributes(item_id: int, config: WorldConfig = WorldConfig()) -> dict[str, str]:
    i = int(_check_ids([item_id])[0])
    table = _table(config)
    return {"item": CLASSES[table["label"][i]], "colour": config.palette[table["colour"][i]],
            "background": BACKGROUNDS[table["background"][i]], "pattern": PATTERNS[table["pattern"][i]]}


def caption(item_id: int, config: WorldConfig = WorldConfig(), with_colour: bool = True,
            with_details: bool = False) -> str:
    """'a red sneaker'; without colour 'a sneaker' (its images follow the split's skew, like 'a photo of a
    doctor'); with details 'a checked red sneaker on a white background'."""
    a = attributes(item_id, config)
    words = ([a["pattern"]] if with_details else []) + ([a["colour"]] if with_colour else []) + [a["item"]]
    text = ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)
    return text + (f" on a {a['background']} background" if with_details else "")


def describe(item: str, colour: str | None = None, pattern: str | None = None, background: str | None = None) -> str:
    """A caption in the world's own wording (`caption`) from attribute values rather than an item id."""
    words = ([pattern] if pattern else []) + ([colour] if colour else []) + [item]
    text = ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)
    return text + (f" on a {background} background" if background else "")


def split_ids(split: str) -> list[int]:
    _check_split(split)
    lo, hi = SPLITS[split]
    return list(range(lo, hi))


class WorldItems(Dataset):
    """Items {id, image, label, colour, background, pattern, caption} of one split; `limit` keeps the first ids.

    label is the garment class (index into CLASSES), colour an index into config.palette, background into
    BACKGROUNDS, pattern into PATTERNS; caption is `caption(id)`.
    """

    def __init__(self, split: str = "test", config: WorldConfig = WorldConfig(), limit: int | None = None,
                 per_class: tuple[int, int | None] | None = None):
        ids = split_ids(split)
        if per_class is not None:
            ids = per_class_slice(ids, _table(config)["label"][ids], per_class)
        if limit is not None:
            if limit < 1:
                raise VismechError(f"item limit must be >= 1, got {limit}")
            ids = ids[:limit]
        self.split, self.config, self.ids = split, config, ids
        self.name = (f"fashion-world-s{config.seed}-{config.size}px/{split}{describe_per_class(per_class)}"
                     + (f"[:{limit}]" if limit else ""))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        i = self.ids[index]
        table = _table(self.config)
        item = {k: torch.tensor(int(v[i])) for k, v in table.items()}
        return {"id": i, "image": render([i], self.config)[0], **item, "caption": caption(i, self.config)}

    def attributes(self, item_id: int) -> dict[str, str]:
        return attributes(item_id, self.config)

    def caption(self, item_id: int, with_colour: bool = True, with_details: bool = False) -> str:
        return caption(item_id, self.config, with_colour, with_details)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The whole item set at once: id, image, label, colour, background, pattern."""
        idx = np.asarray(self.ids, dtype=np.int64)
        table = _table(self.config)
        return {"id": torch.from_numpy(idx), "image": render(idx, self.config),
                **{k: torch.from_numpy(v[idx]) for k, v in table.items()}}

    def digest(self) -> str:
        h = hashlib.sha256(f"{self.name}|{sorted(asdict(self.config).items())}".encode())
        idx = np.asarray(self.ids, dtype=np.int64)
        h.update(idx.tobytes())
        for v in _table(self.config).values():
            h.update(v[idx].tobytes())
        for start in range(0, len(idx), 8192):  # pixels too, in chunks to bound memory
            h.update(render(idx[start:start + 8192], self.config).numpy().tobytes())
        return h.hexdigest()


def _chroma_plane(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel on the chroma plane: the direction is its hue, half the length its chroma. For
    bg + (c - bg) * alpha with a pure hue c and an achromatic bg the direction is c's exactly and the
    chroma is alpha."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise VismechError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    r, g, b = images.float().unbind(1)
    return 2 * r - g - b, math.sqrt(3) * (g - b)


def _chroma(images: torch.Tensor, min_chroma: float) -> torch.Tensor:
    x, y = _chroma_plane(images)
    chroma = torch.sqrt(x * x + y * y) / 2
    return torch.where(chroma >= min_chroma, chroma, torch.zeros_like(chroma))


def measure_colour(images: torch.Tensor, palette: tuple[str, ...] = WorldConfig().palette,
                   min_chroma: float = 0.1) -> torch.Tensor:
    """(N, len(palette)): the share of each image's chroma whose hue is nearest each palette colour (rows sum
    to 1; uniform when nothing is coloured). One-hot on clean items; `.argmax(1)` is the colour label.
    Pixels below `min_chroma` (sampling noise on a grey background) are ignored."""
    x, y = _chroma_plane(images)
    tx, ty = _chroma_plane(torch.tensor([COLOURS[c] for c in palette]).view(-1, 3, 1, 1))
    ux, uy = (v.view(1, -1, 1, 1) / torch.hypot(tx, ty).view(1, -1, 1, 1) for v in (tx, ty))
    nearest = (x.unsqueeze(1) * ux + y.unsqueeze(1) * uy).argmax(1)  # nearest hue: largest dot product
    weight = _chroma(images, min_chroma)
    mass = torch.zeros(images.shape[0], len(palette)).scatter_add_(1, nearest.flatten(1), weight.flatten(1))
    total = mass.sum(1, keepdim=True)
    return torch.where(total > 0, mass / total.clamp_min(1e-12), torch.full_like(mass, 1 / len(palette)))


def colour_labels(images: torch.Tensor, palette: tuple[str, ...] = WorldConfig().palette,
                  min_chroma: float = 0.1) -> torch.Tensor:
    """(N,) palette index of each image's colour, or -1 where no pixel is coloured: measure_colour's uniform row
    has no meaningful argmax, and counting it as the first colour would inflate that colour's share."""
    shares = measure_colour(images, palette, min_chroma)
    return torch.where(shares.max(1).values > shares.min(1).values, shares.argmax(1), -1)


def measure_background(images: torch.Tensor) -> torch.Tensor:
    """(N,) index into BACKGROUNDS. On black every pixel's HSL lightness is alpha / 2 <= 0.5, on white it is
    1 - alpha / 2 >= 0.5, so the mean lightness decides."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise VismechError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    lightness = (images.float().amax(1) + images.float().amin(1)) / 2
    return (lightness.mean((1, 2)) > 0.5).long()


def measure_pattern(images: torch.Tensor, min_chroma: float = 0.1) -> torch.Tensor:
    """(N,) index into PATTERNS: checked when the dark squares of the 8 x 8 board hold less than CHECKED_BELOW
    times the chroma of the light ones. Each square is averaged first (a whole square is either inked or
    empty), which cuts pixel noise by the square's side without blurring the pattern."""
    size = images.shape[-1]
    if images.ndim != 4 or images.shape[-2] != size or size % 8:
        raise VismechError(f"measure_pattern needs square images with a side divisible by 8, got {tuple(images.shape)}")
    chroma = _chroma(torch.nn.functional.avg_pool2d(images.float(), size // 8), min_chroma)
    dark = torch.from_numpy(_checker(8))
    ratio = (chroma * dark).sum((1, 2)) / (chroma * ~dark).sum((1, 2)).clamp_min(1e-12)
    return (ratio < CHECKED_BELOW).long()


def measure(images: torch.Tensor, palette: tuple[str, ...] = WorldConfig().palette) -> dict[str, torch.Tensor]:
    """Hard labels of every attribute the pixels define; the garment class needs a trained judge."""
    return {"colour": colour_labels(images, palette), "background": measure_background(images),
            "pattern": measure_pattern(images)}

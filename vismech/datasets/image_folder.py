"""Image folders in the ImageNet layout: one subfolder per class (e.g. `val/n01440764/ILSVRC2012_val_00000293.JPEG`).

Labels are the positions of the class folders in sorted order, which for the ImageNet-1k validation set arranged
by synset is the standard 1k class order; a `classes` list (a label map) gives other labels. Item ids are
positions in the whole folder's (class folder, file) order, so a slice (`per_class`, `limit`) keeps each image's
id, and the pruning protocol's "first 40 per class" and "the rest" are disjoint by id.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import VismechError
from .selection import check_per_class, describe_per_class

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MAX_TENSOR_ITEMS = 10_000  # `tensors()` holds every image in memory: 10k ImageNet crops are 6 GB of float32


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _scan(root: Path) -> tuple[list[str], list[list[str]]]:
    """(class folder names sorted, each folder's image file names sorted)."""
    if not root.is_dir():
        raise VismechError(f"image folder '{root}' does not exist or is not a folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if not folders:
        raise VismechError(f"image folder '{root}' has no class subfolders; expected <root>/<class>/<image files>")
    files = [sorted(p.name for p in (root / c).iterdir()
                    if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES) for c in folders]
    if not any(files):
        raise VismechError(f"image folder '{root}' has no image files ({', '.join(IMAGE_SUFFIXES)}) in its "
                           f"class subfolders")
    return folders, files


def _labels(root: Path, folders: list[str], classes: Sequence[str] | None) -> tuple[list[str], list[int]]:
    """(class names in label order, each folder's label)."""
    if classes is None:
        return folders, list(range(len(folders)))
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise VismechError(f"the class list for '{root}' names a class twice")
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise VismechError(f"image folder '{root}' has subfolders not in the class list: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    return classes, [index[f] for f in folders]


class ImageFolderItems(Dataset):
    """Items {id, image, label} of an ImageNet-style folder.

    transform: PIL RGB image -> tensor (a subject's `input_transform`); its repr enters the digest, so it should
      describe the transform (torchvision's Compose does).
    per_class: (lo, hi) keeps files [lo:hi] of each class in file order (hi None: to the end).
    limit: keeps the first N items after that.
    classes: class (folder) names in label order, a label map; default: the sorted subfolder names. Items and ids
      follow the sorted folders either way.
    """

    def __init__(self, root: str | Path, transform: Callable, limit: int | None = None,
                 per_class: Sequence[int | None] | None = None, classes: Sequence[str] | None = None):
        self.root, self.transform = Path(root).expanduser(), transform
        folders, files = _scan(self.root)
        self.classes, labels = _labels(self.root, folders, classes)
        entries, start = [], 0  # (id, label, relative path), ids counted over the whole folder
        lo, hi = check_per_class(per_class) or (0, None)
        for label, name, names in zip(labels, folders, files):
            entries += [(start + i, label, f"{name}/{f}") for i, f in enumerate(names)][lo:hi]
            start += len(names)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise VismechError(f"item limit must be an integer >= 1, got {limit!r}")
            entries = entries[:limit]
        if not entries:
            raise VismechError(f"image folder '{self.root}' has no images in per_class={per_class}")
        self.ids = [e[0] for e in entries]
        self.labels = [e[1] for e in entries]
        self.files = [e[2] for e in entries]
        suffix = describe_per_class(per_class) + (f"[:{limit}]" if limit is not None else "")
        self.name = f"imagenet-folder:{self.root.resolve().name}{suffix}"

    def __len__(self) -> int:
        return len(self.ids)

    def _image(self, relative: str):
        from PIL import Image, UnidentifiedImageError

        path = self.root / relative
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise VismechError(f"image '{path}' cannot be read: {exc}") from None

    def __getitem__(self, index: int) -> dict:
        return {"id": self.ids[index], "image": self.transform(self._image(self.files[index])),
                "label": self.labels[index]}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every item at once (id, image, label): for small sets only."""
        if len(self) > MAX_TENSOR_ITEMS:
            raise VismechError(f"{self.name} has {len(self)} items; tensors() holds at most {MAX_TENSOR_ITEMS}, "
                               f"iterate with a DataLoader instead")
        return {"id": torch.tensor(self.ids, dtype=torch.long),
                "image": torch.stack([self[i]["image"] for i in range(len(self))]),
                "label": torch.tensor(self.labels, dtype=torch.long)}

    def digest(self) -> str:
        """sha256 of what defines the items without reading 50k images: classes, each item's id, label, relative
        path and file size, and the transform's description. An edit that keeps a file's size is not seen."""
        h = hashlib.sha256(f"imagenet-folder|{'|'.join(self.classes)}|{self.transform!r}".encode())
        for i, label, relative in zip(self.ids, self.labels, self.files):
            h.update(f"\n{i}|{label}|{relative}|{(self.root / relative).stat().st_size}".encode())
        return h.hexdigest()

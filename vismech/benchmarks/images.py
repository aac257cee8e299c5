"""The labelled images a classifier task runs on: the mini world's test split, or an image folder (paper track)."""
from __future__ import annotations

from torch.utils.data import Dataset

from ..datasets.world import WorldItems
from ..errors import VismechError
from ..subject import Subject


def classifier_items(subject: Subject, images: str | None, *, limit: int | None = None,
                     per_class: tuple[int, int | None] | None = None) -> Dataset:
    """`images` None: the world's test split (the mini track); else an ImageNet-style folder, read with the
    subject's own resize and crop (`input_transform`)."""
    if images is None:
        if subject.track == "paper":
            raise VismechError(f"subject '{subject.id}' is a paper-track model: give its evaluation images with "
                               f"task.images=/path/to/imagenet/val (one folder per class)")
        return WorldItems("test", limit=limit, per_class=per_class)
    transform = getattr(subject, "input_transform", None)
    if transform is None:
        raise VismechError(f"subject '{subject.id}' has no input_transform for image files; task.images needs a "
                           f"classifier loaded with its own preprocessing (e.g. model=vit_b16)")
    from ..datasets.image_folder import ImageFolderItems

    return ImageFolderItems(images, transform, limit=limit, per_class=per_class)

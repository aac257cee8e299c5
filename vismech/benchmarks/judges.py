"""Judges of generated images: a classifier for the concept or attribute, CLIP, and a feature space for FID.

A judge is never the subject: the numbers it gives are only as good as it is, so each carries a fingerprint (its
weights digest, preprocessing and scale) that goes into every metric it produces. The mini track's judges are the
zoo's `judge_world` (garment and colour heads; its pooled features are the FID space) and `clip_world`; the FID
reference is a fixed slice of a world split.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from ..errors import VismechError
from ..subject import weights_digest

Tensor = torch.Tensor


@dataclass
class Judges:
    """What the generative benchmarks call. Images are (N, 3, H, W) in [0, 1], at the subject's resolution."""

    classes: tuple[str, ...]  # what `classify` tells apart (concept: garment or ImageNet classes)
    classify: Callable[[Tensor], Tensor]  # -> (N, len(classes)) probabilities
    features: Callable[[Tensor], Tensor]  # -> (N, d): the FID feature space
    reference: Tensor  # (M, d) features of the FID reference set
    encode_image: Callable[[Tensor], Tensor]  # CLIP, L2-normalised
    encode_text: Callable[[list[str]], Tensor]
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)  # per role: classifier, clip, fid
    attributes: dict[str, tuple[tuple[str, ...], Callable[[Tensor], Tensor]]] = field(default_factory=dict)
    # (M', d) features of KID's reference set, in the FID feature space; None: the FID reference
    kid_reference: Tensor | None = None

    def kid_features(self) -> Tensor:
        return self.reference if self.kid_reference is None else self.kid_reference


@lru_cache(maxsize=4)
def world_features(split: str, count: int) -> Tensor:
    """judge_world's features of the first `count` images of a world split (a reference set)."""
    from ..datasets.world import WorldItems
    from ..zoo import judge_world

    judge = judge_world.load()
    images = WorldItems(split, limit=count).tensors()["image"]
    return torch.cat([judge.features(images[i:i + 500]) for i in range(0, len(images), 500)])


@lru_cache(maxsize=4)
def world_judges(reference_split: str = "test", reference_count: int = 2000,
                 kid_reference_split: str | None = None) -> Judges:
    """The mini judges; FID against `reference_split`, KID against `kid_reference_split` (None: the same)."""
    from ..datasets.world import CLASSES, WorldConfig
    from ..zoo import clip_world, judge_world

    judge, clip = judge_world.load(), clip_world.load()
    judge_fp = {"model": "judge_world", "weights": weights_digest(judge.model), "input": "bilinear to 32 px, (x-0.5)/0.5"}
    clip_fp = {"model": "clip_world", "weights": weights_digest(clip.model), "scale": "100 x cosine"}
    fid_fp = {**judge_fp, "features": "judge_world pooled (192-d)",
              "reference": f"world {reference_split}[:{reference_count}]"}
    kid_split = kid_reference_split or reference_split
    kid_fp = {**fid_fp, "reference": f"world {kid_split}[:{reference_count}]"}
    return Judges(classes=CLASSES, classify=lambda x: judge.probs(x)["label"], features=judge.features,
                  reference=world_features(reference_split, reference_count), encode_image=clip.encode_image,
                  encode_text=clip.encode_text,
                  fingerprints={"classifier": judge_fp, "clip": clip_fp, "fid": fid_fp, "kid": kid_fp},
                  attributes={"colour": (WorldConfig().palette, lambda x: judge.probs(x)["colour"])},
                  kid_reference=world_features(kid_split, reference_count))


WORLD_OPTIONS = ("reference_split", "reference_count", "kid_reference_split")


def load_judges(spec: dict[str, Any] | None) -> Judges:
    """`spec`: {"name": "world", "reference_split": ..., "reference_count": ...} (mini) or {"name": "paper", ...}."""
    spec = dict(spec or {"name": "world"})
    name = spec.pop("name", "world")
    if name == "world":
        return world_judges(spec.get("reference_split", "test"), int(spec.get("reference_count", 2000)),
                            spec.get("kid_reference_split"))
    if name == "paper":
        from .paper_judges import paper_judges

        for option in WORLD_OPTIONS:  # the task yaml's world defaults, which a paper card sets to null
            if spec.pop(option, None) is not None:
                raise VismechError(f"task.judges.{option} is an option of the world judges; the paper judges' FID "
                                   f"reference is task.judges.reference (set {option} to null)")
        return paper_judges(**spec)
    raise VismechError(f"unknown judges '{name}'; known judges: paper, world")

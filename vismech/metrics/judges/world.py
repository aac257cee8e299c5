"""The mini track's judges: the zoo's `judge_world` (garment and colour heads; its pooled features are the FID
space) and `clip_world`; the FID reference is a fixed slice of a world split."""
from __future__ import annotations

from functools import lru_cache

import torch

from ...subject import weights_digest
from .base import Judges


@lru_cache(maxsize=4)
def world_features(split: str, count: int) -> torch.Tensor:
    """judge_world's features of the first `count` images of a world split (a reference set)."""
    from ...datasets.world import WorldItems  # the zoo loads diffusers: only when judged
    from ...zoo import judge_world

    judge = judge_world.load()
    images = WorldItems(split, limit=count).tensors()["image"]
    return torch.cat([judge.features(images[i:i + 500]) for i in range(0, len(images), 500)])


def world_colours(split: str, count: int) -> torch.Tensor:
    """The ground-truth colour (index into the world palette) of the first `count` images of a world split."""
    from ...datasets.world import WorldItems

    return WorldItems(split, limit=count).tensors()["colour"].long()


@lru_cache(maxsize=4)
def world_judges(reference_split: str = "test", reference_count: int = 2000,
                 kid_reference_split: str | None = None) -> Judges:
    """The mini judges; FID against `reference_split`, KID against `kid_reference_split` (None: the same)."""
    from ...datasets.world import CLASSES, WorldConfig
    from ...zoo import clip_world, judge_world

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
                  kid_reference=world_features(kid_split, reference_count),
                  kid_reference_classes={"colour": world_colours(kid_split, reference_count)})

"""Judges of generated images: a classifier for the concept or attribute, CLIP, and a feature space for FID.

A judge is never the subject: the numbers it gives are only as good as it is, so each carries a fingerprint (its
weights digest, preprocessing and scale) that goes into every metric it produces. The mini track's judges are the
zoo's `judge_world` (garment and colour heads; its pooled features are the FID space) and `clip_world`; the FID
reference is a fixed slice of a world split.
"""
from __future__ import annotations

from typing import Any

from ...errors import VismechError
from .base import Judges
from .paper import paper_judges
from .world import world_judges

__all__ = ["Judges", "load_judges", "paper_judges", "world_judges"]


WORLD_OPTIONS = ("reference_split", "reference_count", "kid_reference_split")


def load_judges(spec: dict[str, Any] | None) -> Judges:
    """`spec`: {"name": "world", "reference_split": ..., "reference_count": ...} (mini) or {"name": "paper", ...}."""
    spec = dict(spec or {"name": "world"})
    name = spec.pop("name", "world")
    if name == "world":
        return world_judges(spec.get("reference_split", "test"), int(spec.get("reference_count", 2000)),
                            spec.get("kid_reference_split"))
    if name == "paper":
        for option in WORLD_OPTIONS:  # the task yaml's world defaults, which a paper card sets to null
            if spec.pop(option, None) is not None:
                raise VismechError(f"task.judges.{option} is an option of the world judges; the paper judges' FID "
                                   f"reference is task.judges.reference (set {option} to null)")
        return paper_judges(**spec)
    raise VismechError(f"unknown judges '{name}'; known judges: paper, world")

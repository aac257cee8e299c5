"""Fit data of the concept task: which concept to attribute, against which base prompt, at which sampled points.

One `ConceptData` serves every concept method (CAD-Erase, CAD-Amplify and the baselines), so the runner can fit
any of them from the task config alone:
- the erase objective samples DDIM trajectories of `concept` with seeds `seeds` (x_T of seed s is the latent
  `StableDiffusionPipeline` draws from `torch.Generator().manual_seed(s)`, so a trajectory is the one `generate`
  would sample) and compares the concept branch with the `base` branch;
- the amplify objective needs images of the concept: `images` (pixels in [0, 1]), or, when there are none,
  images the model generates itself from `image_prompt` with the same seeds and sampler;
- closed-form baselines read `others`, the concepts to preserve.

`digest()` is the sha256 of everything above (pixels included): the runner caches findings under it.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import torch

from ..errors import VismechError


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise VismechError(f"concept data: {name} must be an integer >= 1, got {value!r}")


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or not len(images):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise VismechError(f"concept data: images must be a tensor (N, 3, H, W) with N >= 1, got {shape}")
    if not images.is_floating_point() or float(images.min()) < 0 or float(images.max()) > 1:
        raise VismechError("concept data: images must be floating point pixels in [0, 1]")


@dataclass(frozen=True, eq=False)
class ConceptData:
    """A concept to attribute, e.g. ConceptData("a sneaker") against the empty base prompt."""

    concept: str  # the prompt naming the concept (the spec's object prompt is the bare class name)
    base: str = ""  # c_b: what the concept branch is compared with; "" is the CFG unconditional prompt
    seeds: tuple[int, ...] = (0,)  # one DDIM trajectory per seed, sampled together as one batch
    steps: int = 50  # DDIM steps (eta 0): one attribution point per step
    guidance_scale: float = 3.0  # CFG scale of the sampled trajectories (the reference uses 3)
    images: torch.Tensor | None = field(default=None, repr=False)  # (N, 3, H, W) in [0, 1], concept images
    image_prompt: str | None = None  # prompt of self-generated amplify images; None: `concept`
    image_count: int | None = None  # self-generated amplify images, seeds 0..n-1; None: one per seed of `seeds`
    image_guidance_scale: float | None = None  # CFG of self-generated amplify images; None: `guidance_scale`
    others: tuple[str, ...] = ()  # concepts to keep (preservation terms of closed-form baselines)
    label: str = ""  # a short name for reports, e.g. the world class; defaults to the concept prompt

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "others", tuple(self.others))
        for name in ("concept", "base"):
            if not isinstance(getattr(self, name), str):
                raise VismechError(f"concept data: {name} must be a string, got {getattr(self, name)!r}")
        if not self.concept.strip():
            raise VismechError(f"concept data: concept must be a non-empty prompt, got {self.concept!r}")
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise VismechError(f"concept data: seeds must be a non-empty list of integers >= 0, got {list(self.seeds)}")
        _positive_int("steps", self.steps)
        g = self.guidance_scale
        if not isinstance(g, (int, float)) or isinstance(g, bool) or not math.isfinite(g) or g < 1:
            raise VismechError(f"concept data: guidance_scale must be a finite number >= 1, got {g!r}")
        if self.images is not None:
            _check_images(self.images)
        if self.image_count is not None:
            _positive_int("image_count", self.image_count)
        g = self.image_guidance_scale
        if g is not None and (not isinstance(g, (int, float)) or isinstance(g, bool) or not math.isfinite(g) or g < 1):
            raise VismechError(f"concept data: image_guidance_scale must be a finite number >= 1 or None, got {g!r}")

    @property
    def name(self) -> str:
        images = f", {len(self.images)} images" if self.images is not None else ""
        return (f"concept[{self.label or self.concept}] vs '{self.base}', {len(self.seeds)} seeds, "
                f"DDIM {self.steps}, cfg {self.guidance_scale:g}{images}")

    @property
    def amplify_prompt(self) -> str:
        return self.image_prompt if self.image_prompt is not None else self.concept

    @property
    def image_seeds(self) -> tuple[int, ...]:
        """Seeds of the self-generated amplify images."""
        return self.seeds if self.image_count is None else tuple(range(self.image_count))

    @property
    def image_guidance(self) -> float:
        return float(self.guidance_scale if self.image_guidance_scale is None else self.image_guidance_scale)

    def digest(self) -> str:
        header = {"concept": self.concept, "base": self.base, "seeds": list(self.seeds), "steps": self.steps,
                  "guidance_scale": float(self.guidance_scale), "image_prompt": self.image_prompt,
                  "others": list(self.others), "label": self.label}
        # keys added later enter only when set, so the digests (the store's keys) of older data stay valid
        header |= {key: getattr(self, key) for key in ("image_count", "image_guidance_scale")
                   if getattr(self, key) is not None}
        h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
        if self.images is not None:
            pixels = self.images.detach().cpu().float().contiguous()
            h.update(f"images|{tuple(pixels.shape)}|".encode())
            h.update(pixels.numpy().tobytes())
        return h.hexdigest()


def world_class_images(class_name: str, count: int, split: str = "train") -> torch.Tensor:
    """The first `count` images (by id) of a mini-world garment class in `split`, pixels in [0, 1]: amplify's
    concept images on the mini track, taken from the data the model was trained on."""
    from .world import CLASSES, WorldConfig, attributes, render, split_ids

    if class_name not in CLASSES:
        raise VismechError(f"unknown world class '{class_name}'; known classes: {', '.join(CLASSES)}")
    _positive_int("count", count)
    ids = []
    for i in split_ids(split):  # classes are spread evenly over ids, so this stops after about 10 * count ids
        if attributes(i)["item"] == class_name:
            ids.append(i)
            if len(ids) == count:
                return render(ids, WorldConfig())
    raise VismechError(f"world split '{split}' has only {len(ids)} images of class '{class_name}', asked {count}")


def world_concept(class_name: str, *, images: int = 0, **settings) -> ConceptData:
    """ConceptData for a mini-world garment class: concept prompt 'a <class>', the other classes as `others`,
    and with `images` > 0 that many train images of the class for amplify."""
    from .world import CLASSES, describe

    if class_name not in CLASSES:
        raise VismechError(f"unknown world class '{class_name}'; known classes: {', '.join(CLASSES)}")
    pixels = world_class_images(class_name, images) if images else None
    others = tuple(describe(c) for c in CLASSES if c != class_name)
    return ConceptData(describe(class_name), images=pixels, others=others, label=class_name, **settings)

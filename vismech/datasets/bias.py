"""Item sets of the bias task: which samples to generate (ids, their seeds, their prompts), the attribute, the target.

A sample is an id. Its noise seed is `item_seed(noise_seed, id)` and, for a text-conditional subject, its prompt
is `prompts[id % len(prompts)]`; so a sample is the same in any batch and on any device. Fit, calibration and test
samples take disjoint id ranges (`FIT_IDS`, `CALIBRATION_IDS`, `TEST_IDS`), so nothing is tuned on test noise.

The attribute of a generated image is measured on the mini world by the exact pixel rule (`labeler="pixel"`,
`vismech.datasets.world.colour_labels`) or by a judge (`labeler="judge"`): the task's attribute judge, passed in as
`label_fn` (judge_world's colour head on the mini track, FairFace on the paper track), whose fingerprint `judge`
enters the digest. Only the world's colour has a pixel rule; a paper attribute (gender, age, race) is the judge's.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import Dataset

from ..errors import VismechError
from ..sampling import Sampling
from ..seeding import item_seed
from .world import CLASSES, WorldConfig, colour_labels, describe

FIT_IDS = (0, 100_000)
CALIBRATION_IDS = (100_000, 200_000)
TEST_IDS = (200_000, 300_000)
LABELERS = ("pixel", "judge")
ATTRIBUTES = ("colour",)  # the world's attributes, measured by a pixel rule; a paper judge names its own
VERSION = "1"  # bump when the meaning of a field changes: it is part of every digest


def _check_range(name: str, ids: tuple[int, int], allowed: tuple[int, int]) -> tuple[int, int]:
    start, stop = (int(v) for v in ids)
    if not allowed[0] <= start < stop <= allowed[1]:
        raise VismechError(f"{name} must be a non-empty [start, stop) inside [{allowed[0]}, {allowed[1]}), "
                           f"got [{start}, {stop})")
    return start, stop


def _check_distribution(name: str, p: tuple[float, ...], k: int) -> tuple[float, ...]:
    p = tuple(float(v) for v in p)
    if len(p) != k or any(not math.isfinite(v) or v < 0 for v in p) or abs(sum(p) - 1) > 1e-6:
        raise VismechError(f"{name} must be {k} non-negative probabilities summing to 1, got {list(p)}")
    return p


@dataclass(frozen=True)
class BiasFitData:
    """What a bias method fits on: fit and calibration sample ids, the attribute and its classes, the target
    distribution over the classes, the sampler, and for conditional subjects the prompts (and, for prompt
    augmentation, the same prompts naming each class: `attribute_prompts[i][c]`)."""

    attribute: str = "colour"
    classes: tuple[str, ...] = WorldConfig().palette
    target: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    fit_ids: tuple[int, int] = (0, 1024)
    calibration_ids: tuple[int, int] = (100_000, 100_128)
    noise_seed: int = 0
    prompts: tuple[str, ...] = ()
    attribute_prompts: tuple[tuple[str, ...], ...] = ()
    labeler: str = "pixel"
    sampling: Sampling = field(default_factory=Sampling)
    # more prompts' class wordings (prompt, one prompt per class), e.g. the test prompts where the fit's differ:
    # what prompt augmentation rewrites besides `prompts`
    wordings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    judge: str = ""  # fingerprint of the judge that labels (labeler "judge"); part of the digest
    # images -> (N,) class index (-1: none); None with labeler "judge": judge_world's colour head
    label_fn: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        set_("classes", tuple(self.classes))
        if self.attribute in ATTRIBUTES:
            unknown = [c for c in self.classes if c not in WorldConfig().palette]
            if len(self.classes) < 2 or unknown:
                raise VismechError(f"bias classes must be >= 2 world colours of {WorldConfig().palette}, "
                                   f"got {self.classes}")
        elif len(self.classes) < 2:
            raise VismechError(f"bias classes must be >= 2 classes of attribute {self.attribute!r}, "
                               f"got {self.classes}")
        set_("target", _check_distribution("bias target", self.target, len(self.classes)))
        set_("fit_ids", _check_range("fit_ids", self.fit_ids, FIT_IDS))
        set_("calibration_ids", _check_range("calibration_ids", self.calibration_ids, CALIBRATION_IDS))
        set_("prompts", tuple(self.prompts))
        set_("attribute_prompts", tuple(tuple(p) for p in self.attribute_prompts))
        if self.attribute_prompts and (len(self.attribute_prompts) != len(self.prompts)
                                       or any(len(p) != len(self.classes) for p in self.attribute_prompts)):
            raise VismechError(f"attribute_prompts needs one row per prompt ({len(self.prompts)}) with one prompt "
                               f"per class ({len(self.classes)})")
        set_("wordings", tuple((p, tuple(row)) for p, row in self.wordings))
        if any(len(row) != len(self.classes) for _, row in self.wordings):
            raise VismechError(f"wordings needs one prompt per class ({len(self.classes)}) for each prompt")
        if self.labeler not in LABELERS:
            raise VismechError(f"bias labeler must be one of {', '.join(LABELERS)}, got {self.labeler!r}")
        if self.labeler == "pixel" and self.attribute not in ATTRIBUTES:
            raise VismechError(f"the pixel rule measures only the world's {', '.join(ATTRIBUTES)}; attribute "
                               f"{self.attribute!r} needs labeler 'judge'")

    @property
    def conditional(self) -> bool:
        return bool(self.prompts)

    @property
    def name(self) -> str:
        kind = f"{len(self.prompts)} prompts" if self.prompts else "unconditional"
        return (f"bias-{self.attribute}/{kind}/fit{self.fit_ids[0]}-{self.fit_ids[1]}"
                f"/cal{self.calibration_ids[0]}-{self.calibration_ids[1]}")

    def digest(self) -> str:
        content = {k: v for k, v in asdict(self).items() if k != "label_fn"}
        return hashlib.sha256(json.dumps({"version": VERSION, **content}, sort_keys=True).encode()).hexdigest()

    def ids(self, part: str) -> list[int]:
        ranges = {"fit": self.fit_ids, "calibration": self.calibration_ids}
        if part not in ranges:
            raise VismechError(f"unknown sample range {part!r}; known: {', '.join(ranges)}")
        return list(range(*ranges[part]))

    def seeds(self, ids: list[int]) -> list[int]:
        return [item_seed(self.noise_seed, i) for i in ids]

    def prompts_for(self, ids: list[int]) -> list[str] | None:
        return prompts_of(self.prompts, ids)

    def class_wordings(self) -> dict[str, list[str]]:
        """Every prompt this data knows, with its wording naming each class."""
        return {p: list(row) for p, row in (*zip(self.prompts, self.attribute_prompts), *self.wordings)}

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        if self.labeler == "judge" and self.label_fn is not None:
            return self.label_fn(images)
        if self.attribute not in ATTRIBUTES:
            raise VismechError(f"attribute {self.attribute!r} has no pixel rule: its fit data needs the judge's "
                               f"label_fn")
        return measure_attribute(images, self.classes, self.labeler)


def prompts_of(prompts: tuple[str, ...], ids: list[int]) -> list[str] | None:
    """Each id's prompt, `prompts[id % len(prompts)]`; None for an unconditional item set."""
    return [prompts[i % len(prompts)] for i in ids] if prompts else None


def measure_attribute(images: torch.Tensor, classes: tuple[str, ...], labeler: str = "pixel",
                      judge: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """(N,) index into `classes` of each image's colour; -1 where the pixel rule sees no colour. With labeler
    "judge", `judge` maps images to (N, palette) colour probabilities (judge_world's colour head on the mini
    track): the label is its argmax over the world palette, -1 when that colour is not one of `classes`."""
    if labeler == "pixel":
        return colour_labels(images, tuple(classes))
    if labeler != "judge":
        raise VismechError(f"bias labeler must be one of {', '.join(LABELERS)}, got {labeler!r}")
    if judge is None:
        raise VismechError("labeler 'judge' needs the judge's colour probabilities (judge=...); none was given")
    palette = WorldConfig().palette
    predicted = judge(images).argmax(-1)
    lookup = torch.tensor([classes.index(c) if c in classes else -1 for c in palette])
    return lookup[predicted]


def shares(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(k + 1,) float64: the share of each class, then the share of unlabelled (-1) samples."""
    counts = torch.bincount(torch.where(labels < 0, k, labels), minlength=k + 1).double()
    return counts / max(1, len(labels))


class BiasItems(Dataset):
    """The test samples: ids [start, stop); each item is {"id", "prompt"} (prompt "" when unconditional). The
    benchmark seeds each item from (run seed, id)."""

    def __init__(self, ids: tuple[int, int] = (200_000, 201_000), prompts: tuple[str, ...] = (),
                 classes: tuple[str, ...] = WorldConfig().palette, target: tuple[float, ...] | None = None,
                 attribute: str = "colour"):
        self.start, self.stop = _check_range("test ids", ids, TEST_IDS)
        self.prompts, self.classes = tuple(prompts), tuple(classes)
        self.target = _check_distribution("bias target", target or (1 / len(self.classes),) * len(self.classes),
                                          len(self.classes))
        kind = f"{len(self.prompts)} prompts" if self.prompts else "unconditional"
        self.attribute = attribute
        self.name = f"bias-{attribute}/{kind}/test{self.start}-{self.stop}"

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        i = self.start + index
        return {"id": i, "prompt": self.prompts[i % len(self.prompts)] if self.prompts else ""}

    def digest(self) -> str:
        content = {"version": VERSION, "ids": [self.start, self.stop], "prompts": self.prompts,
                   "classes": self.classes, "target": self.target}
        if self.attribute != "colour":  # the world's digests stay as they were
            content["attribute"] = self.attribute
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def world_prompts(classes: tuple[str, ...] = WorldConfig().palette) -> tuple[tuple, tuple]:
    """The mini world's colour-less prompts ("a sneaker", one per garment) and each one naming every class
    ("a red sneaker", ...), in sd_world's caption wording."""
    return (tuple(describe(item) for item in CLASSES),
            tuple(tuple(describe(item, colour) for colour in classes) for item in CLASSES))


def template_prompts(templates: list[str] | tuple[str, ...], words: tuple[str, ...]) -> tuple[tuple, tuple]:
    """Prompts from templates with one `{}` for the attribute word: each template without a word ("A face of a
    {} nurse" -> "A face of a nurse") and with each class's word ("A face of a female nurse", ...)."""
    def fill(template: str, word: str) -> str:
        return " ".join(template.replace("{}", word).split())

    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise VismechError(f"bias prompts must be a non-empty list of templates with one '{{}}' for the attribute "
                           f"word, got {list(bad or templates)}")
    return (tuple(fill(t, "") for t in templates),
            tuple(tuple(fill(t, w) for w in words) for t in templates))


def world_fit_data(conditional: bool = False, **overrides) -> BiasFitData:
    """Fit data on the mini world: ddpm_world's sampler (DDIM 50, eta 1) or, conditional, sd_world's (DDIM 25,
    eta 0, guidance 4) with the colour-less garment prompts."""
    if not conditional:
        return BiasFitData(**overrides)
    prompts, attribute_prompts = world_prompts(tuple(overrides.get("classes", WorldConfig().palette)))
    defaults = dict(prompts=prompts, attribute_prompts=attribute_prompts,
                    sampling=Sampling(steps=25, eta=0.0, guidance_scale=4.0))
    return BiasFitData(**{**defaults, **overrides})

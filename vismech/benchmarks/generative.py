"""Base of the benchmarks that generate images (concept, bias): cached generation on per-item seeds, and judges.

Every image is generated once under its content key (`vismech.generations`) and read back by every metric, so a
new metric on an old run generates nothing and a killed run restarts where it stopped. An item's noise seed is
`item_seed(run seed, id)`: the same for every method and strength, which makes comparisons paired. An edit at its
method's identity strength reproduces the unedited model exactly (a tested property of every method), so those
images share one key with the unedited images of every method: the unedited set is generated once per seed.

Images are bit-identical whenever they come from the cache. Fresh, they depend on the UNet batch (float32 GEMM
blocking): across batch sizes pixels differ by about 1e-6, which no judge's decision crosses except at exact ties.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..code_digest import code_digest
from ..datasets.bias import Sampling
from ..edit import Edit, NoEdit
from ..errors import VismechError
from ..generations import GenerationCache, generation_key
from ..metrics.base import ItemMetric
from ..registry import METRICS
from ..seeding import item_seed
from ..tradeoff import Bound, matched_point
from ..subject import DiffusionSubject
from .base import Benchmark, TaskConfig
from ..metrics.judges import Judges, load_judges

PRODUCER = "vismech.edited_sampler/1"  # part of every cached image's key: kept when the sampler moved
UNEDITED = "unedited"


@dataclass
class GenerativeConfig(TaskConfig):
    sampling: dict[str, Any] = field(default_factory=dict)  # steps, eta, guidance_scale, batch_size (see Sampling)
    judges: dict[str, Any] = field(default_factory=lambda: {"name": "world"})
    quality_budget: float = 0.05  # the headline point's quality may fall at most this far from the unedited one

    def validate(self) -> None:
        super().validate()
        self.sampler()  # Sampling checks its own values
        if not 0 <= self.quality_budget <= 1:
            raise VismechError(f"task.quality_budget must be in [0, 1], got {self.quality_budget}")

    def sampler(self) -> Sampling:
        unknown = set(self.sampling) - {"steps", "eta", "guidance_scale", "batch_size"}
        if unknown:
            raise VismechError(f"unknown task.sampling key(s) {sorted(unknown)}; known: batch_size, eta, "
                               f"guidance_scale, steps")
        return Sampling(**self.sampling)


def image_producer(subject: DiffusionSubject, method: type | None = None) -> str:
    """The code an image comes from: the sampler and the subject's wrapper, and for an edited image its method's
    code too (`method`: its class; None for unedited images, which stay shared by every method)."""
    from ..sampling import sample

    code = {"sampler": code_digest(sample, type(subject))}
    if method is not None:
        code["method"] = method.code_identity()
    return f"{PRODUCER}|{json.dumps(code, sort_keys=True)}"


def image_keys(subject: DiffusionSubject, method: str, finding: str, strength: float, sampling: Sampling,
               prompts: Sequence[str] | None, seeds: Sequence[int], producer: str) -> list[str]:
    """The cache keys of images made by `method` (UNEDITED, finding "" and strength 0 for the unedited model) on
    per-item `seeds`; also how the leaderboard site finds a record's images again."""
    dtype = str(next(subject.unet.parameters()).dtype)
    return [generation_key(subject=subject.weights_digest, method=method, finding=finding, strength=strength,
                           sampler=f"ddim(eta={sampling.eta})", steps=sampling.steps,
                           guidance=sampling.guidance_scale if subject.conditional else None,
                           prompt=prompts[k] if prompts is not None else None, seed=seed, dtype=dtype,
                           producer=producer)
            for k, seed in enumerate(seeds)]


# quality metrics against KID's reference set, in the FID feature space (kid_per_class adds the reference's classes)
KID_REFERENCE_METRICS = ("kid", "precision", "recall", "kid_per_class")


class GenerativeBenchmark(Benchmark):
    """Subclasses call `self.images(ids, prompts, point)` (point None: unedited) inside `test_step`."""

    Config = GenerativeConfig

    @classmethod
    def check_subject(cls, task_cfg: GenerativeConfig, subject) -> None:
        if not isinstance(subject, DiffusionSubject):
            raise VismechError(f"task '{cls.name}' needs a diffusion subject (model=sd_world, ddpm_world or a paper "
                               f"diffusion model); '{subject.id}' is {type(subject).__name__}")

    def __init__(self, subject, method, finding, strengths, run_seed, task_cfg: GenerativeConfig | None = None):
        task_cfg = task_cfg or self.Config(name=self.name)
        self.check_subject(task_cfg, subject)
        self.judges: Judges = load_judges(task_cfg.judges)
        self.sampling = task_cfg.sampler()
        super().__init__(subject, method, finding, strengths, run_seed, task_cfg)
        self.generated = 0  # images this run made (the rest came from the cache)
        self._identity: dict[int, bool] = {}
        self._producers: dict[bool, str] = {}

    # --- metrics with their judge's fingerprint ----------------------------------------------------------------

    def judge_of(self, metric: str) -> str:
        """Which judge role a metric uses: classifier, clip or fid."""
        return {"fid": "fid", "cmmd": "cmmd", "clip_t": "clip", "clip_i": "clip",
                **dict.fromkeys(KID_REFERENCE_METRICS, "kid")}.get(metric, "classifier")

    def make_metric(self, name: str, **kwargs) -> ItemMetric:
        role = self.judge_of(name)
        judge = self.judges.fingerprints.get(role) or self.judges.fingerprints.get("fid" if role == "kid" else role, {})
        if name == "fid":
            kwargs["reference"] = self.judges.reference
        if name in KID_REFERENCE_METRICS:
            kwargs["reference"] = self.judges.kid_features()
        if name == "cmmd":
            kwargs["reference"] = self.judges.cmmd_reference
        return METRICS.get(name)(judge={**judge, "sampling": self.sampling_fingerprint()}, **kwargs)

    def update_cmmd(self, metrics, ids: torch.Tensor, images: torch.Tensor) -> None:
        """CMMD of the images, where the judges have its embedding (a paper card that names `judges.cmmd`)."""
        if "cmmd" in metrics:
            metrics["cmmd"].update(ids, self.judges.cmmd_features(images).double().cpu())

    def sampling_fingerprint(self) -> dict[str, Any]:
        s = self.sampling
        return {"sampler": "ddim", "steps": s.steps, "eta": s.eta, "guidance": s.guidance_scale}

    # --- the headline at matched quality ----------------------------------------------------------------------

    def matched_headline(self, bounds: list[Bound]) -> dict[str, Any]:
        """The primary metric read off the sweep where every quality bound holds (vismech.tradeoff)."""
        primary = self.summaries[0][self.primary_metric]
        return matched_point(self.strengths, self.summaries, self.primary_metric, primary["direction"], bounds,
                             [self.is_identity(i) for i in range(len(self.strengths))])

    def headline_strength(self) -> float:
        return self.headline()["strength"]

    # --- generation ------------------------------------------------------------------------------------------------

    def seeds(self, ids: Sequence[int]) -> list[int]:
        return [item_seed(self.run_seed, int(i)) for i in ids]

    def strength_of(self, point: int | None) -> float | None:
        return None if point is None else self.strengths[point]

    def is_identity(self, point: int | None) -> bool:
        """The point's images are the unedited ones: no point, the method's identity strength, or a NoEdit."""
        if point is None or self.strengths[point] == self.method.identity_strength:
            return True
        if point not in self._identity:
            self._identity[point] = isinstance(self.method.edit(self.subject, self.finding, self.strengths[point]),
                                               NoEdit)
        return self._identity[point]

    def keys(self, ids: Sequence[int], prompts: Sequence[str] | None, point: int | None) -> list[str]:
        identity = self.is_identity(point)
        return image_keys(self.subject, UNEDITED if identity else self.method.name,
                          "" if identity else self.finding.digest(), 0.0 if identity else self.strengths[point],
                          self.sampling, prompts, self.seeds(ids), self.producer(identity))

    def producer(self, identity: bool) -> str:
        """The code an image comes from: the sampler and the subject's wrapper, and for an edited image the
        method's code too (unedited images stay shared by every method)."""
        if identity not in self._producers:
            self._producers[identity] = image_producer(self.subject, None if identity else type(self.method))
        return self._producers[identity]

    def edit(self, point: int | None) -> Edit | None:
        return None if self.is_identity(point) else self.method.edit(self.subject, self.finding, self.strengths[point])

    def images(self, ids: Sequence[int], prompts: Sequence[str] | None, point: int | None) -> torch.Tensor:
        """Images of items `ids` at sweep point `point` (None: unedited), from the cache where they are."""
        from ..sampling import sample

        ids = [int(i) for i in ids]
        prompts = None if prompts is None else list(prompts)
        seeds = self.seeds(ids)

        def make(todo: list[int]) -> torch.Tensor:
            with warnings.catch_warnings():  # the cost meter's backward hook cannot see the UNet's dataclass output;
                warnings.filterwarnings("ignore", message="For backward hooks to be called")  # sampling has none
                return sample(self.subject, [ids[k] for k in todo], [seeds[k] for k in todo],
                              prompts=None if prompts is None else [prompts[k] for k in todo],
                              edit=self.edit(point), sampling=self.sampling).images

        keys = self.keys(ids, prompts, point)
        if self.cache_dir is None:
            return make(list(range(len(ids))))
        images, made = GenerationCache(self.cache_dir).images(keys, make, batch_size=self.sampling.batch_size)
        self.generated += made
        return images

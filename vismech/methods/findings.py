"""Typed findings, one per task: what a method of the task hands its benchmark (and its own `edit`).

A `Finding` is the store's container (safetensors + JSON, never pickle); these types name what its tensors mean.
`tensors()` gives the container's tensors and `read(finding)` the typed view back. The tensor names are the ones
findings were stored under before the types existed, so cached findings read unchanged.

- `PathFinding` (tasks neuron_path and pruning): per fit image, the FFN unit its path takes in each layer;
- `WeightScoreFinding` (task concept): per weight site, a score per weight (dense, or the entries an edit can
  reach) or, for the model-editing baselines, the site's new value;
- `BiasFinding` (task bias): the steering a bias method found: an SAE with its ranked latents, or directions in
  h-space, and the calibration of strength to target shares.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import VismechError
from ..finding import Finding

Tensor = torch.Tensor


def _require(finding: Finding, names: tuple[str, ...], what: str) -> None:
    missing = [n for n in names if n not in finding.tensors]
    if missing:
        raise VismechError(f"finding of method '{finding.method}' is not a {what}: it has no tensor(s) "
                           f"{', '.join(missing)}")


def _by_prefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


@dataclass
class PathFinding:
    """A path per fit image: `paths[i, l]` (or `paths[i, l, k]` for the k-th unit) is the FFN unit image i's path
    takes in layer l, at the CLS token; -1 where a layer has no unit. `jas_ref` is each path's joint attribution
    score (ref form). `extra` holds a method's own tensors (its IG per layer, other path forms, class paths)."""

    TASKS: ClassVar[tuple[str, ...]] = ("neuron_path", "pruning")
    REQUIRED: ClassVar[tuple[str, ...]] = ("item_ids", "labels", "paths", "jas_ref")

    item_ids: Tensor  # (N,) int64, the fit images' item ids
    labels: Tensor  # (N,) int64, their classes
    paths: Tensor  # (N, L) or (N, L, K) int64
    jas_ref: Tensor  # (N,) float32
    extra: dict[str, Tensor] = field(default_factory=dict)

    def tensors(self) -> dict[str, Tensor]:
        return {**self.extra, "item_ids": self.item_ids, "labels": self.labels, "paths": self.paths,
                "jas_ref": self.jas_ref}

    @classmethod
    def read(cls, finding: Finding) -> "PathFinding | None":
        """The typed view; None for a finding without paths (the no-op control keeps every unit)."""
        if "paths" not in finding.tensors:
            return None
        _require(finding, cls.REQUIRED, "path finding")
        t = finding.tensors
        return cls(*(t[n] for n in cls.REQUIRED), extra={n: v for n, v in t.items() if n not in cls.REQUIRED})


SCORE = "alpha."  # alpha.<site>: a signed score per weight of the site, fp32
INDEX, VALUE, SHAPE = "alpha_index.", "alpha_value.", "alpha_shape."  # the same, stored sparsely
RANKING = "score."  # score.<site>: a ranking baseline's non-negative score, largest zeroed first
NEW = "new."  # new.<parameter>: the new value of an edited UNet parameter


@dataclass
class WeightScoreFinding:
    """Per weight site (a UNet parameter's dotted name), one of: `scores` (a signed score per weight, the site's
    shape), `sparse` ((flat index, score, shape) of the only entries an edit can reach), `ranking` (a ranking
    baseline's non-negative score per weight) or `new_weights` (the value a model-editing baseline writes)."""

    TASKS: ClassVar[tuple[str, ...]] = ("concept",)

    scores: dict[str, Tensor] = field(default_factory=dict)
    sparse: dict[str, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)
    new_weights: dict[str, Tensor] = field(default_factory=dict)
    ranking: dict[str, Tensor] = field(default_factory=dict)

    def tensors(self) -> dict[str, Tensor]:
        out = {SCORE + s: t for s, t in self.scores.items()}
        for site, (index, value, shape) in self.sparse.items():
            out[INDEX + site], out[VALUE + site], out[SHAPE + site] = index, value, shape
        out.update({NEW + s: t for s, t in self.new_weights.items()})
        out.update({RANKING + s: t for s, t in self.ranking.items()})
        return out

    @classmethod
    def read(cls, finding: Finding) -> "WeightScoreFinding":
        t = finding.tensors
        index, value, shape = (_by_prefix(t, p) for p in (INDEX, VALUE, SHAPE))
        typed = cls(_by_prefix(t, SCORE), {s: (i, value[s], shape[s]) for s, i in index.items()}, _by_prefix(t, NEW),
                    _by_prefix(t, RANKING))
        if not (typed.scores or typed.sparse or typed.new_weights or typed.ranking):
            raise VismechError(f"finding of method '{finding.method}' is not a weight-score finding: it has no "
                               f"'{SCORE}*', '{INDEX}*', '{RANKING}*' or '{NEW}*' tensors")
        return typed

    def dense(self, sign: float = 1.0, fill: float = 0.0) -> dict[str, Tensor]:
        """sign x score per weight of every scored site; entries that were not stored get `fill`."""
        if self.scores:
            return {site: sign * s for site, s in self.scores.items()}
        out = {}
        for site, (index, value, shape) in self.sparse.items():
            dense = torch.full(shape.tolist(), fill)
            dense.view(-1)[index] = sign * value
            out[site] = dense
        return out


SAE_PREFIX = "sae."  # the SAE's tensors (`vismech.methods.sae.TopKSAE.tensors`)


@dataclass
class BiasFinding:
    """What steers generation towards a target attribute distribution: an SAE (`sae`, its tensors by name) with
    its latents ranked per class (`ranked_latents`, (classes, latents)), or one direction in h-space per class
    (`directions`); and the calibration of strength to the shares it gives (`calibration`: `strengths`, `pi`,
    `M`, `predicted`), where the method calibrates. `extra` holds a method's own tensors (probe weights, scores)."""

    TASKS: ClassVar[tuple[str, ...]] = ("bias",)

    sae: dict[str, Tensor] = field(default_factory=dict)
    ranked_latents: Tensor | None = None
    directions: Tensor | None = None
    calibration: dict[str, Tensor] = field(default_factory=dict)
    extra: dict[str, Tensor] = field(default_factory=dict)

    def tensors(self) -> dict[str, Tensor]:
        out = {**self.extra, **{SAE_PREFIX + n: t for n, t in self.sae.items()},
               **{"calibration." + n: t for n, t in self.calibration.items()}}
        if self.ranked_latents is not None:
            out["latents.ranked"] = self.ranked_latents
        if self.directions is not None:
            out["directions"] = self.directions
        return out

    @classmethod
    def read(cls, finding: Finding) -> "BiasFinding":
        t = finding.tensors
        named = {n for n in t if n.startswith((SAE_PREFIX, "calibration.")) or n in ("latents.ranked", "directions")}
        return cls(_by_prefix(t, SAE_PREFIX), t.get("latents.ranked"), t.get("directions"),
                   _by_prefix(t, "calibration."), {n: v for n, v in t.items() if n not in named})

"""Baselines of the bias task beside DiffLens (docs/methods/difflens.md §8); the no-op is `noop` in controls.py.

- `random_latents` (control): the same SAE as difflens (same config and seed, so the same draws), but each
  class's latents drawn uniformly at random, the same count; edited, calibrated and drawn exactly like difflens.
- `h_direction`: no SAE; at the same steps h moves along a per-step class direction in h-space,
  h_t += s * d[t, c]: the difference of class means (`direction="mean_diff"`, mean of class c minus mean of the
  rest) or the per-step probe's weight vector for c minus the mean of the others (`direction="probe"`), rescaled
  to the mean difference's norm so the strengths of the two read alike. Calibrated like difflens.
- `prompt_augmentation` (conditional subjects): each sample's prompt is replaced, with probability `strength`, by
  the same prompt naming a class drawn from the target distribution ("a sneaker" -> "a green sneaker").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..datasets.bias import BiasFitData
from ..edit import Edit, NoEdit
from ..errors import VismechError
from ..finding import Finding
from ..method import Method, MethodConfig
from ..registry import METHODS
from ..sampling import PromptEdit
from ..subject import DiffusionSubject, Subject
from .difflens import TASK, ClassDraw, ProbeConfig, SAEMethod, SteeringEdit, SteeringMethod, Trajectories, balanced, \
    check_bias_inputs, train_probes
from .findings import BiasFinding

DIRECTIONS = ("mean_diff", "probe")


@METHODS.register()
class RandomLatents(SAEMethod):
    """Control: difflens's SAE and edit, with each class's latents drawn at random (same count)."""

    name = "random_latents"
    control = True

    def locate(self, subject, data, traj):
        cfg, k = self.config, len(data.classes)
        sae, sae_meta = self.train_sae(subject, data, traj)
        gen = self.generator("latents")
        keep = min(cfg.ranked_per_class, sae.n_latents)
        ranked = torch.stack([torch.randperm(sae.n_latents, generator=gen)[:keep] for _ in range(k)])
        return {**sae.tensors(), "latents.ranked": ranked}, {"sae": sae_meta}


@dataclass
class HDirectionConfig(ProbeConfig):
    direction: str = "mean_diff"

    def validate(self) -> None:
        super().validate()
        if self.direction not in DIRECTIONS:
            raise VismechError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")


def mean_differences(h: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(T, K, D): per step, the mean flattened h of class c minus the mean of the other labelled samples."""
    x = h.flatten(2)
    out = []
    for c in range(k):
        inside, outside = labels == c, (labels >= 0) & (labels != c)
        if not inside.any() or not outside.any():
            raise VismechError(f"class {c} has no fit samples (or nothing else has); widen fit_ids")
        out.append(x[inside].mean(0) - x[outside].mean(0))
    return torch.stack(out, 1)


class DirectionEdit(SteeringEdit):
    """h_t += s * d[t, c] for a sample of class c."""

    def __init__(self, subject, directions: torch.Tensor, strength: float, classes_of, window):
        super().__init__(subject, classes_of, window)
        self.directions, self.strength = directions.to(subject.device), strength

    def delta(self, h: torch.Tensor, classes: torch.Tensor, step: int) -> torch.Tensor:
        return self.strength * self.directions[step][classes].view(h.shape)


@METHODS.register()
class HDirection(SteeringMethod):
    """Baseline: a per-step linear class direction in h (class-mean difference or probe weights) added at its steps."""

    name = "h_direction"
    Config = HDirectionConfig

    def locate(self, subject, data, traj: Trajectories):
        cfg, k = self.config, len(data.classes)
        labels = traj.labels
        directions = mean_differences(traj.h, labels, k)
        if cfg.direction == "probe":
            keep = balanced(labels, cfg.probe_per_class, k, self.generator("probe-split"))
            probes, _ = train_probes(traj.h[keep].flatten(2), labels[keep], k, cfg.probe_lr, cfg.probe_epochs,
                                     cfg.probe_batch_size, self.generator("probes"))
            w = probes.weight - probes.weight.mean(1, keepdim=True)  # c against the average of the others
            directions = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12) * directions.norm(dim=-1, keepdim=True)
        return {"directions": directions}, {"direction": cfg.direction}

    def make_edit(self, subject, finding, strength, classes_of, window) -> SteeringEdit:
        return DirectionEdit(subject, BiasFinding.read(finding).directions, strength, classes_of, window)


@dataclass
class PromptAugmentationConfig(MethodConfig):
    pass


class AugmentedPrompts(PromptEdit):
    """Sample i's prompt becomes its version naming class c_i, where c_i ~ (1 - s) unedited + s * target."""

    def __init__(self, subject: Subject, table: dict[str, list[str]], draw: ClassDraw):
        super().__init__(subject)
        self.table, self.draw = table, draw

    def rewrite(self, prompts: list[str], ids: torch.Tensor) -> list[str]:
        missing = sorted({p for p in prompts if p not in self.table})
        if missing:
            raise VismechError(f"prompt augmentation knows no class wording of prompt(s) {missing[:3]}; it knows: "
                               f"{sorted(self.table)[:5]}")
        return [self.table[p][c] if c >= 0 else p for p, c in zip(prompts, self.draw(ids).tolist())]


@METHODS.register()
class PromptAugmentation(Method):
    """Baseline (conditional subjects): name a class drawn from the target distribution in each prompt."""

    name = "prompt_augmentation"
    tasks = (TASK,)
    Config = PromptAugmentationConfig
    strength_range = (0.0, 1.0)  # the share of samples whose prompt is augmented
    identity_strength = 0.0

    def fit(self, subject: Subject, data: Any) -> Finding:
        data: BiasFitData = check_bias_inputs(subject, data)
        if not isinstance(subject, DiffusionSubject) or not subject.conditional or not data.attribute_prompts:
            raise VismechError(f"prompt_augmentation needs a text-conditional subject and fit data with "
                               f"attribute_prompts; subject '{subject.id}' / data '{data.name}' has none")
        return self.new_finding(subject, TASK, meta={"prompts": data.class_wordings(), "classes": list(data.classes),
                                                     "target": list(data.target)})

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        strength = self.check_strength(strength)
        self.check_finding(subject, finding)
        if strength == self.identity_strength:
            return NoEdit(subject)
        pi = torch.tensor([1 - strength, *(strength * q for q in finding.meta["target"])], dtype=torch.float64)
        return AugmentedPrompts(subject, finding.meta["prompts"], ClassDraw(self, pi))

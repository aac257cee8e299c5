"""Controls every task carries: the no-op method and random selections of the same count."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..edit import Edit, NoEdit
from ..errors import VismechError
from ..finding import Finding
from ..method import Method, MethodConfig
from ..registry import METHODS
from ..subject import Subject
from .neurons import PREFIX, scale_units_edit, units_of

ALL_TASKS = "*"


@METHODS.register()
class NoOp(Method):
    """Control: finds nothing and edits nothing; every metric must equal the unedited model's."""

    name = "noop"
    tasks = (ALL_TASKS,)
    control = True
    strength_range = (-math.inf, math.inf)  # any finite strength: it runs beside every method's sweep

    def fit(self, subject: Subject, data) -> Finding:
        return self.new_finding(subject, task="*")

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        self.check_strength(strength)
        return NoEdit(subject)


@dataclass
class RandomNeuronsConfig(MethodConfig):
    units_per_layer: int = 1
    site_prefix: str = "ffn."

    def validate(self) -> None:
        if self.units_per_layer < 1:
            raise VismechError(f"units_per_layer must be >= 1, got {self.units_per_layer}")


@METHODS.register()
class RandomNeurons(Method):
    """Control: uniformly random units per FFN layer (seeded); the edit scales them by 1 - strength."""

    name = "random_neurons"
    tasks = ("classifier_ablation",)
    Config = RandomNeuronsConfig
    control = True

    def fit(self, subject: Subject, data) -> Finding:
        sites = [s for s in subject.sites_of(self.config.site_prefix) if s.kind == "activation"]
        if not sites:
            raise VismechError(f"subject '{subject.id}' has no activation sites starting with '{self.config.site_prefix}'")
        gen = self.generator("units")
        tensors = {}
        for site in sites:
            width = site.width
            if width is None:
                raise VismechError(f"site '{site.name}' of subject '{subject.id}' does not state its width")
            if self.config.units_per_layer > width:
                raise VismechError(f"units_per_layer={self.config.units_per_layer} exceeds the {width} units of site '{site.name}'")
            tensors[PREFIX + site.name] = torch.randperm(width, generator=gen)[: self.config.units_per_layer].sort().values
        return self.new_finding(subject, task="classifier_ablation", tensors=tensors)

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        strength = self.check_strength(strength)
        self.check_finding(subject, finding)
        return scale_units_edit(subject, units_of(finding), 1.0 - strength)


"""pruning: keep each class's path, mask a fraction of the other FFN units, and measure what the class keeps.

docs/methods/neuronpath.md §7. The method's finding holds per-image paths of the fit images (each class's first
`fit_per_class` images); a class path is the per-(layer, rank) mode over them. Evaluation uses the class's next
images, disjoint from the fit ones. In each of the first `depth` layers, at the CLS token only, a fraction P of the
units that are not on the image's class path is zeroed; path units are always kept. The sweep's points are the
fractions P. A method without paths (the no-op) keeps nothing: its curve is pruning with no protection.

Masks are nested and shared: per (run seed, class, layer) one seeded permutation of the units orders them, and P
zeroes the first round(P * n) non-path units in that order, so P = 0.3 masks a superset of P = 0.1 and two methods
differ only where their paths differ.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from ..edit import HookEdit
from ..errors import VismechError, check_range
from ..method import Method
from ..methods.neuron_path import class_paths, ffn_modules, ffn_width
from ..registry import TASKS
from .base import Benchmark, TaskConfig
from .images import classifier_items


@dataclass
class PruningConfig(TaskConfig):
    strengths: list[float] = None  # mask fractions P
    fit_per_class: int = 40  # class paths from each class's first N images
    eval_per_class: int | None = 20  # evaluated on the class's next N images (null: all the rest)
    depth: int | None = None  # prune the first d layers (null: every layer)
    images: str | None = None  # an ImageNet-style folder (paper track); null: the mini world's test split

    def __post_init__(self) -> None:
        if self.strengths is None:
            self.strengths = [0.0, 0.1, 0.3, 0.5, 1.0]

    def validate(self) -> None:
        super().validate()
        if self.fit_per_class < 1:
            raise VismechError(f"task.fit_per_class must be >= 1, got {self.fit_per_class}")
        if self.eval_per_class is not None and self.eval_per_class < 1:
            raise VismechError(f"task.eval_per_class must be >= 1 or null, got {self.eval_per_class}")
        if self.depth is not None and self.depth < 1:
            raise VismechError(f"task.depth must be >= 1 or null, got {self.depth}")


def mask_seed(run_seed: int, label: int, layer: int) -> int:
    digest = hashlib.sha256(f"vismech-pruning|{run_seed}|{label}|{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def pruning_masks(keep: torch.Tensor, fractions: list[float], run_seed: int) -> torch.Tensor:
    """keep: (C, d, N) bool, the class-path units. Returns (P, C, d, N) bool: True = zeroed."""
    classes, depth, width = keep.shape
    masks = torch.zeros(len(fractions), classes, depth, width, dtype=torch.bool)
    for c in range(classes):
        for layer in range(depth):
            order = torch.randperm(width, generator=torch.Generator().manual_seed(mask_seed(run_seed, c, layer)))
            candidates = order[~keep[c, layer, order]]  # non-path units, in the seeded order
            for p, fraction in enumerate(fractions):
                masks[p, c, layer, candidates[: round(fraction * candidates.numel())]] = True
    return masks


def prune_edit(subject, masks: torch.Tensor, labels: torch.Tensor) -> HookEdit:
    """Zero the masked units of each row's class at the CLS token of the first d layers. masks: (C, d, N)."""
    row_masks = masks[labels.cpu()]  # (b, d, N)

    def make(layer: int):
        def hook(output: torch.Tensor) -> torch.Tensor:
            keep = (~row_masks[:, layer]).to(output.device, output.dtype)
            new = output.clone()
            new[:, 0] = output[:, 0] * keep
            return new

        return hook

    return HookEdit(subject, {f"ffn.{layer}": make(layer) for layer in range(masks.shape[1])})


@TASKS.register()
class PruningBenchmark(Benchmark):
    """Class-path pruning of a ViT: keep the class path, zero a fraction of the other FFN units, keep the class?"""

    name = "pruning"
    version = "1"
    protocol = ("class paths from each class's first `fit_per_class` images (mode per layer and rank), evaluated on "
                "the class's next `eval_per_class`; a fraction P of the non-path FFN units zeroed at the CLS token "
                "of the first `depth` layers, seeded nested masks; strength = P")
    metric_names = ("true_class_prob", "accuracy")
    primary_metric = "true_class_prob"
    headline_rule = "the largest mask fraction of the sweep (P = 1: every non-path unit of the pruned layers zeroed)"
    Config = PruningConfig

    @classmethod
    def check_strength(cls, method: Method, strength: float) -> float:
        return check_range("mask fraction (task.strengths)", strength, 0.0, 1.0)

    @classmethod
    def check_subject(cls, task_cfg: PruningConfig, subject) -> None:
        layers = len(ffn_modules(subject))
        if task_cfg.depth is not None and task_cfg.depth > layers:
            raise VismechError(f"task.depth must be at most the {layers} FFN layers of '{subject.id}', got "
                               f"{task_cfg.depth}")

    @classmethod
    def make_items(cls, task_cfg: PruningConfig, subject):
        hi = None if task_cfg.eval_per_class is None else task_cfg.fit_per_class + task_cfg.eval_per_class
        return classifier_items(subject, task_cfg.images, limit=task_cfg.limit,
                                per_class=(task_cfg.fit_per_class, hi))

    @classmethod
    def make_fit_data(cls, task_cfg: PruningConfig, subject):
        return classifier_items(subject, task_cfg.images, per_class=(0, task_cfg.fit_per_class))

    def __init__(self, subject, method, finding, strengths, run_seed, task_cfg: PruningConfig | None = None):
        super().__init__(subject, method, finding, strengths, run_seed, task_cfg)
        layers = len(ffn_modules(subject))
        if task_cfg is not None:
            self.check_subject(task_cfg, subject)
        depth = layers if task_cfg is None or task_cfg.depth is None else task_cfg.depth
        width, classes = ffn_width(subject), subject.num_classes
        keep = torch.zeros(classes, depth, width, dtype=torch.bool)
        if "paths" in finding.tensors:  # the no-op has no paths and keeps nothing
            paths = class_paths(finding.tensors["paths"], finding.tensors["labels"], classes, width)[:, :depth]
            present = paths >= 0
            c, layer, rank = present.nonzero(as_tuple=True)
            keep[c, layer, paths[c, layer, rank]] = True
        self.depth, self.kept_units = depth, keep.sum((1, 2))
        self.masks = pruning_masks(keep, self.strengths, run_seed)

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        ids, images, labels = batch["id"], batch["image"], batch["label"]
        for i in range(len(self.strengths)):
            with prune_edit(self.subject, self.masks[i], labels):
                probs = self.subject.logits(images).softmax(-1)
            self.metric(i, "true_class_prob").update(ids, probs.gather(1, labels[:, None]).squeeze(1).double())
            self.metric(i, "accuracy").update(ids, (probs.argmax(-1) == labels).double())

    def artifacts(self) -> dict:
        """The pruning curve: mean true-class probability and accuracy against the mask fraction, with CIs."""
        figure = Figure(figsize=(5, 3.4))
        ax = figure.subplots()
        for metric, style in (("true_class_prob", "o-"), ("accuracy", "s--")):
            values = [s[metric] for s in self.summaries]
            ax.errorbar(self.strengths, [v["value"] for v in values],
                        yerr=[[v["value"] - v["ci_low"] for v in values], [v["ci_high"] - v["value"] for v in values]],
                        fmt=style, capsize=3, label=metric.replace("_", " "))
        ax.set(xlabel="fraction of non-path FFN units zeroed (P)", ylim=(0, 1.02),
               title=f"{self.method.name} on {self.subject.id}: first {self.depth} layers")
        ax.legend()
        ax.grid(alpha=0.3)
        curve = {"mask_fraction": self.strengths, "depth": self.depth, "kept_units_per_class": self.kept_units.tolist(),
                 **{m: [s[m]["value"] for s in self.summaries] for m in self.metric_names}}
        return {"pruning_curve": figure, "pruning_curve_values": curve}

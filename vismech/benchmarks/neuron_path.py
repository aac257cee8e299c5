"""neuron_path: for each image, the method's path through the ViT's FFN layers; how much it carries the true class.

Per image: the JAS of the found path (from the finding), and the true-class probability ratio and top-1 change
when the path units are scaled by the strength (0 removes, 2 enhances) inside a normal forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..datasets.world import WorldItems
from ..methods.neuron_path import select_items
from ..registry import TASKS
from .base import Benchmark, TaskConfig


@dataclass
class NeuronPathConfig(TaskConfig):
    limit: int | None = 64  # the first N test images by id


@TASKS.register()
class NeuronPathBenchmark(Benchmark):
    """Per-image neuron paths in a ViT: JAS, and the true-class probability when the path is removed or enhanced."""

    name = "neuron_path"
    version = "1"
    protocol = ("mini world test split (first `limit` ids); CLS-token FFN units; JAS ref form, m = 20; "
                "edits scale the path units inside a normal forward pass")
    metric_names = ("jas", "prob_ratio", "top1_change")
    primary_metric = "jas"
    headline_rule = "the removal point (strength 0); the sweep also holds enhancement (strength 2)"
    Config = NeuronPathConfig

    @classmethod
    def make_items(cls, task_cfg: NeuronPathConfig) -> WorldItems:
        return WorldItems("test", limit=task_cfg.limit)

    @classmethod
    def make_fit_data(cls, task_cfg: NeuronPathConfig) -> WorldItems:
        return cls.make_items(task_cfg)  # paths are found for the very images they are evaluated on

    def headline_strength(self) -> float:
        return min(self.strengths)

    def _jas(self, ids: torch.Tensor) -> torch.Tensor:
        """The finding's JAS of these items; a method that finds no path (the no-op) scores 0."""
        tensors = self.finding.tensors
        if "item_ids" not in tensors:
            return torch.zeros(len(ids), dtype=torch.float64)
        return select_items(self.finding, ids.cpu()).tensors["jas_ref"].double()

    def _finding_for(self, ids: torch.Tensor):
        return select_items(self.finding, ids.cpu()) if "item_ids" in self.finding.tensors else self.finding

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        ids, images, labels = batch["id"], batch["image"], batch["label"]
        base = self.subject.logits(images).softmax(-1)
        p_base = base.gather(1, labels[:, None]).squeeze(1).double()
        right_base = (base.argmax(-1) == labels).double()
        jas, finding = self._jas(ids), self._finding_for(ids)
        for i, strength in enumerate(self.strengths):
            with self.method.edit(self.subject, finding, strength):
                edited = self.subject.logits(images).softmax(-1)
            self.metric(i, "jas").update(ids, jas)
            self.metric(i, "prob_ratio").update(ids, edited.gather(1, labels[:, None]).squeeze(1).double() / p_base)
            self.metric(i, "top1_change").update(ids, (edited.argmax(-1) == labels).double() - right_base)

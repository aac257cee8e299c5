"""classifier_ablation: the thin end-to-end task of the foundation, until the neuron-path task replaces it.

A method picks FFN units of a ViT classifier; the edit scales them by 1 - strength; the benchmark measures the
edited model's accuracy and the drop of the ground-truth probability on held-out items.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..datasets.world import WorldItems
from ..registry import TASKS
from .base import Benchmark, TaskConfig


@dataclass
class ClassifierAblationConfig(TaskConfig):
    limit: int | None = 1000  # the first N test items by id


@TASKS.register()
class ClassifierAblation(Benchmark):
    """Ablate FFN units of a ViT classifier; measure accuracy and ground-truth probability drop (placeholder task)."""

    name = "classifier_ablation"
    version = "1"
    protocol = "mini world test split (first `limit` ids); FFN units scaled by (1 - strength) at every token"
    metric_names = ("true_class_prob_drop", "accuracy")
    primary_metric = "true_class_prob_drop"
    headline_rule = "the largest strength of the sweep (full ablation at 1.0)"
    Config = ClassifierAblationConfig

    @classmethod
    def make_items(cls, task_cfg: ClassifierAblationConfig) -> WorldItems:
        return WorldItems("test", limit=task_cfg.limit)

    @classmethod
    def make_fit_data(cls, task_cfg: ClassifierAblationConfig) -> WorldItems:
        return WorldItems("train", limit=1000)

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        ids, images, labels = batch["id"], batch["image"], batch["label"]
        base = self.subject.logits(images).softmax(-1).gather(1, labels[:, None]).squeeze(1)
        for i, strength in enumerate(self.strengths):
            with self.method.edit(self.subject, self.finding, strength):
                probs = self.subject.logits(images).softmax(-1)
            self.metric(i, "accuracy").update(ids, (probs.argmax(-1) == labels).double())
            self.metric(i, "true_class_prob_drop").update(ids, base.double() - probs.gather(1, labels[:, None]).squeeze(1).double())

"""neuron_path: for each image, the method's path through the ViT's FFN layers; how much it carries the true class.

Per image: the JAS of the found path (from the finding), and the true-class probability ratio and top-1 change
when the path units are scaled by the strength (0 removes, 2 enhances) inside a normal forward pass. Class level
(docs/methods/neuronpath.md §6.4): how often an image's path agrees with its class path (the per-layer mode over
the class's images), and how similar its class's (layer, unit) frequency vector is to the other classes'.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..methods.findings import PathFinding
from ..methods.neuron_path import as_ranks, class_frequency, class_paths, class_similarity, ffn_width, select_items
from ..plots import matrix_figure, path_figure
from ..registry import TASKS
from .base import Benchmark, TaskConfig
from .images import classifier_items

PLOTTED_ITEMS = 4


@dataclass
class NeuronPathConfig(TaskConfig):
    limit: int | None = 64  # the first N images by id
    images: str | None = None  # an ImageNet-style folder (paper track); null: the mini world's test split


@TASKS.register()
class NeuronPathBenchmark(Benchmark):
    """Per-image neuron paths in a ViT: JAS, and the true-class probability when the path is removed or enhanced."""

    name = "neuron_path"
    version = "2"
    protocol = ("test images (first `limit` ids); FFN units at the CLS token (all patch tokens for pooled heads); "
                "JAS ref form, m = 20; edits scale the path "
                "units inside a normal forward pass; class paths = per-layer mode over the run's images")
    metric_names = ("jas", "prob_ratio", "top1_change", "path_consistency", "class_similarity")
    primary_metric = "jas"
    headline_rule = "the removal point (strength 0); the sweep also holds enhancement (strength 2)"
    Config = NeuronPathConfig

    @classmethod
    def make_items(cls, task_cfg: NeuronPathConfig, subject):
        return classifier_items(subject, task_cfg.images, limit=task_cfg.limit)

    @classmethod
    def make_fit_data(cls, task_cfg: NeuronPathConfig, subject):
        return cls.make_items(task_cfg, subject)  # paths are found for the very images they are evaluated on

    def __init__(self, subject, method, finding, strengths, run_seed, task_cfg=None):
        super().__init__(subject, method, finding, strengths, run_seed, task_cfg)
        self.has_paths = PathFinding.read(finding) is not None  # the no-op finds none: every path statistic is 0
        if self.has_paths:
            self._class_statistics()

    def _class_statistics(self) -> None:
        found, width, classes = PathFinding.read(self.finding), ffn_width(self.subject), self.subject.num_classes
        paths, labels = as_ranks(found.paths), found.labels
        self.class_paths = class_paths(paths, labels, classes, width)
        self.similarity = class_similarity(class_frequency(paths, labels, classes, width))
        agree = (paths == self.class_paths[labels]).double().mean((1, 2))
        present = torch.bincount(labels, minlength=classes) > 0
        # classes without images have a zero vector; they are left out of the mean
        others = (self.similarity.sum(1) - self.similarity.diagonal()) / max(int(present.sum()) - 1, 1)
        self.item_stats = {int(i): (float(a), float(others[y])) for i, a, y in zip(found.item_ids, agree, labels)}

    def headline_strength(self) -> float:
        return min(self.strengths)

    def _per_item(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.has_paths:
            zeros = torch.zeros(len(ids), dtype=torch.float64)
            return {"jas": zeros, "path_consistency": zeros, "class_similarity": zeros}
        stats = torch.tensor([self.item_stats[int(i)] for i in ids], dtype=torch.float64)
        jas = PathFinding.read(select_items(self.finding, ids.cpu())).jas_ref.double()
        return {"jas": jas, "path_consistency": stats[:, 0], "class_similarity": stats[:, 1]}

    def _finding_for(self, ids: torch.Tensor):
        return select_items(self.finding, ids.cpu()) if self.has_paths else self.finding

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        ids, images, labels = batch["id"], batch["image"], batch["label"]
        base = self.subject.logits(images).softmax(-1)
        per_item, finding = self._per_item(ids), self._finding_for(ids)
        for i, strength in enumerate(self.strengths):
            with self.method.edit(self.subject, finding, strength):
                edited = self.subject.logits(images).softmax(-1)
            for name, values in per_item.items():
                self.metric(i, name).update(ids, values)
            self.metric(i, "prob_ratio").update(ids, edited, base, labels)
            self.metric(i, "top1_change").update(ids, edited, base, labels)

    def artifacts(self) -> dict:
        if not self.has_paths:
            return {}
        found = PathFinding.read(self.finding)
        first = found.item_ids[:PLOTTED_ITEMS]
        chosen = PathFinding.read(select_items(self.finding, first))
        shown = {self.method.name: (as_ranks(chosen.paths)[:, :, 0], chosen.extra.get("layer_ig"))}
        if "activation_paths" in chosen.extra:  # NeuronPath also reports the Activation baseline on the same images
            shown["activation_path (same images)"] = (as_ranks(chosen.extra["activation_paths"])[:, :, 0], None)
        width = ffn_width(self.subject)
        names = getattr(self.subject, "class_names", None)
        paths = path_figure(shown, first.tolist(), chosen.labels.tolist(), width,
                            title=f"{self.method.name} on {self.subject.id}: unit per layer; area = layer's IG share",
                            class_names=names)
        present = torch.bincount(found.labels, minlength=self.subject.num_classes) > 0
        pairs = [(float(self.similarity[a, b]), a, b) for a in range(len(present)) for b in range(a + 1, len(present))
                 if present[a] and present[b]]
        pairs.sort(reverse=True)
        table = {"class_names": list(names) if names is not None else None,
                 "class_paths": self.class_paths.squeeze(-1).tolist(), "images_per_class": present.long().tolist(),
                 "most_similar": [{"classes": [a, b], "cosine": s} for s, a, b in pairs[:50]],
                 "least_similar": [{"classes": [a, b], "cosine": s} for s, a, b in pairs[::-1][:50]]}
        similarity = matrix_figure(self.similarity.float(), f"{self.method.name}: class path similarity",
                                   "cosine of (layer, unit) frequencies", class_names=names)
        return {"paths": paths, "class_similarity": similarity, "class_paths": table}

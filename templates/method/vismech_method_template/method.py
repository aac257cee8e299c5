"""Gradient x activation path: per layer, the FFN unit whose first-order attribution a * dp(y)/da is largest.

One forward and one backward pass per batch of images, at the clean input; each layer is scored on its own (no
joint path objective), which makes it a cheap baseline for the neuron_path and pruning tasks. Its finding is the
`PathFinding` those tasks read: `item_ids`, `labels`, `paths` (items, L[, K]) and `jas_ref` (the path's joint
attribution score, computed with the suite's own JAS code so it is comparable with every other method).
"""
from __future__ import annotations

import torch

from vismech.method import Method
from vismech.methods.findings import PathFinding
from vismech.methods.neuron_path import batches_to_explain, jas_of_paths, path_edit

from .config import Config


class GradXActivationPath(Method):
    name = "grad_x_activation_path"
    tasks = ("neuron_path", "pruning")
    Config = Config
    strength_range = (0.0, 2.0)  # the path units' multiplier: 0 removes, 2 enhances
    identity_strength = 1.0

    def scores(self, subject, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """a * dp(y)/da at the CLS token of every FFN layer: (b, N) per layer."""
        sites = [s.name for s in subject.sites_of("ffn.") if s.kind == "activation"]
        acts: list[torch.Tensor] = []

        def keep(output: torch.Tensor) -> None:
            output.retain_grad()
            acts.append(output)

        handles = [subject.hook(site, keep) for site in sites]
        try:
            with torch.enable_grad():
                probs = subject.logits(images).softmax(-1)
                probs.gather(1, labels.to(probs.device)[:, None]).sum().backward()
        finally:
            for handle in handles:
                handle.remove()
        return [(a * a.grad)[:, 0].detach().float() for a in acts]

    def fit(self, subject, data):
        ids, labels, paths, images_all = [], [], [], []
        for batch_ids, images, batch_labels in batches_to_explain(subject, data, self.config.batch_size):
            per_layer = self.scores(subject, images, batch_labels)
            paths.append(torch.stack([s.topk(self.config.top_k, dim=-1).indices for s in per_layer], 1).cpu())
            ids.append(batch_ids)
            labels.append(batch_labels)
            images_all.append(images)
        ids, labels, paths = torch.cat(ids), torch.cat(labels), torch.cat(paths)
        jas = jas_of_paths(subject, {"image": torch.cat(images_all), "label": labels}, paths)
        if self.config.top_k == 1:
            paths = paths.squeeze(-1)
        found = PathFinding(ids, labels, paths, jas["ref"].float(),
                            extra={"jas_ig": jas["ig"].float(), "layer_ig": jas["layers"].float()})
        return self.new_finding(subject, "neuron_path", tensors=found.tensors())

    def edit(self, subject, finding, strength):
        strength = self.check_strength(strength)
        self.check_finding(subject, finding)
        return path_edit(subject, PathFinding.read(finding).paths, strength)

"""FID on any feature space, through torchmetrics' FrechetInceptionDistance with a custom feature module.

The mini track measures FID in the world judge's feature space (`judge_world.features`); the paper track uses
Inception features. The feature space is part of the number's fingerprint: FIDs in different spaces never compare.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


class FeatureModule(nn.Module):
    """Adapts `features(images in [0, 1]) -> (N, d)` to the module torchmetrics expects."""

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor], num_features: int):
        super().__init__()
        self.features, self.num_features = features, num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images.float())


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor], num_features: int,
        batch_size: int = 500) -> float:
    """FID between two image sets (N, 3, H, W) in [0, 1], fed in fixed batches (the value does not depend on them)."""
    metric = FrechetInceptionDistance(feature=FeatureModule(features, num_features), normalize=True)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    return float(metric.compute())

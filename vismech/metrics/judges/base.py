"""What the generative benchmarks call to judge images; each role carries its fingerprint."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

Tensor = torch.Tensor


@dataclass
class Judges:
    """What the generative benchmarks call. Images are (N, 3, H, W) in [0, 1], at the subject's resolution."""

    classes: tuple[str, ...]  # what `classify` tells apart (concept: garment or ImageNet classes)
    classify: Callable[[Tensor], Tensor]  # -> (N, len(classes)) probabilities
    features: Callable[[Tensor], Tensor]  # -> (N, d): the FID feature space
    reference: Tensor  # (M, d) features of the FID reference set
    encode_image: Callable[[Tensor], Tensor]  # CLIP, L2-normalised
    encode_text: Callable[[list[str]], Tensor]
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)  # per role: classifier, clip, fid, cmmd
    attributes: dict[str, tuple[tuple[str, ...], Callable[[Tensor], Tensor]]] = field(default_factory=dict)
    # (M', d) features of KID's reference set, in the FID feature space; None: the FID reference
    kid_reference: Tensor | None = None
    # per attribute: (M',) index into `attributes[name][0]` of each KID reference image's class (-1: none), where the
    # reference's classes are known; the bias task's per-class quality needs them
    kid_reference_classes: dict[str, Tensor] = field(default_factory=dict)
    # CMMD's embedding (L2-normalised CLIP ViT-L/14@336px) and the reference set's; None: no CMMD judge
    cmmd_features: Callable[[Tensor], Tensor] | None = None
    cmmd_reference: Tensor | None = None

    def kid_features(self) -> Tensor:
        return self.reference if self.kid_reference is None else self.kid_reference

"""The mini zoo: small models of the paper track's architecture classes, trained by the suite's own recipes."""
from __future__ import annotations

from ..registry import MODELS
from . import vit_digits

MODELS.add(vit_digits.NAME, vit_digits.load, summary="mini: timm ViT (4 blocks, 48 wide) trained on 8x8 sklearn digits")

RECIPES = {vit_digits.NAME: vit_digits}

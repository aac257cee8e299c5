"""Paper-track model loaders: real architectures and real weights (a user's file or the hub), one subject each."""
from __future__ import annotations

from ..registry import MODELS
from . import ddpm, stable_diffusion, timm_vit

MODELS.add(timm_vit.NAME, timm_vit.load, summary=timm_vit.SUMMARY)
MODELS.add(stable_diffusion.NAME, stable_diffusion.load, summary=stable_diffusion.SUMMARY)
MODELS.add(ddpm.NAME, ddpm.load, summary=ddpm.SUMMARY)

"""Paper-track model loaders: real architectures and real weights (a user's file or the hub), one subject each.
Each registers itself beside its loader (`@MODELS.register`)."""
from __future__ import annotations

from . import ddpm, stable_diffusion, timm_vit  # noqa: F401  (importing registers them)

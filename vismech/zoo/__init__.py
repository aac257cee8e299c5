"""The mini zoo: small models of the paper track's architecture classes, trained by the suite's own recipes.

`RECIPES` maps each name to its recipe module (see `recipe.py` for the contract), in build order: a model comes
after the models it is built from (`NEEDS`). The models a run can name register beside their loaders
(`@MODELS.register`).
"""
from __future__ import annotations

from . import clip_world, ddpm_world, judge_world, sd_world, vit_world

RECIPES = {m.NAME: m for m in (judge_world, vit_world, clip_world, ddpm_world, sd_world)}

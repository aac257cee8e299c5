"""The mini zoo: small models of the paper track's architecture classes, trained by the suite's own recipes.

`RECIPES` maps each name to its recipe module (see `recipe.py` for the contract), in build order: a model comes
after the models it is built from (`NEEDS`).
"""
from __future__ import annotations

from ..registry import MODELS
from . import clip_world, ddpm_world, judge_world, sd_world, vit_world

RECIPES = {m.NAME: m for m in (judge_world, vit_world, clip_world, ddpm_world, sd_world)}

MODELS.add(vit_world.NAME, vit_world.load, summary=vit_world.SUMMARY)
MODELS.add(ddpm_world.NAME, ddpm_world.subject, summary=ddpm_world.SUMMARY)
MODELS.add(sd_world.NAME, sd_world.subject, summary=sd_world.SUMMARY)

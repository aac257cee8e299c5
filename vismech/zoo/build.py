"""`vismech zoo build [NAME]`: retrain mini models by their recipes and update the shipped files and manifest."""
from __future__ import annotations

import platform
from importlib.metadata import version

from ..errors import UnknownNameError
from ..io import atomic_directory
from . import RECIPES
from .manifest import WEIGHTS_DIR, folder_hashes, update_manifest


def build(name: str, progress: bool = True) -> dict:
    if name not in RECIPES:
        raise UnknownNameError("mini model", name, RECIPES)
    recipe = RECIPES[name]
    with atomic_directory(WEIGHTS_DIR / name) as tmp:  # a failed build leaves the shipped model as it was
        measured = recipe.build(tmp, progress=progress)
        files = folder_hashes(tmp)
    entry = {"summary": recipe.SUMMARY, "needs": list(recipe.NEEDS), "files": files,
             "size_bytes": sum((WEIGHTS_DIR / name / f).stat().st_size for f in files), **measured,
             "built_with": {lib: version(lib) for lib in ("torch", "lightning", "timm", "diffusers", "transformers")}
             | {"machine": platform.machine()}}
    update_manifest(name, entry)
    return entry

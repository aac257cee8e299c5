"""`vismech zoo build [NAME]`: retrain mini models by their recipes and update the shipped weights and manifest."""
from __future__ import annotations

import platform
from importlib.metadata import version

from safetensors.torch import save_file

from ..errors import UnknownNameError
from ..io import atomic_write_bytes
from . import RECIPES
from .manifest import WEIGHTS_DIR, file_sha256, update_manifest


def build(name: str, progress: bool = True) -> dict:
    if name not in RECIPES:
        raise UnknownNameError("mini model", name, RECIPES)
    recipe = RECIPES[name]
    model, measured = recipe.train(progress=progress)
    path = WEIGHTS_DIR / f"{name}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"model": name})
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    entry = {"file": path.name, "sha256": file_sha256(path), "architecture": {"timm": recipe.ARCH, **recipe.ARCH_KWARGS},
             "parameters": sum(p.numel() for p in model.parameters()), **measured,
             "built_with": {"torch": version("torch"), "timm": version("timm"), "lightning": version("lightning"),
                            "platform": platform.machine()}}
    update_manifest(name, entry)
    return entry

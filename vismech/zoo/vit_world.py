"""vit_world: a small timm VisionTransformer that classifies the mini world's garments (the neuron-path subject)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from ..datasets.world import CLASSES, WorldConfig, WorldItems
from ..errors import VismechError
from ..registry import MODELS
from ..subject import ClassifierSubject, vit_ffn_sites
from .manifest import shipped_folder
from .recipe import adamw_one_cycle, fit, seeded_loader

NAME = "vit_world"
SUMMARY = "mini: timm ViT (6 blocks, 64 wide, 256 FFN units) classifying the world's 10 garments at 16 px"
NEEDS: tuple[str, ...] = ()
ARCH = "vit_tiny_patch16_224"  # timm's VisionTransformer; the sizes below replace the 224 px defaults
ARCH_KWARGS: dict[str, Any] = dict(img_size=16, patch_size=4, in_chans=3, num_classes=len(CLASSES), embed_dim=64,
                                   depth=6, num_heads=4, mlp_ratio=4.0)
PRETRAINED_CFG = dict(num_classes=len(CLASSES), input_size=(3, 16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
RECIPE: dict[str, Any] = dict(data="world train split (50,000 items)", epochs=8, batch_size=128, lr=2e-3,
                              weight_decay=0.05, label_smoothing=0.1, seed=0)
WEIGHTS_FILE = "model.safetensors"


def create(weights: str | Path | None = None):
    """The model through timm.create_model, loading `weights` (a .safetensors file) when given."""
    import timm

    if weights is None:
        return timm.create_model(ARCH, pretrained=False, **ARCH_KWARGS)
    weights = Path(weights)
    if weights.is_dir():
        weights = weights / WEIGHTS_FILE
    if not weights.is_file():
        raise VismechError(f"weights file '{weights}' does not exist; expected a .safetensors file")
    if weights.suffix != ".safetensors":
        raise VismechError(f"weights file '{weights}' must be .safetensors (pickle checkpoints are refused)")
    try:
        return timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights), **PRETRAINED_CFG),
                                 **ARCH_KWARGS)
    except SafetensorError as exc:
        raise VismechError(f"weights file '{weights}' is not a readable safetensors file: {exc}") from None
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatch from load_state_dict
        first = str(exc).strip().splitlines()[0]
        raise VismechError(f"weights file '{weights}' does not fit {NAME} ({ARCH} with {ARCH_KWARGS}): {first}") from None


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(PRETRAINED_CFG["mean"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(PRETRAINED_CFG["std"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


@MODELS.register(NAME, summary=SUMMARY)
def load(weights: str | None = None) -> ClassifierSubject:
    """The mini ViT; `weights` (a .safetensors file or a folder holding model.safetensors) overrides the shipped one."""
    path = Path(weights) if weights else shipped_folder(NAME) / WEIGHTS_FILE
    model = create(path)
    return ClassifierSubject(NAME, model, vit_ffn_sites(model), preprocess=_normalise, num_classes=len(CLASSES),
                             input_shape=PRETRAINED_CFG["input_size"], track="mini", class_names=CLASSES,
                             source=f"timm.create_model('{ARCH}') + {path.name}")


class _Classifier(L.LightningModule):
    def __init__(self, model, recipe: dict, steps: int):
        super().__init__()
        self.model, self.recipe, self.steps = model, recipe, steps

    def training_step(self, batch, _):
        x, y = batch
        loss = F.cross_entropy(self.model(_normalise(x)), y, label_smoothing=self.recipe["label_smoothing"])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.recipe["lr"], self.recipe["weight_decay"], self.steps)


@torch.no_grad()
def accuracy(model, items: WorldItems, batch_size: int = 1000) -> float:
    data = items.tensors()
    correct = 0
    for start in range(0, len(items), batch_size):
        x, y = data["image"][start:start + batch_size], data["label"][start:start + batch_size]
        correct += int((model(_normalise(x)).argmax(-1) == y).sum())
    return correct / len(items)


def train(progress: bool = False, limit: int | None = None, **overrides) -> tuple[torch.nn.Module, dict]:
    """The recipe; `limit` and `overrides` (e.g. epochs=1) make short runs for tests."""
    recipe = dict(RECIPE, **overrides)
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    model = create()
    data = WorldItems("train", WorldConfig(), limit=limit).tensors()
    loader = seeded_loader(TensorDataset(data["image"], data["label"]), recipe["batch_size"], recipe["seed"])
    module = _Classifier(model, recipe, steps=recipe["epochs"] * len(loader))
    measured = fit(module, loader, epochs=recipe["epochs"], seed=recipe["seed"], progress=progress)
    model.eval()
    test = WorldItems("test")
    return model, {"recipe": recipe, "seed": recipe["seed"], **measured,
                   "quality": {"test_accuracy": accuracy(model, test), "test_items": len(test)}}


def build(out: Path, progress: bool = False) -> dict:
    model, measured = train(progress=progress)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE),
              metadata={"model": NAME})
    (out / "config.json").write_text(json.dumps({"timm": ARCH, **ARCH_KWARGS, "pretrained_cfg": PRETRAINED_CFG},
                                                indent=2, sort_keys=True))
    return measured

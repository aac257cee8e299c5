"""vit_digits: a small timm VisionTransformer trained on scikit-learn's 8x8 digits (mini track classifier)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch.utils.data import DataLoader, TensorDataset

from ..datasets.digits import DigitsItems
from ..errors import VismechError
from ..subject import ClassifierSubject, vit_ffn_sites
from .manifest import shipped_weights

NAME = "vit_digits"
ARCH = "vit_tiny_patch16_224"  # timm's VisionTransformer; the sizes below replace the 224 px defaults
ARCH_KWARGS: dict[str, Any] = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=48, depth=4,
                                   num_heads=4, mlp_ratio=2.0)
PRETRAINED_CFG = dict(num_classes=10, input_size=(1, 8, 8), mean=(0.5,), std=(0.5,))
RECIPE: dict[str, Any] = dict(dataset="sklearn-digits/train", epochs=30, batch_size=64, lr=3e-3, weight_decay=0.05,
                              seed=0)


def create(weights: str | Path | None = None):
    """Build the model through timm.create_model, loading `weights` (a safetensors file) when given."""
    import timm

    if weights is None:
        return timm.create_model(ARCH, pretrained=False, **ARCH_KWARGS)
    weights = Path(weights)
    if not weights.is_file():
        raise VismechError(f"weights file '{weights}' does not exist")
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


def load(weights: str | None = None) -> ClassifierSubject:
    """The mini ViT on digits; `weights` overrides the shipped file."""
    path = Path(weights) if weights else shipped_weights(NAME)
    model = create(path)
    mean = torch.tensor(PRETRAINED_CFG["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(PRETRAINED_CFG["std"]).view(1, -1, 1, 1)
    return ClassifierSubject(NAME, model, vit_ffn_sites(model), preprocess=lambda x: (x - mean.to(x)) / std.to(x),
                             num_classes=10, input_shape=PRETRAINED_CFG["input_size"], track="mini",
                             source=f"timm.create_model('{ARCH}') + {path.name}")


class _Classifier(L.LightningModule):
    def __init__(self, model, lr: float, weight_decay: float, steps: int):
        super().__init__()
        self.model, self.lr, self.weight_decay, self.steps = model, lr, weight_decay, steps
        self.epoch_losses: list[float] = []
        self._batch_losses: list[float] = []

    def training_step(self, batch, _):
        x, y = batch
        loss = F.cross_entropy(self.model((x - 0.5) / 0.5), y)
        self.log("train_loss", loss, prog_bar=True)
        self._batch_losses.append(loss.item())
        return loss

    def on_train_epoch_end(self) -> None:
        self.epoch_losses.append(sum(self._batch_losses) / len(self._batch_losses))
        self._batch_losses = []

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps)
        return [opt], [{"scheduler": sched, "interval": "step"}]


def train(epochs: int | None = None, seed: int | None = None, progress: bool = False) -> tuple[torch.nn.Module, dict]:
    """The recipe: returns the trained model and what was measured (held-out accuracy, training time)."""
    recipe = dict(RECIPE, **{k: v for k, v in dict(epochs=epochs, seed=seed).items() if v is not None})
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    model = create()
    _, x, y = DigitsItems("train").tensors()
    loader = DataLoader(TensorDataset(x, y), batch_size=recipe["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(recipe["seed"]))
    module = _Classifier(model, recipe["lr"], recipe["weight_decay"], steps=recipe["epochs"] * len(loader))
    trainer = L.Trainer(max_epochs=recipe["epochs"], accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        deterministic=True)
    start = time.perf_counter()
    trainer.fit(module, loader)
    seconds = time.perf_counter() - start
    model.eval()
    _, xt, yt = DigitsItems("test").tensors()
    with torch.no_grad():
        accuracy = (model((xt - 0.5) / 0.5).argmax(-1) == yt).float().mean().item()
    return model, {"recipe": recipe, "train_time_s": round(seconds, 1),
                   "epoch_losses": [round(v, 4) for v in module.epoch_losses],
                   "quality": {"test_accuracy": accuracy, "test_items": int(yt.numel())}}

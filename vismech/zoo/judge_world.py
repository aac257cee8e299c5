"""judge_world: the mini world's trained judge, a small timm ResNet with one head per attribute.

It is trained on the `judge` split (uniform colours, disjoint sources) and never on generations, so it carries
none of the training skew it is used to measure. The garment class has no pixel rule, so this judge is the only
measure of it; for colour, background and pattern the exact pixel rules of `vismech.datasets.world` are the
reference, and the judge's agreement with them is measured and recorded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import TensorDataset

from ..datasets.world import BACKGROUNDS, CLASSES, PATTERNS, WorldConfig, WorldItems, measure
from ..errors import VismechError
from .fid import fid
from .manifest import shipped_folder
from .recipe import adamw_one_cycle, fit, seeded_loader

NAME = "judge_world"
SUMMARY = "mini judge: timm ResNet (0.7M) predicting garment, colour, background and pattern of world images"
NEEDS: tuple[str, ...] = ()
HEADS = {"label": len(CLASSES), "colour": len(WorldConfig().palette), "background": len(BACKGROUNDS),
         "pattern": len(PATTERNS)}
ARCH = "resnet18"  # timm's ResNet class; the sizes below make it small
ARCH_KWARGS: dict[str, Any] = dict(num_classes=sum(HEADS.values()), layers=(1, 1, 1, 1), channels=(24, 48, 96, 192),
                                   stem_width=24, in_chans=3)
INPUT_SIZE = 32  # the ResNet stem downsamples 4x; 16 px inputs would reach the last stage as a single pixel
RECIPE: dict[str, Any] = dict(data="world judge split (10,000 items)", epochs=6, batch_size=128, lr=3e-3,
                              weight_decay=1e-4, seed=0)
WEIGHTS_FILE = "model.safetensors"


def preprocess(images: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


def split_heads(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    return dict(zip(HEADS, logits.split(list(HEADS.values()), dim=-1)))


class WorldJudge:
    """Judge of world images (N, 3, 16, 16) in [0, 1]: per-attribute probabilities and features for FID."""

    def __init__(self, model: torch.nn.Module, source: str):
        self.model, self.source = model.eval(), source

    @torch.no_grad()
    def probs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.softmax(-1) for k, v in split_heads(self.model(preprocess(images))).items()}

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (192-d): the mini track's FID feature space."""
        return self.model.forward_head(self.model.forward_features(preprocess(images)), pre_logits=True)

    def fid(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """FID in this judge's feature space (the mini track's FID; fingerprint: judge_world weights)."""
        return fid(real, fake, self.features, num_features=ARCH_KWARGS["channels"][-1])


def create():
    import timm

    return timm.create_model(ARCH, pretrained=False, **ARCH_KWARGS)


def load(weights: str | None = None) -> WorldJudge:
    path = Path(weights) if weights else shipped_folder(NAME) / WEIGHTS_FILE
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise VismechError(f"judge weights '{path}' do not exist")
    model = create()
    try:
        model.load_state_dict(load_file(str(path)))
    except SafetensorError as exc:
        raise VismechError(f"judge weights '{path}' are not a readable safetensors file: {exc}") from None
    except RuntimeError as exc:
        raise VismechError(f"judge weights '{path}' do not fit {NAME}: {str(exc).splitlines()[0]}") from None
    return WorldJudge(model, source=f"timm.create_model('{ARCH}') + {path.name}")


class _Module(L.LightningModule):
    def __init__(self, model, recipe: dict, steps: int):
        super().__init__()
        self.model, self.recipe, self.steps = model, recipe, steps

    def training_step(self, batch, _):
        x, *targets = batch
        heads = split_heads(self.model(preprocess(x)))
        loss = sum(F.cross_entropy(heads[k], t) for k, t in zip(HEADS, targets))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.recipe["lr"], self.recipe["weight_decay"], self.steps)


def evaluate(judge: WorldJudge, items: WorldItems, batch_size: int = 1000) -> dict[str, float]:
    """Accuracy per head against the items' true attributes, and agreement with the exact pixel rules."""
    data = items.tensors()
    correct = {k: 0 for k in HEADS}
    agree = {k: 0 for k in HEADS if k != "label"}
    for start in range(0, len(items), batch_size):
        part = slice(start, start + batch_size)
        images = data["image"][part]
        predicted = {k: v.argmax(-1) for k, v in judge.probs(images).items()}
        exact = measure(images, items.config.palette)
        for k in HEADS:
            correct[k] += int((predicted[k] == data[k][part]).sum())
        for k in agree:
            agree[k] += int((predicted[k] == exact[k]).sum())
    n = len(items)
    return {**{f"{k}_accuracy": v / n for k, v in correct.items()},
            **{f"{k}_agreement_with_pixel_rule": v / n for k, v in agree.items()}, "items": n}


def train(progress: bool = False, limit: int | None = None, **overrides) -> tuple[torch.nn.Module, dict]:
    recipe = dict(RECIPE, **overrides)
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    model = create()
    data = WorldItems("judge", limit=limit).tensors()
    loader = seeded_loader(TensorDataset(data["image"], *(data[k] for k in HEADS)), recipe["batch_size"],
                           recipe["seed"])
    module = _Module(model, recipe, steps=recipe["epochs"] * len(loader))
    measured = fit(module, loader, epochs=recipe["epochs"], seed=recipe["seed"], progress=progress)
    quality = evaluate(WorldJudge(model, "trained"), WorldItems("test"))
    return model.eval(), {"recipe": recipe, "seed": recipe["seed"], **measured, "quality": quality}


def build(out: Path, progress: bool = False) -> dict:
    model, measured = train(progress=progress)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE),
              metadata={"model": NAME})
    (out / "config.json").write_text(json.dumps({"timm": ARCH, **ARCH_KWARGS, "heads": HEADS,
                                                 "input_size": INPUT_SIZE}, indent=2, sort_keys=True))
    return measured

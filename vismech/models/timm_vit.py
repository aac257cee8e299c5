"""timm_vit: the paper track's ViT classifiers (ViT-B/16, B/32, L/32, MAE-B/16) through `timm.create_model`.

Weights come from a local file (`weights=`) or, with `weights=None`, timm's own hub download. Every file goes
through timm's loaders: safetensors as such, `.pth`/`.pt`/`.bin` through `torch.load(weights_only=True)` (a pickle
that needs anything but tensors and plain containers is refused, never executed), Google's `.npz` through the
ViT's JAX importer (`numpy.load(allow_pickle=False)`). timm's checkpoint filter then resamples position
embeddings when `img_size` differs from the checkpoint's (B/32 and L/32 were fine-tuned at 384 and are run at 224)
and the state dict is loaded strictly.

Preprocessing is each model's own timm data config: `input_transform` is timm's eval transform (resize by
`crop_pct`, centre crop, to tensor) without its final normalisation, so images stay in [0, 1] for attribution
baselines; `preprocess` is that normalisation, applied inside `ClassifierSubject.logits`. `preprocessing=
"reference"` instead reproduces the reference code (squash-resize, no crop, ImageNet mean/std for every model)
for repro cards.

MAE-B/16 (the MAE release's fine-tuned `mae_finetuned_vit_base.pth`, state dict under "model"): arch
`vit_base_patch16_224` with `global_pool="avg"` (the head reads `fc_norm` of the mean patch token, not the CLS
token), so the neuron-path method must run with `token_scope: mean_patches` on it.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ..errors import VismechError, one_line
from ..registry import MODELS
from ..subject import ClassifierSubject, vit_ffn_sites

NAME = "timm_vit"
SUMMARY = "paper: timm ViT classifier (ViT-B/16, B/32, L/32, MAE-B/16) from a weights file or the timm hub"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
EXPECTED = ("a .safetensors file, a weights-only torch state dict (.pth/.pt/.bin, optionally under 'model' or "
            "'state_dict') or a Google JAX .npz")
DIR_FILES = ("model.safetensors", "pytorch_model.bin")  # the layout of timm's hub repositories
PREPROCESSING = ("timm", "reference")
REFERENCE_MEAN, REFERENCE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, used for every model
DATA_CONFIG_KEYS = ("mean", "std", "crop_pct", "crop_mode", "interpolation")
# Errors raised by timm/torch/safetensors/numpy when a file is not a checkpoint of the model (bad format, refused
# pickle, wrong keys or shapes). TypeError is left out: it means create_model rejected an argument.
_LOAD_ERRORS = (RuntimeError, ValueError, KeyError, AttributeError, EOFError, OSError, AssertionError,
                SafetensorError, pickle.UnpicklingError, zipfile.BadZipFile)


class Normalise:
    """(x - mean) / std over the channel axis of an (N, C, H, W) batch, on the batch's device and dtype."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalise(mean={self.mean}, std={self.std})"


def _check_arch(arch: str) -> None:
    import timm
    from timm.models import split_model_name_tag

    name, tag = split_model_name_tag(arch)
    if not timm.is_model(name):
        raise VismechError(f"unknown timm architecture '{name}'; list them with timm.list_models('vit_*')")
    if tag and arch not in timm.list_pretrained(name + ".*"):
        known = ", ".join(t.split(".", 1)[1] for t in timm.list_pretrained(name + ".*")) or "none"
        raise VismechError(f"timm has no pretrained tag '{tag}' for '{name}'; its tags: {known}")


def resolve_weights(weights: str | Path) -> Path:
    """The checkpoint file `weights` names (a folder holding a hub-style model file is accepted)."""
    path = Path(weights).expanduser()
    if path.is_dir():
        found = [path / f for f in DIR_FILES if (path / f).is_file()]
        if not found:
            raise VismechError(f"weights folder '{path}' holds none of {', '.join(DIR_FILES)}; expected {EXPECTED}")
        path = found[0]
    if not path.is_file():
        raise VismechError(f"weights file '{path}' does not exist; expected {EXPECTED}")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise VismechError(f"weights file '{path}' has suffix '{path.suffix}'; allowed: {', '.join(WEIGHT_SUFFIXES)}")
    return path


def _create_kwargs(model_args: dict, **named) -> dict:
    """model_args with the named create_model arguments that are set; the two must not disagree."""
    kwargs = dict(model_args)
    for key, value in named.items():
        if value is None:
            continue
        if kwargs.get(key, value) != value:
            raise VismechError(f"{key}={value!r} and model_args.{key}={kwargs[key]!r} disagree; give one of them")
        kwargs[key] = value
    return kwargs


def _overlay(arch: str, path: Path | None, kwargs: dict, data_config: dict) -> dict:
    """timm's pretrained_cfg overlay: the file to load, and what the checkpoint and data config must say."""
    overlay: dict[str, Any] = dict(data_config)
    if path is not None:
        # timm routes a file to the ViT's JAX importer only when custom_load is set, and the augreg tags set it
        # for their own .npz: decide by what the file is, not by the tag.
        overlay.update(file=str(path), custom_load=path.suffix.lower() == ".npz")
    # When num_classes or in_chans differ from the tag's, timm drops the head or adapts the stem and loads the rest
    # non-strictly, leaving random weights in a "pretrained" model. Declaring the checkpoint to have the model's
    # sizes keeps the load strict: weights that do not fit fail instead.
    if "num_classes" in kwargs:
        overlay["num_classes"] = kwargs["num_classes"]
    if "img_size" in kwargs or "in_chans" in kwargs:  # timm keeps the tag's input_size (384 for B/32, L/32)
        from timm.models import get_pretrained_cfg

        size = kwargs.get("img_size") or get_pretrained_cfg(arch).input_size[1:]
        overlay["input_size"] = (kwargs.get("in_chans", 3), *((size, size) if isinstance(size, int) else size))
    return overlay


def create(arch: str, weights: str | Path | None = None, pretrained: bool = True, img_size: int | None = None,
           global_pool: str | None = None, num_classes: int | None = None, model_args: dict | None = None,
           data_config: dict | None = None) -> tuple[torch.nn.Module, str]:
    """(model in eval mode, where its weights came from) through `timm.create_model`."""
    import timm

    _check_arch(arch)
    model_args = dict(model_args or {})
    bad = sorted(set(data_config or {}) - set(DATA_CONFIG_KEYS))
    if bad:
        raise VismechError(f"data_config keys {bad} are not allowed; allowed: {', '.join(DATA_CONFIG_KEYS)}")
    if weights is not None and not pretrained:
        raise VismechError(f"weights '{weights}' given with pretrained=false; drop one of them")
    path = resolve_weights(weights) if weights is not None else None
    kwargs = _create_kwargs(model_args, img_size=img_size, global_pool=global_pool, num_classes=num_classes)
    try:
        # timm initialises every weight randomly before loading: keep that off the caller's RNG, and make a
        # pretrained=False model the same every time
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(arch, pretrained=pretrained,
                                      pretrained_cfg_overlay=_overlay(arch, path, kwargs, data_config or {}), **kwargs)
    except TypeError as exc:
        raise VismechError(f"timm.create_model('{arch}') rejects the arguments {kwargs}: {one_line(exc)}") from None
    except _LOAD_ERRORS as exc:
        if pretrained and str(exc).startswith("Error(s) in loading state_dict"):  # read, but keys or shapes differ
            where = f"weights file '{path}'" if path is not None else f"the hub weights of '{arch}'"
            raise VismechError(f"{where} does not fit {arch} with {kwargs} ({one_line(exc)})") from None
        if path is not None:
            raise VismechError(f"weights file '{path}' is not a loadable {arch} checkpoint ({one_line(exc)}); "
                               f"expected {EXPECTED}") from None
        if pretrained:
            raise VismechError(f"could not fetch '{arch}' weights from the hub ({one_line(exc)}); "
                               f"pass model.params.weights=/path/to/file") from None
        raise
    if path is not None and path.suffix.lower() == ".npz":
        _check_npz_head(path, model)
    if not hasattr(model, "blocks") or not all(hasattr(b, "mlp") for b in model.blocks):
        raise VismechError(f"'{arch}' is not a timm VisionTransformer with FFN blocks; the neuron sites need one")
    source = (f"{path}" if path is not None else
              f"hub:{model.pretrained_cfg.get('hf_hub_id') or model.pretrained_cfg.get('url')}" if pretrained else
              "random init (seed 0)")
    return model.eval(), f"timm.create_model('{arch}') + {source}"


def _check_npz_head(path: Path, model: torch.nn.Module) -> None:
    """timm's JAX importer loads a head only when its size matches and otherwise leaves it random, silently."""
    import numpy as np

    with np.load(path, allow_pickle=False) as w:
        key = next((k for k in w.files if k.endswith("head/bias")), None)
        classes = int(w[key].shape[-1]) if key else 0
    if model.num_classes and classes != model.num_classes:
        raise VismechError(f"weights file '{path}' has a head of {classes} classes and the model {model.num_classes}; "
                           f"set num_classes={classes} or use a checkpoint with a {model.num_classes}-class head")


def model_data_config(model: torch.nn.Module) -> dict:
    """timm's data config of the model, with the input size the model really takes."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    config["input_size"] = (config["input_size"][0], *model.patch_embed.img_size)
    return config


def transforms(data_config: dict, preprocessing: str = "timm") -> tuple[Callable, Normalise]:
    """(input_transform: PIL image -> (3, H, W) tensor in [0, 1], preprocess: batch normalisation)."""
    from timm.data import create_transform
    from torchvision import transforms as T

    if preprocessing not in PREPROCESSING:
        raise VismechError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, got '{preprocessing}'")
    if preprocessing == "reference":  # squash, no crop; torchvision's default (bilinear) resize as in the reference
        return T.Compose([T.Resize(tuple(data_config["input_size"][1:])), T.ToTensor()]), \
            Normalise(REFERENCE_MEAN, REFERENCE_STD)
    # timm's own eval transform, minus its Normalize: the same resize and crop arithmetic, no copy of it here
    eval_tf = create_transform(**data_config, is_training=False)
    steps = [t for t in eval_tf.transforms if not isinstance(t, T.Normalize)]
    if len(steps) != len(eval_tf.transforms) - 1:
        raise VismechError(f"timm's eval transform has no single Normalize step to split off: {eval_tf}")
    return T.Compose(steps), Normalise(data_config["mean"], data_config["std"])


@MODELS.register(NAME, summary=SUMMARY)
def load(arch: str, weights: str | None = None, pretrained: bool = True, img_size: int | None = None,
         global_pool: str | None = None, num_classes: int | None = None, model_args: dict | None = None,
         id: str | None = None, preprocessing: str = "timm", data_config: dict | None = None) -> ClassifierSubject:
    """A timm ViT as a paper-track subject.

    arch: a timm name, with a pretrained tag for hub weights (e.g. `vit_base_patch16_224.orig_in21k_ft_in1k`).
    weights: a checkpoint file (or a folder with model.safetensors); None downloads the tag's weights from the hub.
    img_size, global_pool, num_classes, model_args: passed to `timm.create_model`.
    preprocessing: "timm" (the model's own data config) or "reference" (squash to the input size, no crop,
      ImageNet mean/std: the reference code's, for repro cards).
    data_config: overrides of the data config (mean, std, crop_pct, crop_mode, interpolation), e.g. for a file
      whose training differs from the tag's (MAE fine-tunes use ImageNet mean/std and crop 0.875).
    For MAE (global_pool="avg") the neuron-path method needs `token_scope: mean_patches`.
    """
    model, source = create(arch, weights, pretrained, img_size, global_pool, num_classes, model_args, data_config)
    config = model_data_config(model)
    input_transform, preprocess = transforms(config, preprocessing)
    if preprocessing != "timm":
        source += f" ({preprocessing} preprocessing)"
    return ClassifierSubject(id or arch, model, vit_ffn_sites(model), preprocess=preprocess,
                             num_classes=model.num_classes, input_shape=config["input_size"],
                             input_transform=input_transform, track="paper", source=source)

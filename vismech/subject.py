"""Subjects: one real model plus its named sites (where methods read and edit), and the hook engine."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import nn

from .cost import CostMeter
from .errors import VismechError

SiteKind = Literal["activation", "weight"]


@dataclass(frozen=True)
class Site:
    """A named place in a model: a module's output (`activation`) or one of its parameters (`weight`)."""

    name: str
    module: str
    kind: SiteKind = "activation"
    parameter: str | None = None
    description: str = ""
    width: int | None = None  # units along the last axis of an activation site


def weights_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes): the identity of a set of weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d: BN counters
    return h.hexdigest()


class Subject:
    """A model under study. Subclasses add the task-facing calls (logits, sampling)."""

    track: Literal["mini", "paper"] = "mini"

    def __init__(self, id: str, model: nn.Module, sites: list[Site], *, track: str = "mini", source: str = ""):
        if track not in ("mini", "paper"):
            raise VismechError(f"subject track must be 'mini' or 'paper', got '{track}'")
        self.id, self.model, self.track, self.source = id, model.eval(), track, source
        self.sites = {s.name: s for s in sites}
        self.cost = CostMeter().attach(model)

    @cached_property
    def weights_digest(self) -> str:
        return weights_digest(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def site(self, name: str) -> Site:
        if name not in self.sites:
            raise VismechError(f"subject '{self.id}' has no site '{name}'; known sites: {', '.join(self.sites)}")
        return self.sites[name]

    def module(self, site: str | Site) -> nn.Module:
        site = self.site(site) if isinstance(site, str) else site
        return self.model.get_submodule(site.module)

    def parameter(self, site: str | Site) -> nn.Parameter:
        site = self.site(site) if isinstance(site, str) else site
        if site.kind != "weight" or site.parameter is None:
            raise VismechError(f"site '{site.name}' is an {site.kind} site, not a weight site")
        return getattr(self.module(site), site.parameter)

    def sites_of(self, prefix: str) -> list[Site]:
        return [s for name, s in self.sites.items() if name.startswith(prefix)]

    def hook(self, site: str | Site, fn: Callable[[torch.Tensor], torch.Tensor | None]):
        """Register `fn(output) -> new output or None` on an activation site; returns a removable handle."""
        site = self.site(site) if isinstance(site, str) else site
        if site.kind != "activation":
            raise VismechError(f"site '{site.name}' is a weight site; hooks need an activation site")
        return self.module(site).register_forward_hook(lambda module, args, output: fn(output))


class ClassifierSubject(Subject):
    """An image classifier: `logits(images)` takes images in [0, 1] and applies the model's own preprocessing.

    Preprocessing is split in two because attribution baselines live in the model's input space: `input_transform`
    turns a file's PIL image into an `input_shape` tensor in [0, 1] (the model's own resize and crop), and
    `preprocess` maps that tensor to the model's input (normalisation), inside `logits`.
    """

    def __init__(self, id: str, model: nn.Module, sites: list[Site], *, preprocess: Callable[[torch.Tensor], torch.Tensor],
                 num_classes: int, input_shape: tuple[int, ...], input_transform: Callable | None = None,
                 class_names: Sequence[str] | None = None, **kwargs):
        super().__init__(id, model, sites, **kwargs)
        self.preprocess, self.num_classes, self.input_shape = preprocess, num_classes, tuple(input_shape)
        self.input_transform = input_transform
        if class_names is not None and len(class_names) != num_classes:
            raise VismechError(f"subject '{id}' has {num_classes} classes but {len(class_names)} class names")
        # what pictures call the classes; None: their indices
        self.class_names = tuple(class_names) if class_names is not None else None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.input_shape:
            raise VismechError(f"subject '{self.id}' takes images of shape (N, {', '.join(map(str, self.input_shape))}), "
                               f"got {tuple(images.shape)}")
        logits = self.model(self.preprocess(images.to(self.device)))
        if not torch.isfinite(logits).all():
            raise VismechError(f"subject '{self.id}' produced a non-finite output (NaN or inf); check its weights")
        return logits


def vit_ffn_sites(model: nn.Module) -> list[Site]:
    """Sites of a timm VisionTransformer: each block's FFN hidden units after GELU, and its two FFN weights."""
    sites = []
    for i, block in enumerate(model.blocks):
        sites.append(Site(f"ffn.{i}", f"blocks.{i}.mlp.act", "activation",
                          description=f"block {i} FFN hidden units after GELU", width=block.mlp.fc1.out_features))
        for fc in ("fc1", "fc2"):
            sites.append(Site(f"ffn.{i}.{fc}", f"blocks.{i}.mlp.{fc}", "weight", "weight", f"block {i} FFN {fc} weight"))
    return sites


class DiffusionSubject(Subject):
    """A diffusion model: `model` is the UNet (sites, hooks and the cost meter count UNet evaluations), with its
    noise schedule. A text-conditional subject also holds its diffusers pipeline (text encoder, tokenizer, VAE);
    an unconditional one has `pipeline = None` and samples in pixel space."""

    def __init__(self, id: str, unet: nn.Module, scheduler, sites: list[Site], *, pipeline=None, image_size: int,
                 **kwargs):
        super().__init__(id, unet, sites, **kwargs)
        self.scheduler, self.pipeline, self.image_size = scheduler, pipeline, image_size

    @property
    def unet(self) -> nn.Module:
        return self.model

    @property
    def conditional(self) -> bool:
        return self.pipeline is not None


def unet_sites(unet: nn.Module) -> list[Site]:
    """Sites of a diffusers UNet: `h`, the mid block's output (DiffLens's h-space), and every transformer block's
    feed-forward weights (CAD's components) as `ff.<block path>.in` (GEGLU projection) and `.out`."""
    sites = [Site("h", "mid_block", "activation", description="UNet mid-block output (h-space)",
                  width=getattr(unet.config, "block_out_channels", [None])[-1])]
    for name, module in unet.named_modules():
        if name.endswith(".ff"):
            block = name[: -len(".ff")]
            sites.append(Site(f"ff.{block}.in", f"{name}.net.0.proj", "weight", "weight",
                              f"{block} feed-forward input projection (GEGLU)"))
            sites.append(Site(f"ff.{block}.out", f"{name}.net.2", "weight", "weight", f"{block} feed-forward output"))
    return sites

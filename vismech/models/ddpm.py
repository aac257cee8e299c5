"""ddpm: an unconditional diffusers DDPMPipeline (google/ddpm-celebahq-256) as a paper-track subject.

An extra subject for the bias task, not DiffLens's: the paper's unconditional model is the P2-weighting ADM
(`celebahq_p2.pt`, guided-diffusion layout), which diffusers does not load. `weights` is a hub id or a pipeline
folder (model_index.json, unet/, scheduler/), read as stable_diffusion reads its pipelines (weights-only). The
subject samples in pixel space with DDIM on the model's own schedule, as the mini track's ddpm_world.
"""
from __future__ import annotations

from pathlib import Path

from ..registry import MODELS
from ..subject import DiffusionSubject, unet_sites
from .stable_diffusion import from_pretrained

NAME = "ddpm"
SUMMARY = "paper: diffusers DDPMPipeline (unconditional, e.g. google/ddpm-celebahq-256) from a hub id or folder"


@MODELS.register(NAME, summary=SUMMARY)
def load(weights: str = "google/ddpm-celebahq-256", dtype: str = "float32", id: str | None = None) -> DiffusionSubject:
    """An unconditional DDPM as a paper-track subject (`id` defaults to the hub id's or folder's name)."""
    from diffusers import DDIMScheduler, DDPMPipeline

    pipe = from_pretrained(DDPMPipeline, weights, "DDPMPipeline", dtype)
    size = pipe.unet.config.sample_size
    return DiffusionSubject(id or Path(weights).name, pipe.unet.eval(), DDIMScheduler.from_config(pipe.scheduler.config),
                            unet_sites(pipe.unet), image_size=size if isinstance(size, int) else size[0],
                            track="paper", source=f"{weights} ({dtype})")

"""A tiny random Stable Diffusion subject for tests and cost runs: a fixture, so it lives outside the library."""
from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from vismech.subject import DiffusionSubject, unet_sites
from vismech.zoo import clip_world, sd_world
from vismech.zoo.manifest import shipped_folder


def tiny_subject(seed: int = 0) -> DiffusionSubject:
    """A randomly initialised StableDiffusionPipeline of sd_world's classes (a smaller UNet, sd_world's VAE config,
    clip_world's text tower and the shipped CLIP tokenizer) at 16 px: exact-equality tests and cost runs in seconds."""
    torch.manual_seed(seed)  # diffusers and transformers initialise from the global RNG; this is a test model
    unet = UNet2DConditionModel(**{**sd_world.UNET, "block_out_channels": (16, 32)})
    text = CLIPTextModel(CLIPTextConfig(**clip_world.TEXT)).eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(shipped_folder(sd_world.NAME) / "tokenizer")
    pipe = sd_world.assemble(sd_world.create_vae().eval().requires_grad_(False), unet.eval(), text, tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return DiffusionSubject(f"tiny_sd_random_{seed}", pipe.unet, pipe.scheduler, unet_sites(pipe.unet), pipeline=pipe,
                            image_size=sd_world.SIZE)

"""stable_diffusion: the paper track's Stable Diffusion v1.x pipelines (CAD: v1.4; DiffLens: v1.5) as subjects.

`weights` is a hub id (fetched once into the Hugging Face cache; offline it must already be there) or a local
pipeline folder (`model_index.json` with unet/, vae/, text_encoder/, tokenizer/, scheduler/). diffusers and
transformers read safetensors, or `.bin` files through `torch.load(weights_only=True)`, so a pickle needing more
than tensors is refused. The safety checker is never loaded (the papers run with it off).

The subject samples with DDIM (`vismech.sampling`) on the model's own noise schedule; the pipeline's
scheduler (PNDM on the hub) is replaced by a DDIMScheduler of the same config, without sample clipping (latents are
not in [-1, 1]; SD's own config says clip_sample false). The UNet's sites are `h` (mid block) and every transformer
block's feed-forward weights (`ff.*`), as for the mini track's sd_world.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VismechError
from ..registry import MODELS
from ..subject import DiffusionSubject, unet_sites

NAME = "stable_diffusion"
SUMMARY = "paper: diffusers StableDiffusionPipeline (SD v1.4 / v1.5) from a hub id or a pipeline folder"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def quiet_loading() -> None:
    """Loading shipped weights is not news: no per-component progress bars or advice about optional packages."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def dtype_of(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise VismechError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def from_pretrained(cls, weights: str, what: str, dtype: str, **kwargs):
    """`cls.from_pretrained(weights)` with a missing folder, an offline hub or a broken file as one line."""
    from safetensors import SafetensorError

    if not weights:
        raise VismechError(f"model.params.weights is empty; expected a hub id or a local {what} folder")
    path = Path(weights).expanduser()
    hub_id = not path.exists() and weights.count("/") == 1 and not weights.startswith((".", "/", "~"))
    if not hub_id and not (path / "model_index.json").is_file():
        raise VismechError(f"'{weights}' is not a {what} folder (no model_index.json); expected a hub id like "
                           f"'owner/name' or a folder written by save_pretrained")
    quiet_loading()
    try:
        return cls.from_pretrained(weights if hub_id else str(path), dtype=dtype_of(dtype), **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VismechError(f"could not load {what} '{weights}' ({first}); pass a local folder as "
                           f"model.params.weights=/path/to/pipeline") from None


def ddim_scheduler(config):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(config, clip_sample=False)


@MODELS.register(NAME, summary=SUMMARY)
def load(weights: str = "CompVis/stable-diffusion-v1-4", dtype: str = "float16", id: str | None = None) -> DiffusionSubject:
    """A Stable Diffusion v1.x pipeline as a paper-track subject (`id` defaults to the hub id or folder name)."""
    from diffusers import StableDiffusionPipeline

    pipe = from_pretrained(StableDiffusionPipeline, weights, "StableDiffusionPipeline", dtype, safety_checker=None,
                           requires_safety_checker=False)
    if not any(name.endswith(".ff") for name, _ in pipe.unet.named_modules()):
        raise VismechError(f"'{weights}' has a UNet without transformer feed-forward blocks; expected SD v1.x")
    pipe.scheduler = ddim_scheduler(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return DiffusionSubject(id or Path(weights).name, pipe.unet, pipe.scheduler, unet_sites(pipe.unet),
                            pipeline=pipe, image_size=size, track="paper", source=f"{weights} ({dtype})")

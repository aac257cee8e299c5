"""sd_world: a tiny diffusers StableDiffusionPipeline trained on the mini world's skewed train split.

The same pipeline class as the paper track's SD v1.x: a UNet2DConditionModel with transformer blocks in every
level (CAD's `...transformer_blocks.0.ff.net.{0.proj,2}` weights; DiffLens's `mid_block` h), an AutoencoderKL,
clip_world's frozen text tower as the CLIPTextModel with the real CLIP tokenizer, and a DDIM scheduler.

The VAE downsamples by 2 (16 px -> 4 x 8 x 8 latents): like SD's it really compresses (768 -> 256 numbers), the
UNet runs on 4x fewer positions than in pixel space, which is what makes training fit a 2-core CPU, and one latent
position covers one square of the world's 8 x 8 checker board, so the pattern survives the latent grid.

Captions of the train split mix colour-less ones ("a sneaker": its images are 70 % red, the conditional bias to
find), colour ones ("a blue sneaker": prompt adherence), detailed ones, and 15 % empty prompts so classifier-free
guidance has an unconditional model.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ..datasets.world import CLASSES, WorldConfig, WorldItems, colour_labels, describe, measure
from ..errors import VismechError
from ..models.stable_diffusion import quiet_loading
from ..registry import MODELS
from ..subject import DiffusionSubject, unet_sites
from . import clip_world
from .manifest import shipped_folder
from .recipe import adamw_one_cycle, fit, seeded_loader

NAME = "sd_world"
SUMMARY = ("mini: diffusers StableDiffusionPipeline (UNet2DConditionModel 32/64, AutoencoderKL 16/32 /2, "
           "clip_world text) at 16 px")
NEEDS: tuple[str, ...] = ("clip_world",)
SIZE = 16
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
           up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
           latent_channels=4, norm_num_groups=8, sample_size=SIZE)
UNET = dict(sample_size=SIZE // 2, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D",) * 2,
            up_block_types=("CrossAttnUpBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
            cross_attention_dim=clip_world.TEXT["hidden_size"], attention_head_dim=4, norm_num_groups=8)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")  # SD v1's
# Caption kinds per training sample, drawn afresh each step: index 0 is the empty prompt (caption dropout).
CAPTION_MIX = {"empty": 0.15, "plain": 0.25, "colour": 0.4, "details": 0.2}
CAPTION_FLAGS = {"plain": (False, False), "colour": (True, False), "details": (True, True)}
RECIPE: dict[str, Any] = dict(data="world train split (50,000 items, colours skewed 0.7/0.1/0.1/0.1)",
                              vae_items=16384, vae_epochs=8, vae_batch_size=128, vae_lr=2e-3, kl_weight=1e-6,
                              epochs=4, batch_size=128, lr=2e-3, weight_decay=0.01, caption_mix=CAPTION_MIX,
                              seed=0, stored_dtype="float16")
EVAL = dict(guidance_scale=4.0, steps=25, per_prompt=4, colourless_per_item=16, seed=1000, reconstruction_items=2000)


def create_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE)


def create_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET)


def create_scheduler():
    from diffusers import DDIMScheduler

    # SD v1's scheduler settings: eta-0 DDIM, the last step lands on alpha_bar(t=1), no sample clipping
    return DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def assemble(vae, unet, text_encoder, tokenizer):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=create_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def load(weights: str | None = None):
    """The pipeline through StableDiffusionPipeline.from_pretrained (fp16 files, fp32 model)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(weights) if weights else shipped_folder(NAME)
    if not (folder / "model_index.json").is_file():
        raise VismechError(f"'{folder}' is not a {NAME} pipeline folder (no model_index.json); pass a folder "
                           f"written by its build")
    quiet_loading()
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@MODELS.register(NAME, summary=SUMMARY)
def subject(weights: str | None = None) -> DiffusionSubject:
    """The pipeline as a benchmark subject: its UNet (site `h`, the feed-forward weight sites) and DDIM schedule."""
    pipe = load(weights)
    return DiffusionSubject(NAME, pipe.unet, pipe.scheduler, unet_sites(pipe.unet), pipeline=pipe, image_size=SIZE,
                            source=str(weights or shipped_folder(NAME)))


def save(pipe, out: Path) -> None:
    """fp16 files (half the size; quality is measured after the round trip) and the compact CLIP tokenizer."""
    copy.deepcopy(pipe).to(torch.float16).save_pretrained(out, safe_serialization=True)
    clip_world.compact_tokenizer(out / "tokenizer")


def generate(pipe, prompts: list[str], seeds: list[int], guidance_scale: float = EVAL["guidance_scale"],
             steps: int = EVAL["steps"]) -> torch.Tensor:
    """Images (N, 3, 16, 16) in [0, 1]; one generator per image, so an image's noise depends on its seed only (the
    same prompts and seeds in the same batch give the same bits; another batch size may differ in the last bits)."""
    if len(prompts) != len(seeds):
        raise VismechError(f"generate needs one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(list(prompts), height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance_scale,
                generator=generators, output_type="pt").images


# --- training --------------------------------------------------------------------------------------------------

class _Autoencoder(L.LightningModule):
    def __init__(self, vae, images: torch.Tensor, recipe: dict, steps: int):
        super().__init__()
        self.vae, self.recipe, self.steps = vae, recipe, steps
        self.register_buffer("images", images, persistent=False)
        self.noise = torch.Generator().manual_seed(recipe["seed"])

    def training_step(self, batch, _):
        x = self.images[batch[0]] * 2 - 1
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=self.noise).to(x.device)
        loss = F.mse_loss(self.vae.decode(z).sample, x) + self.recipe["kl_weight"] * posterior.kl().mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self.vae, self.recipe["vae_lr"], 0.0, self.steps)


class _Denoiser(L.LightningModule):
    def __init__(self, unet, latents: torch.Tensor, captions: torch.Tensor, embeddings: torch.Tensor, recipe: dict,
                 steps: int):
        super().__init__()
        from diffusers import DDPMScheduler

        self.unet, self.recipe, self.steps = unet, recipe, steps
        self.schedule = DDPMScheduler(**SCHEDULE)
        self.register_buffer("latents", latents, persistent=False)
        self.register_buffer("captions", captions, persistent=False)  # (items, caption kinds) -> embedding row
        self.register_buffer("embeddings", embeddings, persistent=False)
        self.mix = torch.tensor([recipe["caption_mix"][k] for k in CAPTION_MIX])
        self.noise = torch.Generator().manual_seed(recipe["seed"])

    def training_step(self, batch, _):
        index = batch[0]
        x0 = self.latents[index]
        kind = torch.multinomial(self.mix, len(index), replacement=True, generator=self.noise).to(x0.device)
        t = torch.randint(0, SCHEDULE["num_train_timesteps"], (len(index),), generator=self.noise).to(x0.device)
        noise = torch.randn(x0.shape, generator=self.noise).to(x0.device)
        cond = self.embeddings[self.captions[index, kind]]
        pred = self.unet(self.schedule.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self.unet, self.recipe["lr"], self.recipe["weight_decay"], self.steps)


def train_vae(images: torch.Tensor, recipe: dict, progress: bool):
    """The autoencoder, then its scaling factor: 1 / std of the training latents, as SD's 0.18215 was chosen."""
    vae = create_vae()
    loader = seeded_loader(TensorDataset(torch.arange(len(images))), recipe["vae_batch_size"], recipe["seed"])
    module = _Autoencoder(vae, images, recipe, steps=recipe["vae_epochs"] * len(loader))
    measured = fit(module, loader, epochs=recipe["vae_epochs"], seed=recipe["seed"], progress=progress)
    vae.eval().requires_grad_(False)
    vae.register_to_config(scaling_factor=round(1 / float(encode(vae, images[:4096], scaled=False).std()), 5))
    return vae, measured


@torch.no_grad()
def encode(vae, images: torch.Tensor, scaled: bool = True, batch_size: int = 1024) -> torch.Tensor:
    """Posterior means, times the scaling factor: the deterministic latents the UNet is trained on."""
    scale = vae.config.scaling_factor if scaled else 1.0
    return torch.cat([vae.encode(images[i:i + batch_size] * 2 - 1).latent_dist.mean * scale
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def decode(vae, latents: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    return torch.cat([(vae.decode(latents[i:i + batch_size] / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
                      for i in range(0, len(latents), batch_size)])


def caption_table(pipe, items: WorldItems) -> tuple[torch.Tensor, torch.Tensor]:
    """(items, caption kinds) indices into the embeddings of the distinct captions, embedded by the pipeline's
    own encode_prompt so training sees exactly the conditioning that sampling does."""
    texts = [[""] + [items.caption(i, *CAPTION_FLAGS[k]) for k in list(CAPTION_MIX)[1:]] for i in items.ids]
    unique = sorted({t for row in texts for t in row})
    index = {t: i for i, t in enumerate(unique)}
    with torch.no_grad():
        embeddings, _ = pipe.encode_prompt(unique, "cpu", 1, False)
    return torch.tensor([[index[t] for t in row] for row in texts]), embeddings


def train(clip_weights: str | None = None, progress: bool = False, limit: int | None = None, **overrides):
    """The recipe: the VAE, then the UNet on its latents; `clip_weights` is a clip_world folder (default the shipped
    one), `limit` and `overrides` make short runs for tests. Returns the pipeline and what was measured."""
    recipe = dict(RECIPE, **overrides)
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    clip = clip_world.load(clip_weights)
    items = WorldItems("train", WorldConfig(), limit=limit)
    images = items.tensors()["image"]
    vae, vae_measured = train_vae(images[:recipe["vae_items"]], recipe, progress)
    unet = create_unet()
    pipe = assemble(vae, unet, clip.text_encoder(), clip.tokenizer())
    pipe.set_progress_bar_config(disable=True)
    captions, embeddings = caption_table(pipe, items)
    loader = seeded_loader(TensorDataset(torch.arange(len(items))), recipe["batch_size"], recipe["seed"])
    module = _Denoiser(unet, encode(vae, images), captions, embeddings, recipe, steps=recipe["epochs"] * len(loader))
    measured = fit(module, loader, epochs=recipe["epochs"], seed=recipe["seed"], progress=progress)
    unet.eval()
    return pipe, {"recipe": recipe, "seed": recipe["seed"],
                  "train_time_s": round(vae_measured["train_time_s"] + measured["train_time_s"], 1),
                  "vae_train_time_s": vae_measured["train_time_s"], "vae_epoch_losses": vae_measured["epoch_losses"],
                  "unet_train_time_s": measured["train_time_s"], "epoch_losses": measured["epoch_losses"]}


# --- quality ---------------------------------------------------------------------------------------------------

def prompt_adherence(pipe, config: WorldConfig = WorldConfig(), **settings) -> dict[str, Any]:
    """Share of 'a <colour> <item>' images whose measured colour is the prompted one, per colour."""
    s = dict(EVAL, **settings)
    rows = [(c, describe(item, colour)) for c, colour in enumerate(config.palette) for item in CLASSES
            for _ in range(s["per_prompt"])]
    images = generate(pipe, [p for _, p in rows], [s["seed"] + i for i in range(len(rows))], s["guidance_scale"],
                      s["steps"])
    wanted = torch.tensor([c for c, _ in rows])
    hit = colour_labels(images, config.palette) == wanted
    per = {name: round(float(hit[wanted == c].float().mean()), 4) for c, name in enumerate(config.palette)}
    return {"per_colour": per, "mean": round(float(hit.float().mean()), 4), "samples": len(rows)}


def colourless_distribution(pipe, config: WorldConfig = WorldConfig(), **settings) -> dict[str, Any]:
    """Measured colour shares of 'a <item>' images, against the train split's skew."""
    s = dict(EVAL, **settings)
    prompts = [describe(item) for item in CLASSES for _ in range(s["colourless_per_item"])]
    images = generate(pipe, prompts, [s["seed"] + 10_000 + i for i in range(len(prompts))], s["guidance_scale"],
                      s["steps"])
    colours = colour_labels(images, config.palette)
    shares = [float((colours == c).float().mean()) for c in range(len(config.palette))]
    return {"shares": {n: round(v, 4) for n, v in zip(config.palette, shares)},
            "uncoloured": round(float((colours < 0).float().mean()), 4),
            "train_skew": dict(zip(config.palette, config.skew)),
            "total_variation": round(sum(abs(a - b) for a, b in zip(shares, config.skew)) / 2, 4),
            "samples": len(prompts)}


@torch.no_grad()
def reconstruction(vae, limit: int = 2000) -> dict[str, float]:
    """The VAE on test images: pixel MSE, and how often the exact pixel measures agree after a round trip."""
    images = WorldItems("test", limit=limit).tensors()["image"]
    rec = decode(vae, encode(vae, images))
    before, after = measure(images), measure(rec)
    return {"mse": round(float(F.mse_loss(rec, images)), 6), "items": len(images),
            **{f"{k}_agreement": round(float((before[k] == after[k]).float().mean()), 4) for k in before}}


def quality(pipe, **settings) -> dict[str, Any]:
    s = dict(EVAL, **settings)
    return {"prompt_adherence": prompt_adherence(pipe, **s), "colourless": colourless_distribution(pipe, **s),
            "vae_reconstruction": reconstruction(pipe.vae, s["reconstruction_items"]),
            "sampling": {k: s[k] for k in ("guidance_scale", "steps", "seed")} | {"scheduler": "DDIM, eta 0"}}


def build(out: Path, progress: bool = False, clip_weights: str | None = None) -> dict:
    pipe, measured = train(clip_weights, progress=progress)
    save(pipe, out)
    return {**measured, "quality": quality(load(str(out)))}


CARD_PROMPTS = ("a red sneaker", "a green sneaker", "a blue sneaker", "a yellow sneaker", "a sneaker", "a bag",
                "a dress", "a checked blue dress on a white background")


SAMPLES_CAPTION = (f"rows: {'; '.join(CARD_PROMPTS)}; seeds {EVAL['seed']}..{EVAL['seed'] + 7} in every row; "
                   f"DDIM {EVAL['steps']} steps, guidance {EVAL['guidance_scale']}")


def samples(pipe) -> tuple[torch.Tensor, int]:
    """The model card's picture (images, images per row): one row per prompt, the same 8 seeds in every row."""
    prompts = [p for p in CARD_PROMPTS for _ in range(8)]
    return generate(pipe, prompts, [EVAL["seed"] + i % 8 for i in range(len(prompts))]), 8

"""ddpm_world: an unconditional diffusers DDPM trained on the mini world's colour-skewed train split (the bias subject).

The train split paints 70% of garments red, so a faithful generative model does too: that skew is the "bias" a
bias method finds in the UNet's h-space (the mid block's output, `H_SPACE`) and steers. Sampling is DDIM with one
`torch.Generator` per sample, so an image depends only on its own seed, never on batch size or batch neighbours.

Files (the layout of a diffusers `DDPMPipeline` folder, as in the hub's google/ddpm-* repos, so one loader serves
the mini and the paper track): `model_index.json`, `unet/` (config.json, diffusion_pytorch_model.safetensors) and
`scheduler/scheduler_config.json` (the training noise schedule; sampling reads it into a `DDIMScheduler`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ..datasets.world import BACKGROUNDS, PATTERNS, WorldConfig, WorldItems, colour_labels, measure_background, \
    measure_colour, measure_pattern
from ..errors import VismechError, check_range
from ..registry import MODELS
from ..seeding import item_seed
from ..subject import DiffusionSubject, unet_sites
from .manifest import shipped_folder
from .recipe import adamw_one_cycle, fit, seeded_loader

NAME = "ddpm_world"
SUMMARY = "mini: diffusers UNet2DModel DDPM (1.0M params, h-space 64x4x4) on the world's colour-skewed train split"
NEEDS: tuple[str, ...] = ("judge_world",)  # its features measure FID
H_SPACE = "mid_block"  # the module whose output is h (DiffLens's bottleneck), 64 channels x 4 x 4 here
# Three levels take 16 px to a 4 x 4 bottleneck; attention only in the mid block, where 16 tokens make it cheap.
UNET_CONFIG: dict[str, Any] = dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                                   layers_per_block=1, down_block_types=("DownBlock2D",) * 3,
                                   up_block_types=("UpBlock2D",) * 3, norm_num_groups=8, attention_head_dim=32)
# DDPM's own linear schedule, as the paper track's DDPMs use; x0 is clipped to the data range while sampling.
SCHEDULE: dict[str, Any] = dict(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon",
                                clip_sample=True)
# A step budget, not epochs: 3,000 steps of 64 (3.8 passes over the split) fit ~12 CPU-minutes on 2 cores.
# skip_dropout: the share of training samples at t >= skip_dropout_from_t (where the colour is decided) denoised
# with every skip connection zeroed, so the decoder must work from h alone and h carries the colour. Trained
# without it, the decoder read colour from the skips: zeroing h at every step left the colour shares as they were
# (red 0.699 -> 0.699 of 256 samples), and DiffLens could not steer them. With it, DiffLens reaches a uniform mix
# (largest error 2.1 points at 192 samples). The price is detail: FID vs the train split 7.4 -> 90.5 (judge
# features), the checked pattern drawn on 15% of samples instead of 39%. Dropout at every t cost more (FID 167,
# clear colour 86%). At sampling time every skip is there.
RECIPE: dict[str, Any] = dict(data="world train split (50,000 items, colours skewed 0.7/0.1/0.1/0.1)",
                              max_steps=3000, batch_size=64, lr=2e-3, warmup=0.05, weight_decay=0.0,
                              skip_dropout=0.5, skip_dropout_from_t=500, seed=0)
STEPS, ETA = 50, 0.0  # DDIM defaults: DiffLens's step count; eta 0 makes x_0 a deterministic function of x_T
# Quality is read at eta 1 (DiffLens's own unconditional sampler): on the 3,000-step model trained without skip
# dropout, deterministic DDIM (eta 0) flattened the skew (red 0.594 +- 0.016 of 1,000 samples), eta 1 kept it
# (red 0.680 +- 0.015).
QUALITY = dict(samples=1000, steps=STEPS, eta=1.0, run_seed=0, clear_colour_above=0.8)
LOSS_CHUNK = 250  # steps per point of the loss curve


class DDPMWorld(NamedTuple):
    unet: Any  # diffusers UNet2DModel
    scheduler: Any  # diffusers DDIMScheduler with the training schedule


def create_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(**UNET_CONFIG)


def create_schedule():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def _pretrained(cls, folder: Path, subfolder: str, **kwargs):
    """`cls.from_pretrained` with the library's errors for a wrong or broken folder turned into one line."""
    from safetensors import SafetensorError

    try:
        return cls.from_pretrained(str(folder), subfolder=subfolder, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VismechError(f"'{folder}' is not a {NAME} folder (diffusers DDPMPipeline layout with unet/ and "
                           f"scheduler/): {first}") from None


def load(weights: str | None = None) -> DDPMWorld:
    """The UNet and its DDIM sampler from a DDPMPipeline folder (default: the shipped, hash-checked one)."""
    from diffusers import DDIMScheduler, UNet2DModel

    folder = Path(weights) if weights else shipped_folder(NAME)
    if not folder.is_dir():
        raise VismechError(f"{NAME} weights folder '{folder}' does not exist")
    # safetensors only: pickle checkpoints are refused; without `accelerate` the low-memory path only warns
    unet = _pretrained(UNet2DModel, folder, "unet", use_safetensors=True, low_cpu_mem_usage=False)
    return DDPMWorld(unet.eval(), _pretrained(DDIMScheduler, folder, "scheduler"))


@MODELS.register(NAME, summary=SUMMARY)
def subject(weights: str | None = None) -> DiffusionSubject:
    """The model as a benchmark subject: the UNet with site `h` (its mid block) and its DDIM schedule."""
    model = load(weights)
    return DiffusionSubject(NAME, model.unet, model.scheduler, unet_sites(model.unet),
                            image_size=model.unet.config.sample_size, source=str(weights or shipped_folder(NAME)))


def save(unet, schedule, out: Path) -> None:
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=unet, scheduler=schedule).save_pretrained(str(out), safe_serialization=True)


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2**63 for s in seeds):
        raise VismechError(f"seeds must be a non-empty list of integers in [0, 2**63), got {seeds[:5]!r}")
    return seeds


def _check_count(name: str, value: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise VismechError(f"{name} must be an integer in [1, {high}], got {value!r}")
    return value


def _noise(generators: list[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    """One draw per generator, on the CPU, so an image's noise is the same in any batch and on any device."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


@torch.no_grad()
def _sample_batch(unet, ddim, seeds: list[int], eta: float, bar) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    x = _noise(generators, shape, unet.device)
    for t in ddim.timesteps:
        eps = unet(x, t).sample
        variance = _noise(generators, shape, unet.device) if eta > 0 else None
        x = ddim.step(eps, t, x, eta=eta, variance_noise=variance).prev_sample
        bar.update(len(seeds))
    return (x / 2 + 0.5).clamp(0, 1).cpu()


def sample(unet, scheduler, seeds: Sequence[int], steps: int = STEPS, eta: float = ETA, batch_size: int = 250,
           progress: bool = False) -> torch.Tensor:
    """Images (len(seeds), 3, 16, 16) in [0, 1] by DDIM; image i depends only on seeds[i] (its own generator
    draws x_T and, when eta > 0, each step's noise). `scheduler` supplies the noise schedule (a DDIM or DDPM
    scheduler); it is not modified. h-space hooks on `unet.mid_block` see every step."""
    from diffusers import DDIMScheduler

    from ..progress import progress_bar

    seeds = _check_seeds(seeds)
    ddim = DDIMScheduler.from_config(scheduler.config)  # a private copy: set_timesteps mutates the scheduler
    _check_count("steps", steps, ddim.config.num_train_timesteps)
    eta = check_range("eta", eta, 0.0, 1.0)
    _check_count("batch_size", batch_size, 2**20)
    ddim.set_timesteps(steps)
    with progress_bar(total=len(seeds) * steps, desc=f"{NAME} DDIM x{steps}", unit="img-step", enabled=progress) as bar:
        return torch.cat([_sample_batch(unet, ddim, seeds[i:i + batch_size], eta, bar)
                          for i in range(0, len(seeds), batch_size)])


def quality_seeds(n: int, run_seed: int = QUALITY["run_seed"]) -> list[int]:
    """The seeds of generated item ids 0..n-1, derived like every benchmark item's seed."""
    return [item_seed(run_seed, i) for i in range(n)]


def _shares(labels: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    return torch.bincount(labels, minlength=len(names)).double() / len(labels)


def _named(names: Sequence[str], values: torch.Tensor, digits: int = 4) -> dict[str, float]:
    return {name: round(float(v), digits) for name, v in zip(names, values)}


def measure_generations(images: torch.Tensor, config: WorldConfig = WorldConfig(),
                        clear_above: float = QUALITY["clear_colour_above"]) -> dict[str, Any]:
    """Attribute distribution of generated images from their pixels: each image's colour is its `colour_labels`
    (images with no coloured pixel are counted apart, as `uncoloured`); `colour_se` is the binomial standard error
    sqrt(p (1 - p) / n) of each share, and `colour_z` the deviation from the train skew in units of the skew's own
    standard error."""
    n, palette = len(images), config.palette
    colour = measure_colour(images, palette)
    with_uncoloured = _shares(colour_labels(images, palette) + 1, ("uncoloured", *palette))
    p, target = with_uncoloured[1:], torch.tensor(config.skew, dtype=torch.float64)
    return {"samples": n, "uncoloured_share": round(float(with_uncoloured[0]), 4),
            "colour_share": _named(palette, p), "colour_se": _named(palette, (p * (1 - p) / n).sqrt()),
            "colour_target": _named(palette, target),
            "colour_z": _named(palette, (p - target) / (target * (1 - target) / n).sqrt().clamp_min(1e-12), 2),
            "colour_tv_distance": round(float((p - target).abs().sum() / 2), 4),
            "clear_colour_share": round(float((colour.max(1).values > clear_above).double().mean()), 4),
            "background_share": _named(BACKGROUNDS, _shares(measure_background(images), BACKGROUNDS)),
            "pattern_share": _named(PATTERNS, _shares(measure_pattern(images), PATTERNS))}


class SkipDropout:
    """While installed, multiplies every skip connection an up block of a UNet2DModel receives by a per-sample
    mask (`keep`, shape (N,), 1 keeps a sample's skips, 0 zeroes them all); `keep=None` passes them unchanged."""

    def __init__(self, unet):
        self.keep: torch.Tensor | None = None
        self.handles = [block.register_forward_pre_hook(self._mask) for block in unet.up_blocks]

    def _mask(self, module, args):
        if self.keep is None:
            return None
        sample, skips, *rest = args  # UNet2DModel calls upsample_block(sample, res_samples, emb)
        keep = self.keep.to(sample).view(-1, 1, 1, 1)
        return (sample, tuple(s * keep for s in skips), *rest)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


class _Denoiser(L.LightningModule):
    """Epsilon-prediction DDPM loss; noise, timesteps and skip-dropout masks come from the module's own seeded
    generator."""

    def __init__(self, unet, schedule, recipe: dict):
        super().__init__()
        self.unet, self.schedule, self.recipe = unet, schedule, recipe
        self.generator = torch.Generator().manual_seed(recipe["seed"])
        self.step_losses: list[float] = []
        self.skips = SkipDropout(unet) if recipe.get("skip_dropout") else None

    def training_step(self, batch, _):
        x0 = batch[0] * 2 - 1
        noise = torch.randn(x0.shape, generator=self.generator).to(x0)
        t = torch.randint(self.schedule.config.num_train_timesteps, (len(x0),), generator=self.generator)
        if self.skips is not None:
            drop = torch.rand(len(x0), generator=self.generator) < self.recipe["skip_dropout"]
            self.skips.keep = ~(drop & (t >= self.recipe["skip_dropout_from_t"]))
        t = t.to(x0.device)
        loss = F.mse_loss(self.unet(self.schedule.add_noise(x0, noise, t), t).sample, noise)
        self.log("train_loss", loss, prog_bar=True)
        self.step_losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.recipe["lr"], self.recipe["weight_decay"], self.recipe["max_steps"],
                               warmup=self.recipe["warmup"])


def _chunk_means(values: list[float], size: int) -> list[float]:
    return [round(sum(values[i:i + size]) / len(values[i:i + size]), 5) for i in range(0, len(values), size)]


def train(progress: bool = False, limit: int | None = None, **overrides) -> tuple[DDPMWorld, dict]:
    """The recipe; `limit` and `overrides` (e.g. max_steps=200) make short runs for tests. Returns the trained
    UNet with its training schedule, and the measured training record (no sampling quality)."""
    recipe = dict(RECIPE, **overrides)
    L.seed_everything(recipe["seed"], workers=True, verbose=False)  # the UNet's initial weights
    unet, schedule = create_unet(), create_schedule()
    images = WorldItems("train", WorldConfig(), limit=limit).tensors()["image"]
    loader = seeded_loader(TensorDataset(images), recipe["batch_size"], recipe["seed"])
    module = _Denoiser(unet, schedule, recipe)
    measured = fit(module, loader, max_steps=recipe["max_steps"], seed=recipe["seed"], progress=progress)
    if module.skips is not None:
        module.skips.remove()  # the shipped UNet is a plain UNet2DModel: every skip, no hook
    measured[f"loss_per_{LOSS_CHUNK}_steps"] = _chunk_means(module.step_losses, LOSS_CHUNK)
    return DDPMWorld(unet.eval(), schedule), {"recipe": recipe, "seed": recipe["seed"], **measured}


def evaluate(model: DDPMWorld, progress: bool = False, **overrides) -> dict[str, Any]:
    """`measure_generations` of QUALITY["samples"] DDIM samples, with the sampler settings recorded beside it."""
    settings = dict(QUALITY, **overrides)
    images = sample(model.unet, model.scheduler, quality_seeds(settings["samples"], settings["run_seed"]),
                    settings["steps"], settings["eta"], progress=progress)
    return {"sampler": f"DDIM, {settings['steps']} steps, eta {settings['eta']}, seeds item_seed(run_seed, 0..n-1)",
            **{k: settings[k] for k in ("steps", "eta", "run_seed")},
            **measure_generations(images, clear_above=settings["clear_colour_above"]),
            **fid_report(images)}


def fid_report(images: torch.Tensor) -> dict[str, float]:
    """FID in judge_world's feature space against the skewed training images (the distribution the model learnt)
    and the uniform test split, with the floor two disjoint real sets of the same size reach."""
    from . import judge_world

    judge, n = judge_world.load(), len(images)
    train = WorldItems("train", limit=2 * n).tensors()["image"]
    test = WorldItems("test", limit=n).tensors()["image"]
    return {"fid_features": "judge_world penultimate (192-d)",
            "fid_vs_train": judge.fid(train[:n], images), "fid_vs_test": judge.fid(test, images),
            "fid_real_floor": judge.fid(train[:n], train[n:])}


def build(out: Path, progress: bool = False) -> dict:
    model, measured = train(progress=progress)
    save(model.unet, model.scheduler, out)
    return {**measured, "parameters": sum(p.numel() for p in model.unet.parameters()),
            "quality": evaluate(model, progress=progress)}


SAMPLES_CAPTION = f"64 samples, DDIM {QUALITY['steps']} steps, eta {QUALITY['eta']}, seeds item_seed(0, 0..63)"


def samples(model: DDPMWorld) -> tuple[torch.Tensor, int]:
    """The model card's picture (images, images per row): 64 samples of the quality sampler."""
    return sample(model.unet, model.scheduler, quality_seeds(64), QUALITY["steps"], QUALITY["eta"]), 8

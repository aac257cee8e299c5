"""CAD (Nguyen, Phan, Doan, arXiv 2412.02542): concept attribution in diffusion models, CAD-Erase and CAD-Amplify.

Implements docs/methods/cad.md. A concept c is measured by a scalar objective J(c, w) of the UNet weights; each
scalar weight of the scored matrices (the transformer blocks' feed-forward weights, sites `ff.*`) gets the
first-order knock-out score alpha = w * dJ/dw (fp32). CAD-Erase scores J_erase (concept vs base noise prediction
along sampled DDIM trajectories) and zeroes the largest positive alpha; CAD-Amplify scores J_amplify = -L_c (the
denoising loss on concept images) and zeroes the most negative alpha. The strength of an edit is the spec's ratio.

The reference restarts sampling for every attribution point (1 + 2 + ... + 50 = 1,275 CFG steps); with a fixed
seed, DDIM eta 0 and fixed guidance one trajectory visits the same points, so `procedure: single` takes the
gradient at every step of one run. `procedure: reference` makes the reference's calls; the scores agree.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..datasets.concepts import ConceptData
from ..edit import WeightEdit
from ..errors import VismechError, check_at_least, check_choice
from ..finding import Finding
from ..method import Method, MethodConfig
from ..registry import METHODS
from ..subject import DiffusionSubject, Subject
from .findings import WeightScoreFinding

TASK = "concept"
PROCEDURES = ("single", "reference")
PAIRINGS = ("corrected", "reference")
SCOPES = ("row", "matrix", "global")
SELECTIONS = ("positive", "negative", "both")
SCORE_DTYPES = ("fp32", "model")
LATENTS = ("mean", "sample")
PIXEL_RANGES = ("signed", "unit")
GENERATED_IMAGES = ("latent", "pixels")

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------------------------
# Checks shared by the concept methods.

def text_subject(subject: Subject) -> DiffusionSubject:
    if not isinstance(subject, DiffusionSubject) or not subject.conditional:
        raise VismechError(f"task '{TASK}' needs a text-conditional diffusion subject (a Stable Diffusion "
                           f"pipeline); '{subject.id}' is {type(subject).__name__} without a text encoder")
    return subject


def concept_data(data: Any) -> ConceptData:
    if not isinstance(data, ConceptData):
        raise VismechError(f"task '{TASK}' fits on vismech.datasets.concepts.ConceptData, got {type(data).__name__}")
    return data


def scored_sites(subject: Subject, prefix: str) -> list[str]:
    """The weight sites whose names start with `prefix` (default `ff.`: CAD's feed-forward components)."""
    sites = [s.name for s in subject.sites_of(prefix) if s.kind == "weight"]
    if not sites:
        raise VismechError(f"subject '{subject.id}' has no weight sites starting with '{prefix}'; weight sites: "
                           f"{', '.join(s for s in subject.sites if subject.sites[s].kind == 'weight') or '(none)'}")
    return sites


# ---------------------------------------------------------------------------------------------------------------
# The sampler side: conditioning, DDIM schedule, CFG steps.

@torch.no_grad()
def embed(subject: DiffusionSubject, prompts: list[str]) -> Tensor:
    """Text encoder hidden states, exactly the conditioning StableDiffusionPipeline samples with."""
    embeddings, _ = subject.pipeline.encode_prompt(list(prompts), subject.device, 1, False)
    return embeddings


def ddim(subject: DiffusionSubject, steps: int):
    """A fresh eta-0 DDIM scheduler on the subject's noise schedule: attribution always samples with DDIM (the spec),
    and a private copy keeps the subject's own scheduler state untouched."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(subject.scheduler.config)
    scheduler.set_timesteps(steps, device=subject.device)
    return scheduler


def initial_latents(subject: DiffusionSubject, seeds: tuple[int, ...], scheduler) -> Tensor:
    """x_T of each seed, drawn as StableDiffusionPipeline draws it from `torch.Generator().manual_seed(seed)`."""
    pipe = subject.pipeline
    side = subject.image_size // pipe.vae_scale_factor
    shape = (1, subject.unet.config.in_channels, side, side)
    dtype = next(subject.unet.parameters()).dtype
    noise = [torch.randn(shape, generator=torch.Generator().manual_seed(s), dtype=dtype) for s in seeds]
    return torch.cat(noise).to(subject.device) * scheduler.init_noise_sigma


@dataclass
class Sampler:
    """One batch of DDIM trajectories (one per seed) of the concept prompt under CFG, and the base branch.

    Both UNet batches put the concept rows first: the CFG batch is [concept, unconditional], the gradient batch
    [concept, base]. With base == "" they are the same batch, so one forward can serve both (`fusable`).
    """

    subject: DiffusionSubject
    scheduler: Any
    concept: Tensor  # (S, tokens, width)
    base: Tensor
    uncond: Tensor
    guidance: float
    x_T: Tensor
    fusable: bool

    @property
    def steps(self) -> int:
        return len(self.scheduler.timesteps)

    def unet(self, x: Tensor, k: int, context: Tensor) -> tuple[Tensor, Tensor]:
        """Noise predictions of the concept rows and of the other rows at (x, tau_k)."""
        t = self.scheduler.timesteps[k]
        model_in = self.scheduler.scale_model_input(torch.cat([x, x]), t)
        eps = self.subject.unet(model_in, t, encoder_hidden_states=context, return_dict=False)[0]
        return eps.chunk(2)

    @torch.no_grad()
    def step(self, x: Tensor, k: int, eps: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x_{k+1} from x_k by one CFG DDIM step; `eps` = (concept, unconditional) predictions already at hand."""
        eps_c, eps_u = eps if eps is not None else self.unet(x, k, torch.cat([self.concept, self.uncond]))
        guided = eps_u + self.guidance * (eps_c - eps_u)
        return self.scheduler.step(guided, self.scheduler.timesteps[k], x, eta=0.0, return_dict=False)[0]

    def run(self, k: int) -> Tensor:
        """x_k, by restarting from x_T: the reference's truncated run."""
        x = self.x_T
        for j in range(k):
            x = self.step(x, j)
        return x


def make_sampler(subject: DiffusionSubject, data: ConceptData, prompt: str | None = None,
                 seeds: tuple[int, ...] | None = None, guidance: float | None = None) -> Sampler:
    seeds = data.seeds if seeds is None else seeds
    n = len(seeds)
    concept, base, uncond = (embed(subject, [p]).expand(n, -1, -1)
                             for p in (prompt or data.concept, data.base, ""))
    scheduler = ddim(subject, data.steps)
    guidance = data.guidance_scale if guidance is None else guidance
    return Sampler(subject, scheduler, concept, base, uncond, float(guidance),
                   initial_latents(subject, seeds, scheduler), fusable=data.base == "")


# ---------------------------------------------------------------------------------------------------------------
# Gradients of the scored matrices only, accumulated in fp32.

@contextmanager
def only_requires_grad(model: torch.nn.Module, params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Only `params` require grad inside the block: the graph keeps no weight-gradient work for the rest of the
    UNet, while activations still carry gradients through it. Restores every flag on exit."""
    before = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in before:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)


@contextmanager
def expected_backward_hook_warning() -> Iterator[None]:
    """The cost meter's full backward hook sees no UNet input needing grad (latents are data), so torch warns that
    it fires on the outputs; that is exactly the one count per backward pass the meter wants."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


class GradientSum:
    """Sum of dJ/dw over attribution points, per site. `score_dtype` "fp32": the objective, the sums and w * g in
    fp32 whatever the model's dtype; "model": all three in the model's dtype, as the reference keeps them (fp16
    rounding, underflow and ties included). Either way the scores are handed out as fp32 tensors."""

    def __init__(self, subject: Subject, sites: list[str], score_dtype: str = "fp32"):
        self.sites = sites
        self.params = [subject.parameter(s) for s in sites]
        self.fp32 = score_dtype == "fp32"
        self.sums = {s: torch.zeros_like(p, dtype=torch.float32 if self.fp32 else p.dtype)
                     for s, p in zip(sites, self.params)}
        self.objective = 0.0  # sum of J over the points: a diagnostic, and the faithfulness check's baseline

    def cast(self, t: Tensor) -> Tensor:
        """A model output in the dtype the objective is computed in."""
        return t.float() if self.fp32 else t

    def add(self, objective: Tensor) -> None:
        with expected_backward_hook_warning():
            grads = torch.autograd.grad(objective, self.params)
        for site, grad in zip(self.sites, grads):
            self.sums[site] += grad.to(self.sums[site].dtype)
        self.objective += float(objective.detach())

    def scores(self) -> dict[str, Tensor]:
        """alpha = w * sum of dJ/dw, in the accumulation dtype, returned as fp32."""
        return {s: (p.detach().to(self.sums[s].dtype) * self.sums[s]).float() for s, p in zip(self.sites, self.params)}


# ---------------------------------------------------------------------------------------------------------------
# The erase objective: J = sum over points of ||eps(x, c, t) - sg[eps(x, c_b, t)]||^2.

def erase_point(sampler: Sampler, x: Tensor, k: int, grads: GradientSum) -> tuple[Tensor, Tensor]:
    """Add dJ/dw at (x, tau_k); returns the detached (concept, base) predictions."""
    with torch.enable_grad():
        eps_c, eps_b = sampler.unet(x.detach(), k, torch.cat([sampler.concept, sampler.base]))
        grads.add((grads.cast(eps_c) - grads.cast(eps_b.detach())).pow(2).sum())
    return eps_c.detach(), eps_b.detach()


def erase_single(sampler: Sampler, grads: GradientSum, pairing: str, fuse: bool) -> None:
    """One trajectory, the gradient taken at every step. Corrected pairing: (x_k, tau_k), and with base "" the
    gradient forward is the CFG forward; reference pairing: (x_{k+1}, tau_k), the latent after the step."""
    x = sampler.x_T
    for k in range(sampler.steps):
        if pairing == "corrected":
            eps = erase_point(sampler, x, k, grads)
            x = sampler.step(x, k, eps if fuse and sampler.fusable else None)
        else:
            x = sampler.step(x, k)
            erase_point(sampler, x, k, grads)


def erase_restart(sampler: Sampler, grads: GradientSum, pairing: str) -> None:
    """The reference's calls: for each point a new run from x_T, truncated after k (corrected) or k + 1 steps."""
    for k in range(sampler.steps):
        erase_point(sampler, sampler.run(k + (pairing == "reference")), k, grads)


# ---------------------------------------------------------------------------------------------------------------
# The amplify objective: L_c = sum over images of mean ||eps - eps(sqrt(ab_t) z0 + sqrt(1 - ab_t) eps, c, t)||^2.

@torch.no_grad()
def concept_latents(subject: DiffusionSubject, images: Tensor, batch_size: int, latent: str = "mean",
                    pixel_range: str = "signed", generator: torch.Generator | None = None) -> Tensor:
    """VAE latents of pixel images (in [0, 1]) times the scaling factor: the space the UNet denoises.

    pixel_range "signed" maps pixels to [-1, 1] first (what the VAE was trained on); "unit" encodes [0, 1] as the
    reference does. latent "mean" takes the posterior mean; "sample" draws from the posterior (the reference's
    `latent_dist.sample()`) with `generator`."""
    vae = subject.pipeline.vae
    dtype = next(vae.parameters()).dtype
    parts = []
    for i in range(0, len(images), batch_size):
        pixels = images[i:i + batch_size].to(subject.device, dtype)
        posterior = vae.encode(pixels * 2 - 1 if pixel_range == "signed" else pixels).latent_dist
        parts.append(posterior.mean if latent == "mean" else posterior.sample(generator))
    return torch.cat(parts) * vae.config.scaling_factor


@torch.no_grad()
def generated_latents(subject: DiffusionSubject, data: ConceptData, batch_size: int) -> Tensor:
    """x_0 of DDIM trajectories of the amplify prompt, `batch_size` seeds at a time: the model's own concept
    images, already in the scaled latent space (the reference's generated path skipped the scaling factor; here it
    cannot be skipped)."""
    seeds = data.image_seeds
    parts = []
    for lo in range(0, len(seeds), batch_size):
        sampler = make_sampler(subject, data, data.amplify_prompt, seeds[lo:lo + batch_size], data.image_guidance)
        parts.append(sampler.run(sampler.steps))
    return torch.cat(parts)


@torch.no_grad()
def decoded_pixels(subject: DiffusionSubject, z0: Tensor, batch_size: int) -> Tensor:
    """Pixels in [0, 1] of scaled latents, as the pipeline's image output gives them."""
    vae = subject.pipeline.vae
    parts = [vae.decode(z0[i:i + batch_size] / vae.config.scaling_factor).sample
             for i in range(0, len(z0), batch_size)]
    return (torch.cat(parts).float() / 2 + 0.5).clamp(0, 1)


def amplify_noise(generator: torch.Generator, shape: torch.Size, steps: int, dtype: torch.dtype) -> Iterator[Tensor]:
    """Fresh noise for every (image, timestep), one draw of the whole image batch per timestep, in schedule order."""
    for _ in range(steps):
        yield torch.randn(shape, generator=generator, dtype=dtype)


def amplify_objective(subject: DiffusionSubject, scheduler, z0: Tensor, context: Tensor, grads: GradientSum,
                      generator: torch.Generator, batch_size: int) -> None:
    """Add dJ/dw of J_amplify = -L_c over every DDIM timestep, images batched per timestep (sums are linear, so
    chunks add up). Negating the loss keeps alpha's meaning: the stored score is alpha = -w * dL_c/dw."""
    for t, noise in zip(scheduler.timesteps, amplify_noise(generator, z0.shape, len(scheduler.timesteps), z0.dtype)):
        noise = noise.to(z0.device)
        for lo in range(0, len(z0), batch_size):
            part = slice(lo, lo + batch_size)
            x_t = scheduler.add_noise(z0[part], noise[part], t.reshape(1))
            with torch.enable_grad():
                eps = subject.unet(x_t, t, encoder_hidden_states=context[part], return_dict=False)[0]
                # per-image means, summed over images: the reference's per-image scale
                grads.add(-(grads.cast(noise[part]) - grads.cast(eps)).pow(2).mean((1, 2, 3)).sum())


# ---------------------------------------------------------------------------------------------------------------
# Selection and the edit: zero the top entries of a priority score (the spec's per-row ratio rule).

def pick(score: Tensor, n: int, selection: str) -> Tensor:
    """Boolean mask (same shape as the 2-D `score`) of the entries zeroed with n per row.

    positive: the n largest with score >= 0 (negatives survive even when ranked); negative: the n smallest with
    score <= 0; both: both ends, no sign check."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    n = min(n, score.shape[1])
    if n == 0:
        return mask
    if selection == "both":
        # one stable sort partitions the row: the top n and the bottom n are different entries even among ties
        # (two topk calls can both return the same tied index); they overlap only when 2n > the row's width
        order = score.argsort(dim=1, descending=True, stable=True)
        return mask.scatter_(1, torch.cat([order[:, :n], order[:, -n:]], 1), True)
    if selection == "positive":
        top = score.topk(n, dim=1)
        mask.scatter_(1, top.indices, top.values >= 0)
    else:
        bottom = score.topk(n, dim=1, largest=False)
        mask.scatter_(1, bottom.indices, bottom.values <= 0)
    return mask


def budget(ratio: float, width: int) -> int:
    """floor(ratio * width), as the reference's int(): 0 for narrow rows at small ratios (the true count is
    recorded with every edit)."""
    return int(ratio * width)


def selection_masks(priority: dict[str, Tensor], ratio: float, scope: str, selection: str) -> dict[str, Tensor]:
    """Per site, which weights to zero at `ratio`: n = floor(ratio * in_features) per output row (`row`), one
    ranking per matrix (`matrix`, the reference's flatten option) or over all matrices (`global`, a vismech
    extension)."""
    if scope == "row":
        return {s: pick(p, budget(ratio, p.shape[1]), selection) for s, p in priority.items()}
    if scope == "matrix":
        return {s: pick(p.reshape(1, -1), budget(ratio, p.numel()), selection).view_as(p)
                for s, p in priority.items()}
    flat = torch.cat([p.reshape(-1) for p in priority.values()])[None]
    mask = pick(flat, budget(ratio, flat.shape[1]), selection)[0]
    sizes = [p.numel() for p in priority.values()]
    return {s: m.view_as(p) for (s, p), m in zip(priority.items(), mask.split(sizes))}


class ZeroEdit(WeightEdit):
    """Hard zeroing W <- W * M on weight sites, restored bit for bit; `zeroed` counts the weights actually zeroed
    per site (sites with none are left untouched, so an empty selection is the identity)."""

    def __init__(self, subject: Subject, masks: dict[str, Tensor]):
        self.zeroed = {site: int(m.sum()) for site, m in masks.items()}
        super().__init__(subject, {site: zero_where(m) for site, m in masks.items() if self.zeroed[site]})

    @property
    def total(self) -> int:
        return sum(self.zeroed.values())


def zero_where(mask: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda weight: weight.masked_fill(mask.to(weight.device), 0)


# ---------------------------------------------------------------------------------------------------------------
# Methods.

@dataclass
class AblationConfig(MethodConfig):
    """Keys of every method that ranks weights and zeroes the top `ratio` of them."""

    sites: str = "ff."  # prefix of the scored weight sites (the component filter, recorded with the finding)
    scope: str = "row"  # row: n = floor(ratio * in) per output row; matrix: flatten; global: over all matrices
    selection: str = "positive"  # positive: top entries with score >= 0; negative; both (reference modes)

    def validate(self) -> None:
        check_choice("scope", self.scope, SCOPES)
        check_choice("selection", self.selection, SELECTIONS)
        if not self.sites:
            raise VismechError("sites must be a non-empty site-name prefix such as 'ff.', got ''")


class WeightAblation(Method):
    """Base of the concept methods that zero ranked weights: the strength is the ratio, 0 is the identity."""

    tasks = (TASK,)
    Config = AblationConfig
    strength_range = (0.0, 1.0)
    identity_strength = 0.0
    goal: ClassVar[str] = "erase"  # what the concept benchmark scores: the concept should fall ("erase") or rise

    def priority(self, finding: Finding) -> dict[str, Tensor]:
        """Per site, the score whose largest entries are zeroed first."""
        raise NotImplementedError

    def masks(self, finding: Finding, ratio: float) -> dict[str, Tensor]:
        return selection_masks(self.priority(finding), ratio, self.config.scope, self.config.selection)

    def edit(self, subject: Subject, finding: Finding, strength: float) -> ZeroEdit:
        ratio = self.check_strength(strength)
        self.check_finding(subject, finding)
        return ZeroEdit(subject, self.masks(finding, ratio))

    def zeroed(self, finding: Finding, strength: float) -> dict[str, int]:
        """Weights the edit at `strength` zeroes, per site (every result records the true count)."""
        return {site: int(m.sum()) for site, m in self.masks(finding, self.check_strength(strength)).items()}


@dataclass
class CADConfig(AblationConfig):
    # the keys that choose between the released code's behaviour and vismech's (in each paper card's generated
    # deviations page)
    SWITCHES: ClassVar[dict[str, str]] = {
        "score_dtype": "objective, gradient sums and w * g in fp32 (fp32) or in the model's dtype (model)",
    }
    # Share of the weights kept in the finding: with r < 1 only the entries an edit up to ratio r can zero are
    # stored (SD v1.x has 149M scores, 595 MB in fp32; at r = 0.01 about 1.4M remain), and edits are limited to
    # ratios <= r with the fitted scope and selection.
    stored_ratio: float = 1.0
    # "model": objective, gradients and w * g in the model's dtype, as the reference (fp16 on the paper track);
    # "fp32": accumulated in fp32 (identical on an fp32 model)
    score_dtype: str = "fp32"

    def validate(self) -> None:
        super().validate()
        check_choice("score_dtype", self.score_dtype, SCORE_DTYPES)
        if not 0 < self.stored_ratio <= 1:
            raise VismechError(f"stored_ratio must be in (0, 1], got {self.stored_ratio:g}")
        if self.stored_ratio < 1 and self.selection == "both":
            raise VismechError("stored_ratio < 1 needs selection 'positive' or 'negative', got 'both' "
                               "(it would have to store both ends of every ranking)")


@dataclass
class CADEraseConfig(CADConfig):
    SWITCHES: ClassVar[dict[str, str]] = {
        **CADConfig.SWITCHES,
        "pairing": "each latent with the timestep it is denoised at (corrected), or the latent after the step with "
                   "that step's timestep (reference)",
    }
    procedure: str = "single"  # reference: restart sampling for every point (the reference's 1,275 CFG steps)
    pairing: str = "corrected"  # reference: the latent after a step paired with that step's timestep
    fuse_cfg: bool = True  # corrected pairing with base "": one forward serves the gradient and the CFG step

    def validate(self) -> None:
        super().validate()
        check_choice("procedure", self.procedure, PROCEDURES)
        check_choice("pairing", self.pairing, PAIRINGS)


@dataclass
class CADAmplifyConfig(CADConfig):
    SWITCHES: ClassVar[dict[str, str]] = {
        **CADConfig.SWITCHES,
        "generated_images": "self-generated images used as final latents (latent), or decoded and encoded again "
                            "(pixels)",
        "latent": "VAE posterior mean (mean) or a draw from it (sample)",
        "pixel_range": "pixels encoded in [-1, 1] (signed) or [0, 1] (unit)",
    }
    batch_size: int = 16  # concept images per UNet call; the loss is a sum, so chunks add up exactly
    latent: str = "mean"  # VAE posterior of an image: its mean, or a draw ("sample", the reference)
    pixel_range: str = "signed"  # pixels encoded in [-1, 1] (what the VAE expects), or [0, 1] ("unit", the reference)
    # self-generated images: their final latents as they are ("latent"), or decoded to pixels and encoded like given
    # images ("pixels": the reference saves its generated images and reads them back)
    generated_images: str = "latent"

    def validate(self) -> None:
        super().validate()
        check_at_least("batch_size", self.batch_size, 1)
        check_choice("latent", self.latent, LATENTS)
        check_choice("pixel_range", self.pixel_range, PIXEL_RANGES)
        check_choice("generated_images", self.generated_images, GENERATED_IMAGES)


class CAD(WeightAblation):
    """Shared fit of CAD-Erase and CAD-Amplify: score, then alpha = w * dJ/dw per scored matrix (fp32)."""

    sign: ClassVar[int]  # +1: zero the largest positive alpha (erase); -1: the most negative (amplify)
    objective: ClassVar[str]

    def accumulate(self, subject: DiffusionSubject, data: ConceptData, grads: GradientSum) -> dict[str, Any]:
        """Add the objective's gradients; returns what the finding's meta should say about the sampled points."""
        raise NotImplementedError

    def fit(self, subject: Subject, data: Any) -> Finding:
        subject, data = text_subject(subject), concept_data(data)
        sites = scored_sites(subject, self.config.sites)
        grads = GradientSum(subject, sites, self.config.score_dtype)
        start = subject.cost.snapshot()
        with only_requires_grad(subject.unet, grads.params):
            points = self.accumulate(subject, data, grads)
        end = subject.cost.snapshot()
        cost = {key: end[key] - start[key] for key in end}
        alpha = grads.scores()
        meta = {**cost, "forward_equivalents": cost["forward_passes"] + 2 * cost["backward_passes"],
                "objective": self.objective, "objective_sum": grads.objective, "concept": data.concept,
                "base": data.base, "label": data.label, "data": data.name, "sites": sites,
                "scored_weights": sum(a.numel() for a in alpha.values()),
                "positive": sum(int((a > 0).sum()) for a in alpha.values()),
                "negative": sum(int((a < 0).sum()) for a in alpha.values()), "score_dtype": self.config.score_dtype,
                **points}
        return self.new_finding(subject, TASK, tensors=self.stored(alpha), meta={**meta, **self.storage()})

    def storage(self) -> dict[str, Any]:
        c = self.config
        return {"stored_ratio": c.stored_ratio, "stored_scope": c.scope, "stored_selection": c.selection}

    def stored(self, alpha: dict[str, Tensor]) -> dict[str, Tensor]:
        """alpha.<site> dense, or with stored_ratio < 1 the flat indices and values of the entries an edit up to
        that ratio can zero (any smaller ratio zeroes a subset of them: its top n is inside the larger top n)."""
        if self.config.stored_ratio == 1:
            return WeightScoreFinding(scores=alpha).tensors()
        priority = {site: self.sign * a for site, a in alpha.items()}
        masks = selection_masks(priority, self.config.stored_ratio, self.config.scope, self.config.selection)
        sparse = {}
        for site, mask in masks.items():
            index = mask.flatten().nonzero().squeeze(1)
            sparse[site] = (index, alpha[site].flatten()[index], torch.tensor(alpha[site].shape))
        return WeightScoreFinding(sparse=sparse).tensors()

    def priority(self, finding: Finding) -> dict[str, Tensor]:
        # entries that were not stored can never be chosen: they rank last and fail the sign test
        fill = -math.inf if self.config.selection == "positive" else math.inf
        return WeightScoreFinding.read(finding).dense(self.sign, fill)

    def masks(self, finding: Finding, ratio: float) -> dict[str, Tensor]:
        stored = finding.meta.get("stored_ratio", 1.0)
        if stored < 1:
            fitted = (finding.meta["stored_scope"], finding.meta["stored_selection"])
            if ratio > stored or fitted != (self.config.scope, self.config.selection):
                raise VismechError(f"this finding stores only the top {stored:g} of its scores (scope "
                                   f"'{fitted[0]}', selection '{fitted[1]}'); ratio {ratio:g} with scope "
                                   f"'{self.config.scope}', selection '{self.config.selection}' needs a refit "
                                   f"with a larger stored_ratio")
        return super().masks(finding, ratio)


@METHODS.register()
class CADErase(CAD):
    """CAD-Erase: zero the feed-forward weights most positively attributed to J_erase (concept vs base)."""

    name = "cad_erase"
    Config = CADEraseConfig
    sign = 1
    objective = "J_erase = sum ||eps(x, c, t) - sg[eps(x, c_b, t)]||^2 over DDIM points"

    def accumulate(self, subject: DiffusionSubject, data: ConceptData, grads: GradientSum) -> dict[str, Any]:
        c = self.config
        sampler = make_sampler(subject, data)
        if c.procedure == "single":
            erase_single(sampler, grads, c.pairing, c.fuse_cfg)
        else:
            erase_restart(sampler, grads, c.pairing)
        return {"points": sampler.steps * len(data.seeds), "trajectories": len(data.seeds), "steps": sampler.steps,
                "guidance_scale": sampler.guidance, "scheduler": "DDIM eta 0", "pairing": c.pairing,
                "procedure": c.procedure, "fused": bool(c.procedure == "single" and c.pairing == "corrected"
                                                        and c.fuse_cfg and sampler.fusable)}


@METHODS.register()
class CADAmplify(CAD):
    """CAD-Amplify: zero the feed-forward weights most negatively attributed to J_amplify = -L_c (denoising loss
    on concept images), so the loss on the concept falls."""

    name = "cad_amplify"
    Config = CADAmplifyConfig
    goal = "amplify"
    sign = -1
    objective = "J_amplify = -sum over images of mean ||eps - eps(x_t, c, t)||^2 at every DDIM timestep"

    def accumulate(self, subject: DiffusionSubject, data: ConceptData, grads: GradientSum) -> dict[str, Any]:
        c = self.config
        sampler = make_sampler(subject, data, data.amplify_prompt)
        images = data.images
        source = "given images"
        if images is None:
            z0 = generated_latents(subject, data, c.batch_size)
            source = (f"generated from '{data.amplify_prompt}' ({len(z0)} images, DDIM {data.steps}, cfg "
                      f"{data.image_guidance:g})")
            if c.generated_images == "pixels":
                images = decoded_pixels(subject, z0, c.batch_size)
        if images is not None:
            z0 = concept_latents(subject, images, c.batch_size, c.latent, c.pixel_range,
                                 self.generator("amplify-latent"))
        context = sampler.concept[:1].expand(len(z0), -1, -1)
        amplify_objective(subject, sampler.scheduler, z0, context, grads, self.generator("amplify-noise"),
                          c.batch_size)
        encoded = images is not None
        return {"points": sampler.steps * len(z0), "images": len(z0), "image_source": source,
                "steps": sampler.steps, "conditioning": data.amplify_prompt,
                "encoding": f"{c.latent} latent of {c.pixel_range} pixels" if encoded else "none (final latents)"}

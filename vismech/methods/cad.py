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


def make_sampler(subject: DiffusionSubject, data: ConceptData, prompt: str | None = None) -> Sampler:
    n = len(data.seeds)
    concept, base, uncond = (embed(subject, [p]).expand(n, -1, -1)
                             for p in (prompt or data.concept, data.base, ""))
    scheduler = ddim(subject, data.steps)
    return Sampler(subject, scheduler, concept, base, uncond, float(data.guidance_scale),
                   initial_latents(subject, data.seeds, scheduler), fusable=data.base == "")


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
    """Sum of dJ/dw over attribution points, per site, in fp32 whatever the model's dtype."""

    def __init__(self, subject: Subject, sites: list[str]):
        self.sites = sites
        self.params = [subject.parameter(s) for s in sites]
        self.sums = {s: torch.zeros_like(p, dtype=torch.float32) for s, p in zip(sites, self.params)}
        self.objective = 0.0  # sum of J over the points: a diagnostic, and the faithfulness check's baseline

    def add(self, objective: Tensor) -> None:
        with expected_backward_hook_warning():
            grads = torch.autograd.grad(objective, self.params)
        for site, grad in zip(self.sites, grads):
            self.sums[site] += grad.float()
        self.objective += float(objective.detach())

    def scores(self) -> dict[str, Tensor]:
        """alpha = w * sum of dJ/dw, fp32."""
        return {s: p.detach().float() * self.sums[s] for s, p in zip(self.sites, self.params)}


# ---------------------------------------------------------------------------------------------------------------
# The erase objective: J = sum over points of ||eps(x, c, t) - sg[eps(x, c_b, t)]||^2.

def erase_point(sampler: Sampler, x: Tensor, k: int, grads: GradientSum) -> tuple[Tensor, Tensor]:
    """Add dJ/dw at (x, tau_k); returns the detached (concept, base) predictions."""
    with torch.enable_grad():
        eps_c, eps_b = sampler.unet(x.detach(), k, torch.cat([sampler.concept, sampler.base]))
        grads.add((eps_c.float() - eps_b.detach().float()).pow(2).sum())
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
def concept_latents(subject: DiffusionSubject, images: Tensor, batch_size: int) -> Tensor:
    """VAE posterior means of pixels mapped to [-1, 1], times the scaling factor: the space the UNet denoises."""
    vae = subject.pipeline.vae
    dtype = next(vae.parameters()).dtype
    parts = [vae.encode(images[i:i + batch_size].to(subject.device, dtype) * 2 - 1).latent_dist.mean
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts) * vae.config.scaling_factor


@torch.no_grad()
def generated_latents(sampler: Sampler) -> Tensor:
    """x_0 of the sampler's trajectories: the model's own concept images, already in the scaled latent space
    (the reference's generated path skipped the scaling factor; here it cannot be skipped)."""
    return sampler.run(sampler.steps)


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
                grads.add(-(noise[part].float() - eps.float()).pow(2).mean((1, 2, 3)).sum())


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
    if selection in ("positive", "both"):
        top = score.topk(n, dim=1)
        keep = top.values >= 0 if selection == "positive" else torch.ones_like(top.values, dtype=torch.bool)
        mask.scatter_(1, top.indices, keep)
    if selection in ("negative", "both"):
        bottom = score.topk(n, dim=1, largest=False)
        keep = bottom.values <= 0 if selection == "negative" else torch.ones_like(bottom.values, dtype=torch.bool)
        mask |= torch.zeros_like(mask).scatter_(1, bottom.indices, keep)
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
    # Share of the weights kept in the finding: with r < 1 only the entries an edit up to ratio r can zero are
    # stored (SD v1.x has 149M scores, 595 MB in fp32; at r = 0.01 about 1.4M remain), and edits are limited to
    # ratios <= r with the fitted scope and selection.
    stored_ratio: float = 1.0

    def validate(self) -> None:
        super().validate()
        if not 0 < self.stored_ratio <= 1:
            raise VismechError(f"stored_ratio must be in (0, 1], got {self.stored_ratio:g}")
        if self.stored_ratio < 1 and self.selection == "both":
            raise VismechError("stored_ratio < 1 needs selection 'positive' or 'negative', got 'both' "
                               "(it would have to store both ends of every ranking)")


@dataclass
class CADEraseConfig(CADConfig):
    procedure: str = "single"  # reference: restart sampling for every point (the reference's 1,275 CFG steps)
    pairing: str = "corrected"  # reference: the latent after a step paired with that step's timestep
    fuse_cfg: bool = True  # corrected pairing with base "": one forward serves the gradient and the CFG step

    def validate(self) -> None:
        super().validate()
        check_choice("procedure", self.procedure, PROCEDURES)
        check_choice("pairing", self.pairing, PAIRINGS)


@dataclass
class CADAmplifyConfig(CADConfig):
    batch_size: int = 16  # concept images per UNet call; the loss is a sum, so chunks add up exactly

    def validate(self) -> None:
        super().validate()
        check_at_least("batch_size", self.batch_size, 1)


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
        grads = GradientSum(subject, sites)
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
                "negative": sum(int((a < 0).sum()) for a in alpha.values()), **points}
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
        sampler = make_sampler(subject, data, data.amplify_prompt)
        if data.images is not None:
            z0, source = concept_latents(subject, data.images, self.config.batch_size), "given images"
        else:
            z0, source = generated_latents(sampler), f"generated from '{data.amplify_prompt}'"
        context = sampler.concept[:1].expand(len(z0), -1, -1)
        amplify_objective(subject, sampler.scheduler, z0, context, grads, self.generator("amplify-noise"),
                          self.config.batch_size)
        return {"points": sampler.steps * len(z0), "images": len(z0), "image_source": source,
                "steps": sampler.steps, "conditioning": data.amplify_prompt}

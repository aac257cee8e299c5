"""Baselines of the concept task beside CAD: random and magnitude ablation of the same weights, a UCE-style
closed-form cross-attention edit, and a short ESD-style fine-tuning erase.

The ablation baselines rank the same feed-forward weights as CAD and zero them by the same rule (so ratio r
zeroes the same number of weights per row), differing only in the ranking: uniform random keys (the control) or
|w|. The two model-editing baselines compute new weights for some UNet parameters; their edit moves each weight
from its original value towards the new one, lerp(w, w_new, strength), so strength 0 is the unedited model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.func import functional_call

from ..datasets.concepts import ConceptData
from ..edit import Edit, WeightEdit
from ..errors import VismechError, check_at_least, check_choice
from ..finding import Finding
from ..method import Method, MethodConfig
from ..registry import METHODS
from ..subject import DiffusionSubject, Subject
from .cad import (TASK, AblationConfig, Sampler, WeightAblation, concept_data, embed,
                  expected_backward_hook_warning, make_sampler, only_requires_grad, scored_sites,
                  text_subject)
from .findings import WeightScoreFinding

ESD_PARAMETERS = ("xattn", "noxattn", "ff")

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------------------------
# Ablation baselines: same weights, same zeroing rule, another ranking.

@dataclass
class RankingConfig(AblationConfig):
    """Rankings have no sign, so only CAD's default selection is meaningful."""

    def validate(self) -> None:
        super().validate()
        if self.selection != "positive":
            raise VismechError(f"selection must be 'positive' for a ranking baseline (its scores are >= 0), "
                               f"got '{self.selection}'")


class RankingAblation(WeightAblation):
    """Fit stores a non-negative ranking per scored matrix; the edit is CAD's zeroing rule on it."""

    Config = RankingConfig

    def ranking(self, site: str, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def fit(self, subject: Subject, data: Any) -> Finding:
        sites = scored_sites(text_subject(subject), self.config.sites)
        tensors = WeightScoreFinding(ranking={s: self.ranking(s, subject.parameter(s).detach()).float()
                                              for s in sites}).tensors()
        # no model evaluation: the ranking reads the weights (or nothing) only
        meta = {"forward_passes": 0, "backward_passes": 0, "sites": sites, "scored_weights": sum(
            t.numel() for t in tensors.values())}
        return self.new_finding(subject, TASK, tensors=tensors, meta=meta)

    def priority(self, finding: Finding) -> dict[str, Tensor]:
        return WeightScoreFinding.read(finding).ranking


@METHODS.register()
class RandomWeights(RankingAblation):
    """Control: zero uniformly random feed-forward weights, as many per row as CAD zeroes at the same ratio."""

    name = "random_weights"
    control = True

    def ranking(self, site: str, weight: Tensor) -> Tensor:
        return torch.rand(weight.shape, generator=self.generator(site))


@METHODS.register()
class MagnitudeWeights(RankingAblation):
    """Baseline: zero the largest-magnitude feed-forward weights, as many per row as CAD at the same ratio
    (CAD's score w * dJ/dw without the concept's gradient)."""

    name = "magnitude_weights"

    def ranking(self, site: str, weight: Tensor) -> Tensor:
        return weight.abs()


# ---------------------------------------------------------------------------------------------------------------
# Model-editing baselines: new values for named UNet parameters, interpolated by the strength.

class _ByName:
    """A subject whose `parameter(name)` is the UNet parameter of that dotted name: lets WeightEdit (which
    restores bit for bit) edit parameters that are not declared as sites, such as cross-attention projections."""

    def __init__(self, subject: Subject):
        self._subject = subject

    def parameter(self, name: str) -> torch.nn.Parameter:
        try:
            return self._subject.model.get_parameter(name)
        except AttributeError:
            raise VismechError(f"subject '{self._subject.id}' has no parameter '{name}'") from None

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._subject, attr)


def interpolation_edit(subject: Subject, finding: Finding, strength: float) -> Edit:
    """w <- lerp(w, w_new, strength) for every stored parameter; strength 0 changes nothing at all."""
    targets = WeightScoreFinding.read(finding).new_weights
    updates = {} if strength == 0 else {name: _lerp_to(new, strength) for name, new in targets.items()}
    return WeightEdit(_ByName(subject), updates)


def _lerp_to(new: Tensor, strength: float):
    return lambda weight: torch.lerp(weight, new.to(weight.device, weight.dtype), strength)


class ModelEdit(Method):
    """Base of the baselines that compute new parameter values; the strength interpolates towards them."""

    tasks = (TASK,)
    strength_range = (0.0, 1.0)
    identity_strength = 0.0
    goal = "erase"

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        strength = self.check_strength(strength)
        self.check_finding(subject, finding)
        return interpolation_edit(subject, finding, strength)


def cross_attention_projections(unet: torch.nn.Module) -> list[str]:
    """Names of the to_k and to_v weights of every cross-attention (attn2): what reads the text."""
    names = [n for n, _ in unet.named_parameters() if ".attn2.to_k.weight" in n or ".attn2.to_v.weight" in n]
    if not names:
        raise VismechError("the UNet has no cross-attention projections (attn2.to_k / attn2.to_v)")
    return names


# --- UCE: unified concept editing, closed form ------------------------------------------------------------------

@torch.no_grad()
def token_states(subject: DiffusionSubject, prompts: list[str]) -> tuple[Tensor, list[int]]:
    """Text encoder states (n, tokens, width) and, per prompt, the index of its last word token."""
    tokenizer = subject.pipeline.tokenizer
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    last = [int(m.sum()) - 2 for m in ids["attention_mask"]]  # BOS ... word EOS: the word before EOS
    return embed(subject, list(prompts)), last


def aligned_pair(states: Tensor, last: list[int]) -> tuple[Tensor, Tensor]:
    """UCE's token alignment of a (source, target) prompt pair: from each prompt's last word token onwards, cut to
    the same length, so the concept word maps onto the target's last word and the trailing tokens onto each other."""
    far = max(last)
    length = states.shape[1]
    src = states[0, last[0]:length - (far - last[0])]
    dst = states[1, last[1]:length - (far - last[1])]
    return src, dst


@dataclass
class UCEConfig(MethodConfig):
    lam: float = 0.1  # weight of keeping every projection as it is (the lambda * I term)
    erase_scale: float = 1.0  # weight of mapping the concept's tokens onto the base prompt's
    preserve_scale: float | None = None  # weight of the preserved concepts; None: max(0.1, 1 / their count)
    preserve_others: bool = True  # preserve the fit data's `others` (the concepts to keep)
    preserve: list[str] = field(default_factory=list)  # more prompts to preserve

    def validate(self) -> None:
        if not self.lam > 0:  # lam * I keeps the normal equations solvable whatever the prompts
            raise VismechError(f"lam must be > 0, got {self.lam:g}")
        check_at_least("erase_scale", self.erase_scale, 0.0)
        if self.preserve_scale is not None:
            check_at_least("preserve_scale", self.preserve_scale, 0.0)


def uce_solution(weight: Tensor, pairs: list[tuple[Tensor, Tensor, float]], lam: float) -> Tensor:
    """argmin_W  sum_pairs scale * ||W k - W_old v||^2 + lam * ||W - W_old||^2 over keys k and targets v:
    W = (lam W_old + sum s W_old v k^T)(lam I + sum s k k^T)^-1, solved in float64."""
    w = weight.double()
    lhs = lam * torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
    rhs = lam * w
    for keys, targets, scale in pairs:
        k, v = keys.double(), targets.double()
        lhs = lhs + scale * k.T @ k
        rhs = rhs + scale * (w @ v.T) @ k
    return torch.linalg.solve(lhs, rhs, left=False).to(torch.float32)


@METHODS.register()
class UCE(ModelEdit):
    """Baseline (UCE-style, Gandikota et al. 2024): closed-form edit of the cross-attention key and value
    projections so the concept's tokens map to what the base prompt's tokens mapped to, preserving other concepts."""

    name = "uce"
    Config = UCEConfig

    def pairs(self, subject: DiffusionSubject, data: ConceptData) -> list[tuple[Tensor, Tensor, float]]:
        """(keys, targets, scale) blocks of the least-squares problem, as token-state rows."""
        c = self.config
        states, last = token_states(subject, [data.concept, data.base])
        pairs = [(*aligned_pair(states, last), c.erase_scale)]
        kept = (list(data.others) if c.preserve_others else []) + list(c.preserve)
        if kept:
            scale = c.preserve_scale if c.preserve_scale is not None else max(0.1, 1 / len(kept))
            kept_states, kept_last = token_states(subject, kept)
            pairs += [(s[i:], s[i:], scale) for s, i in zip(kept_states, kept_last)]
        return pairs

    def fit(self, subject: Subject, data: Any) -> Finding:
        subject, data = text_subject(subject), concept_data(data)
        pairs = self.pairs(subject, data)
        names = cross_attention_projections(subject.unet)
        new = WeightScoreFinding(new_weights={n: uce_solution(subject.unet.get_parameter(n).detach().float(), pairs,
                                                              self.config.lam) for n in names}).tensors()
        # no UNet evaluation: the text encoder reads the prompts once, the rest is a linear solve per projection
        meta = {"forward_passes": 0, "backward_passes": 0, "parameters": names, "concept": data.concept,
                "base": data.base, "preserved_prompts": len(pairs) - 1}
        return self.new_finding(subject, TASK, tensors=new, meta=meta)


# --- ESD: erasing by fine-tuning towards negatively guided targets ------------------------------------------------

@dataclass
class ESDConfig(MethodConfig):
    parameters: str = "noxattn"  # noxattn: ESD-u (all but cross-attention); xattn: ESD-x; ff: CAD's matrices
    iterations: int = 100  # optimiser steps (the paper: 1,000 on SD v1.4)
    lr: float = 1e-4  # Adam learning rate (the paper: 1e-5 on SD v1.4; the mini model needs more)
    negative_guidance: float = 1.0  # eta: how far past the unconditional prediction the target is pushed
    batch_size: int = 4  # start codes per step

    def validate(self) -> None:
        check_choice("parameters", self.parameters, ESD_PARAMETERS)
        check_at_least("iterations", self.iterations, 1)
        check_at_least("batch_size", self.batch_size, 1)
        check_at_least("negative_guidance", self.negative_guidance, 0.0)
        if not self.lr > 0:
            raise VismechError(f"lr must be > 0, got {self.lr:g}")


def esd_parameters(subject: DiffusionSubject, which: str) -> list[str]:
    if which == "ff":
        return [subject.site(s).module + "." + subject.site(s).parameter for s in scored_sites(subject, "ff.")]
    xattn = [n for n, _ in subject.unet.named_parameters() if ".attn2." in n]
    if which == "xattn":
        return xattn
    return [n for n, _ in subject.unet.named_parameters() if n not in set(xattn)]


def esd_target(sampler: Sampler, frozen: dict[str, Tensor], x: Tensor, k: int, eta: float) -> Tensor:
    """eps*(x, "") - eta (eps*(x, c) - eps*(x, "")) from the original weights: the concept branch is pushed
    away from the concept, past the unconditional prediction."""
    t = sampler.scheduler.timesteps[k]
    context = torch.cat([sampler.concept[:len(x)], sampler.uncond[:len(x)]])
    with torch.no_grad():
        eps_c, eps_u = functional_call(sampler.subject.unet, frozen, (torch.cat([x, x]), t),
                                       {"encoder_hidden_states": context, "return_dict": False})[0].chunk(2)
    return eps_u - eta * (eps_c - eps_u)


def start_codes(sampler: Sampler, generator: torch.Generator, n: int) -> Tensor:
    return torch.randn((n, *sampler.x_T.shape[1:]), generator=generator, dtype=sampler.x_T.dtype).to(sampler.x_T.device)


@METHODS.register()
class ESD(ModelEdit):
    """Baseline (ESD-style, Gandikota et al. 2023): fine-tune so the concept-conditioned prediction follows the
    negatively guided one of the original model, at latents sampled from the model being trained."""

    name = "esd"
    Config = ESDConfig

    def fit(self, subject: Subject, data: Any) -> Finding:
        subject, data = text_subject(subject), concept_data(data)
        c = self.config
        names = esd_parameters(subject, c.parameters)
        params = [subject.unet.get_parameter(n) for n in names]
        frozen = {n: p.detach().clone() for n, p in zip(names, params)}
        start = subject.cost.snapshot()
        try:
            self.train(subject, data, names, params, frozen)
            new = WeightScoreFinding(new_weights={n: p.detach().float().clone() for n, p in zip(names, params)}).tensors()
        finally:  # fitting must leave the subject exactly as it was
            with torch.no_grad():
                for n, p in zip(names, params):
                    p.copy_(frozen[n])
        end = subject.cost.snapshot()
        meta = {**{k: end[k] - start[k] for k in end}, "parameters": c.parameters,
                "trained_weights": sum(p.numel() for p in params), "concept": data.concept,
                "steps": data.steps, "guidance_scale": data.guidance_scale}
        return self.new_finding(subject, TASK, tensors=new, meta=meta)

    def train(self, subject: DiffusionSubject, data: ConceptData, names: list[str], params: list[Tensor],
              frozen: dict[str, Tensor]) -> None:
        c = self.config
        # conditioning rows for a batch of start codes; the codes themselves come from the method's generator
        sampler = make_sampler(subject, replace(data, seeds=(0,) * c.batch_size))
        generator = self.generator("esd")
        optimiser = torch.optim.Adam(params, lr=c.lr)
        with only_requires_grad(subject.unet, params):
            for _ in range(c.iterations):
                k = int(torch.randint(sampler.steps, (1,), generator=generator))
                x = start_codes(sampler, generator, c.batch_size) * sampler.scheduler.init_noise_sigma
                for j in range(k):  # the current model's own trajectory of the concept, up to step k
                    x = sampler.step(x, j)
                target = esd_target(sampler, frozen, x, k, c.negative_guidance)
                with torch.enable_grad():
                    eps = subject.unet(x, sampler.scheduler.timesteps[k], encoder_hidden_states=sampler.concept,
                                       return_dict=False)[0]
                    loss = torch.nn.functional.mse_loss(eps.float(), target.float())
                    optimiser.zero_grad(set_to_none=True)
                    with expected_backward_hook_warning():
                        loss.backward()
                optimiser.step()

"""Attacks on a concept erasure: prompts that make an edited text-to-image model draw the erased concept anyway.

Token attack, after UnlearnDiffAtk (Zhang et al., arXiv 2310.11868): `tokens` adversarial tokens are put in front
of the plain prompt (after the start token) and searched so that the edited model denoises a target image of the
concept well: the loss is the denoising loss ||eps(sqrt(ab_t) z0 + sqrt(1 - ab_t) n, t, prompt) - n||^2 of the
target's latent z0, one fresh (t, n) per step, as the attack's objective needs no sampling and no judge. The
target image is the unedited model's image of the same prompt and seed (UnlearnDiffAtk's target image), so the
attack asks the edited model to give back what the erasure took.

Discrete tokens (the headline): the search keeps continuous embeddings and evaluates the loss at their nearest
vocabulary embeddings (L2), passing the gradient straight through to the continuous ones (projected gradient, as
PEZ and UnlearnDiffAtk do); the result is the nearest tokens, a prompt anyone can type. The vocabulary is the
tokenizer's whole-word tokens of letters that tokenise back to themselves, so the attacked prompt is text that
re-encodes to exactly the searched tokens.

Every row of a batch is its own attack (its prompt, target, seed: the initial tokens, timesteps and noise come from
its own generator), so a row's result does not depend on its neighbours, up to the float rounding of a batched
UNet (about 1e-6, which can flip a nearest-token tie in principle; a cached attack is reused bit for bit). A fixed number of steps; one UNet forward and backward
per step for the whole batch, counted by the subject's cost meter.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch

from ..errors import VismechError
from ..subject import DiffusionSubject
from .cad import concept_latents, expected_backward_hook_warning, only_requires_grad, text_subject

Tensor = torch.Tensor
PRODUCER = "vismech.attacks.token/1"
WORD = re.compile(r"^[a-z]+</w>$")


@dataclass(frozen=True)
class TokenAttackConfig:
    tokens: int = 3  # adversarial tokens put in front of the prompt
    steps: int = 30  # optimiser steps: one UNet forward + backward each
    lr: float = 0.1  # Adam on the continuous token embeddings
    seed: int = 0  # mixed with each row's own seed

    def validate(self) -> None:
        for name in ("tokens", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VismechError(f"task.attack.{name} must be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise VismechError(f"task.attack.lr must be > 0, got {self.lr!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "producer": PRODUCER}


@dataclass
class Attacked:
    """One row's result: the attacked prompt (text), its adversarial tokens, and the loss at the first and last
    step (the projected prompt's denoising loss at that step's (t, n): noisy, a diagnostic only)."""

    prompt: str
    tokens: list[str]
    loss_first: float
    loss_last: float


@lru_cache(maxsize=4)
def _word_vocabulary(tokenizer) -> tuple[tuple[int, ...], tuple[str, ...]]:
    vocab = tokenizer.get_vocab()
    words = sorted((i, t[:-len("</w>")]) for t, i in vocab.items() if WORD.match(t))
    encoded = tokenizer([w for _, w in words], add_special_tokens=False)["input_ids"]
    kept = [(i, w) for (i, w), ids in zip(words, encoded) if ids == [i]]
    if not kept:
        raise VismechError("the tokenizer has no whole-word tokens to search over")
    return tuple(i for i, _ in kept), tuple(w for _, w in kept)


def word_vocabulary(tokenizer) -> tuple[list[int], list[str]]:
    """Token ids and words of the whole-word letter tokens that tokenise back to themselves."""
    ids, words = _word_vocabulary(tokenizer)
    return list(ids), list(words)


def _prompt_ids(tokenizer, prompts: Sequence[str], k: int) -> Tensor:
    """[BOS, k placeholders, the prompt's tokens, EOS, padding], cut to the context length (the EOS kept)."""
    length = tokenizer.model_max_length
    rows = []
    for p in prompts:
        body = tokenizer(p, add_special_tokens=False)["input_ids"][:length - 2 - k]
        ids = [tokenizer.bos_token_id] + [tokenizer.eos_token_id] * k + body + [tokenizer.eos_token_id]
        rows.append(ids + [tokenizer.pad_token_id] * (length - len(ids)))
    return torch.tensor(rows)


def _nearest(embeddings: Tensor, vocabulary: Tensor) -> Tensor:
    """Index into `vocabulary` (V, d) of the nearest row (L2) to each of `embeddings` (..., d)."""
    flat = embeddings.reshape(-1, embeddings.shape[-1])
    distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ vocabulary.T + vocabulary.pow(2).sum(1)[None])
    return distance.argmin(1).reshape(embeddings.shape[:-1])


def token_attack(subject: DiffusionSubject, prompts: Sequence[str], targets: Tensor, seeds: Sequence[int],
                 config: TokenAttackConfig = TokenAttackConfig()) -> list[Attacked]:
    """Attack `prompts` row by row towards the target images `targets` (N, 3, H, W) in [0, 1], on the subject as
    it is now (enter an edit around the call to attack the edited model). The subject is left unchanged. Callable
    from a Lightning test step: the search leaves inference mode for its own tensors."""
    subject = text_subject(subject)
    config.validate()
    if not (len(prompts) == len(targets) == len(seeds)) or not len(prompts):
        raise VismechError(f"token_attack needs one target and one seed per prompt, got {len(prompts)} prompts, "
                           f"{len(targets)} targets and {len(seeds)} seeds")
    with torch.inference_mode(False), warnings.catch_warnings():
        # the cost meter's backward hook cannot see the UNet's dataclass output; it still counts each backward
        warnings.filterwarnings("ignore", message="For backward hooks to be called")
        return _search(subject, list(prompts), targets.clone(), [int(s) for s in seeds], config)


def _search(subject: DiffusionSubject, prompts: list[str], targets: Tensor, seeds: list[int],
            config: TokenAttackConfig) -> list[Attacked]:
    from diffusers import DDIMScheduler

    pipe, k, device = subject.pipeline, config.tokens, subject.device
    encoder, tokenizer = pipe.text_encoder, pipe.tokenizer
    table = encoder.get_input_embeddings()
    vocab_ids, vocab_words = word_vocabulary(tokenizer)
    vocabulary = table.weight.detach()[torch.tensor(vocab_ids, device=table.weight.device)].float()
    schedule = DDIMScheduler.from_config(subject.scheduler.config)
    z0 = concept_latents(subject, targets, batch_size=len(targets)).float()
    generators = [torch.Generator().manual_seed((config.seed * 1_000_003 + int(s)) % 2**63) for s in seeds]
    start = torch.stack([torch.randint(len(vocab_ids), (k,), generator=g) for g in generators])
    soft = vocabulary[start.to(vocabulary.device)].clone().requires_grad_(True)  # (N, k, d)
    ids = _prompt_ids(tokenizer, prompts, k).to(encoder.device)
    optimiser = torch.optim.Adam([soft], lr=config.lr)
    hard: list[Tensor] = []

    def splice(module, args, output):  # the projected embeddings at the placeholders, gradient straight through
        out = output.clone()
        out[:, 1:1 + k] = hard[0].to(out.dtype)
        return out

    losses: list[Tensor] = []
    handle = table.register_forward_hook(splice)
    try:
        with only_requires_grad(subject.unet, []), only_requires_grad(encoder, []), torch.enable_grad():
            for _ in range(config.steps):
                nearest = vocabulary[_nearest(soft.detach(), vocabulary)]
                hard[:] = [soft + (nearest - soft).detach()]
                t = torch.stack([torch.randint(schedule.config.num_train_timesteps, (1,), generator=g)[0]
                                 for g in generators]).to(device)
                noise = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in generators]).to(device)
                x_t = schedule.add_noise(z0, noise, t)
                context = encoder(ids)[0].to(next(subject.unet.parameters()).dtype)
                eps = subject.unet(x_t.to(context.dtype), t, encoder_hidden_states=context, return_dict=False)[0]
                loss = (eps.float() - noise).pow(2).mean((1, 2, 3))
                optimiser.zero_grad(set_to_none=True)
                with expected_backward_hook_warning():
                    loss.sum().backward()
                optimiser.step()
                losses.append(loss.detach().cpu())
    finally:
        handle.remove()
    final = _nearest(soft.detach(), vocabulary).cpu()
    out = []
    for row, prompt in enumerate(prompts):
        words = [vocab_words[int(i)] for i in final[row]]
        out.append(Attacked(" ".join(words + [prompt]).strip(), words, float(losses[0][row]),
                            float(losses[-1][row])))
    return out


def judged_accuracy(images: Tensor, labels: Tensor, classify: Callable[[Tensor], Tensor]) -> Tensor:
    """Per image 1.0 where the judge's top-1 (`classify` gives class probabilities) is the label, else 0.0."""
    return (classify(images).argmax(-1).cpu() == labels.cpu()).double()


def render_accuracy(subject: DiffusionSubject, prompts: Sequence[str], labels: Sequence[int], seeds: Sequence[int],
                    sampling, classify: Callable[[Tensor], Tensor]) -> Tensor:
    """Per prompt, the share of its images (one per seed, unedited model) whose judged top-1 is its label: whether
    a model renders a prompt as a class at all (e.g. a paraphrase that never names it)."""
    from ..sampling import sample

    rows = [(p, y, s) for p, y in zip(prompts, labels) for s in seeds]
    images = sample(subject, list(range(len(rows))), [s for _, _, s in rows], prompts=[p for p, _, _ in rows],
                    sampling=sampling).images
    hits = judged_accuracy(images, torch.tensor([y for _, y, _ in rows]), classify)
    return hits.reshape(len(prompts), len(seeds)).mean(1)

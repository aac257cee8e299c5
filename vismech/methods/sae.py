"""The TopK sparse autoencoder of DiffLens (docs/methods/difflens.md §3), its training and its report.

    z = TopK_k(ReLU(W_enc (h - b_dec) + b_enc)),    h_hat = W_dec z + b_dec

TopK keeps the k largest pre-activations of each token and zeroes the rest; ReLU comes first, so a token can have
fewer than k non-zero latents. The loss is the fraction of variance unexplained (FVU). Decoder columns are kept at
unit norm (renormalised before every step) and, optionally, the gradient component parallel to each column is
removed, so the optimiser moves columns along the unit sphere instead of fighting the renormalisation.

A token is one spatial position of h by default (`layout="position"`: a (B, C, H, W) map gives B*H*W tokens of C
channels); `layout="map"` makes the whole map one token of C*H*W numbers (the SD kernel-size caveat of the spec).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import VismechError

Tensor = torch.Tensor
LAYOUTS = ("position", "map")
PREFIX = "sae."  # the SAE's tensors inside a finding


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise VismechError(f"SAE token layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def to_tokens(h: Tensor, layout: str = "position") -> Tensor:
    """(B, C, H, W) -> (tokens, d): one row per spatial position (C channels), or one row per map (C*H*W)."""
    if h.ndim != 4:
        raise VismechError(f"h must be a (batch, channels, height, width) map, got shape {tuple(h.shape)}")
    if check_layout(layout) == "map":
        return h.flatten(1)
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])


def from_tokens(tokens: Tensor, shape: tuple[int, ...], layout: str = "position") -> Tensor:
    """The inverse of `to_tokens` for maps of `shape` (B, C, H, W)."""
    b, c, hh, ww = shape
    if check_layout(layout) == "map":
        return tokens.reshape(b, c, hh, ww)
    return tokens.reshape(b, hh, ww, c).permute(0, 3, 1, 2)


def token_width(shape: tuple[int, ...], layout: str) -> int:
    """Numbers per token for maps of (C, H, W)."""
    c, hh, ww = shape
    return c * hh * ww if check_layout(layout) == "map" else c


def fvu(h: Tensor, h_hat: Tensor) -> Tensor:
    """Fraction of variance unexplained: sum ||h_hat - h||^2 / sum ||h - mean||^2 (per-channel mean over tokens)."""
    total = (h - h.mean(0, keepdim=True)).pow(2).sum()
    return (h_hat - h).pow(2).sum() / total.clamp_min(torch.finfo(h.dtype).tiny)


class TopKSAE(nn.Module):
    """TopK SAE on tokens of width `d_in` with `n_latents` latents, `k` of them active per token."""

    def __init__(self, d_in: int, n_latents: int, k: int):
        super().__init__()
        if not 1 <= k <= n_latents:
            raise VismechError(f"SAE k must be in [1, n_latents={n_latents}], got {k}")
        self.d_in, self.n_latents, self.k = d_in, n_latents, k
        self.W_enc = nn.Parameter(torch.zeros(n_latents, d_in))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.W_dec = nn.Parameter(torch.zeros(d_in, n_latents))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def init_from(self, tokens: Tensor, generator: torch.Generator) -> "TopKSAE":
        """Encoder as nn.Linear's default (uniform +-1/sqrt(d_in)), W_dec = W_enc^T with unit columns, b_enc = 0,
        b_dec = the tokens' mean (the encoder then sees centred inputs from the first step)."""
        bound = 1 / math.sqrt(self.d_in)
        with torch.no_grad():
            self.W_enc.copy_(torch.rand(self.n_latents, self.d_in, generator=generator) * 2 * bound - bound)
            self.W_dec.copy_(self.W_enc.T)
            self.normalize_decoder()
            self.b_enc.zero_()
            self.b_dec.copy_(tokens.mean(0))
        return self

    def pre_activations(self, tokens: Tensor) -> Tensor:
        return torch.relu((tokens - self.b_dec) @ self.W_enc.T + self.b_enc)

    def encode(self, tokens: Tensor) -> Tensor:
        """Dense codes (tokens, n_latents) with at most k non-zeros per row."""
        pre = self.pre_activations(tokens)
        values, index = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, index, values)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec.T + self.b_dec

    def decode_delta(self, dz: Tensor) -> Tensor:
        """W_dec dz without the bias: what a change of the code adds to the reconstruction."""
        return dz @ self.W_dec.T

    def forward(self, tokens: Tensor) -> Tensor:
        return self.decode(self.encode(tokens))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop each decoder column's gradient component along the (unit) column itself."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(0, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    def tensors(self) -> dict[str, Tensor]:
        """The weights as finding tensors (`sae.W_enc`, ...)."""
        return {PREFIX + name: p.detach().clone() for name, p in self.named_parameters()}

    @classmethod
    def from_uncentred(cls, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, k: int) -> "TopKSAE":
        """An SAE whose encoder reads h itself (pre = W_enc h + b_enc, the paper's form with b_pre = 0 in the encoder):
        folding W_enc b_dec into the encoder bias gives the same codes in this class's centred form."""
        n_latents, d_in = W_enc.shape
        sae = cls(d_in, n_latents, k)
        with torch.no_grad():
            for name, value in (("W_enc", W_enc), ("b_enc", b_enc + W_enc @ b_dec), ("W_dec", W_dec), ("b_dec", b_dec)):
                getattr(sae, name).copy_(value)
        return sae.eval().requires_grad_(False)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], k: int) -> "TopKSAE":
        missing = [n for n in ("W_enc", "b_enc", "W_dec", "b_dec") if PREFIX + n not in tensors]
        if missing:
            raise VismechError(f"finding has no SAE tensors {', '.join(PREFIX + n for n in missing)}")
        n_latents, d_in = tensors[PREFIX + "W_enc"].shape
        sae = cls(d_in, n_latents, k)
        sae.load_state_dict({n: tensors[PREFIX + n].float() for n in ("W_enc", "b_enc", "W_dec", "b_dec")})
        return sae.eval().requires_grad_(False)


@dataclass(frozen=True)
class SAETraining:
    """How an SAE is trained: latents = expansion * d_in, Adam with linear warm-up and decay, clipped gradients."""

    k: int = 8
    expansion: int = 8
    steps: int = 2000
    batch_tokens: int = 1024
    lr: float = 1e-3
    warmup: float = 0.05  # fraction of the steps; the rest decays linearly to 0
    grad_clip: float = 1.0
    remove_parallel_grad: bool = True

    def validate(self) -> None:
        for name in ("k", "expansion", "steps", "batch_tokens"):
            if getattr(self, name) < 1:
                raise VismechError(f"SAE {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise VismechError(f"SAE lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise VismechError(f"SAE warmup must be a fraction in [0, 1), got {self.warmup}")
        if not self.grad_clip > 0:
            raise VismechError(f"SAE grad_clip must be > 0, got {self.grad_clip}")


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` of the steps, then linear decay to 0 at `total`."""
    ramp = max(1, round(warmup * total))
    if step < ramp:
        return (step + 1) / ramp
    return max(0.0, (total - step) / max(1, total - ramp))


def train_sae(tokens: Tensor, training: SAETraining, generator: torch.Generator) -> tuple[TopKSAE, list[float]]:
    """Train on `tokens` (N, d_in) with minibatches drawn from `generator`; returns the SAE and the FVU every
    1% of the steps (the loss curve)."""
    training.validate()
    tokens = tokens.float()
    d_in = tokens.shape[1]
    sae = TopKSAE(d_in, training.expansion * d_in, min(training.k, training.expansion * d_in))
    sae.init_from(tokens, generator).train()
    optimiser = torch.optim.Adam(sae.parameters(), lr=training.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, training.steps, training.warmup))
    curve, every = [], max(1, training.steps // 100)
    for step in range(training.steps):
        batch = tokens[torch.randint(len(tokens), (training.batch_tokens,), generator=generator)]
        sae.normalize_decoder()
        loss = fvu(batch, sae(batch))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if training.remove_parallel_grad:
            sae.remove_parallel_grad()
        nn.utils.clip_grad_norm_(sae.parameters(), training.grad_clip)
        optimiser.step()
        schedule.step()
        if step % every == 0:
            curve.append(round(float(loss.detach()), 5))
    sae.normalize_decoder()  # the stored SAE keeps the invariant the edit's strengths are measured against
    return sae.eval().requires_grad_(False), curve


@torch.no_grad()
def sae_report(sae: TopKSAE, tokens: Tensor, batch: int = 65536) -> dict[str, float]:
    """FVU, mean L0 (non-zero latents per token) and the fraction of latents never active, on `tokens`."""
    tokens = tokens.float()
    fired = torch.zeros(sae.n_latents, dtype=torch.bool)
    error, l0 = 0.0, 0.0
    for start in range(0, len(tokens), batch):
        z = sae.encode(tokens[start:start + batch])
        error += float((sae.decode(z) - tokens[start:start + batch]).pow(2).sum())
        l0 += float((z != 0).sum())
        fired |= (z != 0).any(0)
    total = float((tokens - tokens.mean(0)).pow(2).sum())
    return {"fvu": round(error / max(total, 1e-30), 5), "l0": round(l0 / len(tokens), 3),
            "dead_fraction": round(1 - float(fired.double().mean()), 5), "tokens": len(tokens),
            "d_in": sae.d_in, "n_latents": sae.n_latents, "k": sae.k}


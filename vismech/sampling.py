"""The bias task's sampler: DDIM with per-image seeds, and the Asyrp two-pass step for h-space edits.

Per-image seeds: image i's noise (x_T and, for eta > 0, each step's noise) comes from its own
`torch.Generator().manual_seed(seeds[i])` on the CPU, so an image does not depend on batch size or neighbours.

The two-pass step (docs/methods/difflens.md §6). At an edited step the UNet gives eps_edit (h edited) and
eps_orig (h as is); then
    x0_hat = (x_t - sqrt(1 - a_t) eps_edit) / sqrt(a_t)
    x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma_t^2) eps_orig + sigma_t xi.
The reference runs the UNet twice. Everything up to the mid block is the same in both passes, so `two_pass="split"`
runs the down path and the mid block once, appends the edited rows' h to the batch after the mid block, and runs
only the up path on the grown batch: one full UNet row per sample plus one decoder-only row per edited sample
(for classifier-free guidance: [uncond, cond, cond-edited], 3 decoder rows instead of 4).
`two_pass="naive"` is the reference's two full passes, kept for the parity test and the cost comparison.

Edits the sampler understands: an `HSpaceEdit` (per sample and step; two-pass), a `PromptEdit` (rewrites each
sample's prompt), and any other `Edit` (entered around plain sampling, e.g. `NoEdit`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .edit import Edit
from .errors import VismechError
from .subject import DiffusionSubject

Tensor = torch.Tensor
TWO_PASS = ("split", "naive")
Observer = Callable[[Tensor, int], None]  # (h of every row of the UNet batch, step index)


@dataclass(frozen=True)
class Sampling:
    """The sampler of the task: DDIM with `steps` and `eta`; classifier-free guidance for conditional subjects.
    `batch_size` only bounds memory: images do not depend on it."""

    steps: int = 50
    eta: float = 1.0
    guidance_scale: float = 4.0
    batch_size: int = 64

    def __post_init__(self):
        if not isinstance(self.steps, int) or not 2 <= self.steps <= 1000:
            raise VismechError(f"sampling steps must be an integer in [2, 1000], got {self.steps!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise VismechError(f"sampling eta must be in [0, 1], got {self.eta!r}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 1.0):
            raise VismechError(f"sampling guidance_scale must be >= 1 (1 = no guidance), got {self.guidance_scale!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise VismechError(f"sampling batch_size must be an integer >= 1, got {self.batch_size!r}")


class HSpaceEdit(Edit):
    """An edit of h (site `h`, the mid-block output) that depends on the sample and the step.

    Subclasses implement `selected(ids, step, steps) -> bool per sample` (which samples are edited at this step) and
    `shift(h, ids, step, steps) -> new h` for the selected samples' rows. The edited sampler calls both itself.
    Entered as a context manager the edit hooks `h`, and the rows it edits come from `at(...)`, which only the
    sampler's naive reference sets: outside the sampler the hook refuses to run rather than silently do nothing.
    """

    def __init__(self, subject: DiffusionSubject):
        super().__init__(subject)
        subject.site("h")
        self._handle = None
        self._where: tuple[Tensor, Tensor, int, int] | None = None

    def selected(self, ids: Tensor, step: int, steps: int) -> Tensor:
        raise NotImplementedError

    def shift(self, h: Tensor, ids: Tensor, step: int, steps: int) -> Tensor:
        raise NotImplementedError

    def _apply(self) -> None:
        self._handle = self.subject.hook("h", self._hook)

    def _restore(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @contextmanager
    def at(self, rows: Tensor, ids: Tensor, step: int, steps: int):
        """Within the block, the hook edits batch rows `rows` (samples `ids`) as step `step` of `steps`."""
        self._where = (rows, ids, step, steps)
        try:
            yield
        finally:
            self._where = None

    def _hook(self, h: Tensor) -> Tensor:
        if self._where is None:
            raise VismechError(f"{type(self).__name__} edits h per sample and step; generate with "
                               f"vismech.sampling.sample(...), not a plain sampler")
        rows, ids, step, steps = self._where
        h = h.clone()
        h[rows] = self.shift(h[rows], ids, step, steps)
        return h


class PromptEdit(Edit):
    """An edit of the prompts: `rewrite(prompts, ids) -> prompts`; it leaves the model untouched."""

    def rewrite(self, prompts: list[str], ids: Tensor) -> list[str]:
        raise NotImplementedError


@dataclass
class Generated:
    """Images (N, 3, H, W) in [0, 1] and what they cost: UNet rows run in full (each CFG half is a row) and rows
    that ran only the part after the mid block, plus wall time."""

    images: Tensor
    full_rows: int
    decoder_rows: int
    seconds: float

    def cost(self, decoder_fraction: float | None = None) -> dict[str, float]:
        """Per image; with the decoder's share of a UNet pass's FLOPs, also UNet-pass equivalents."""
        n = len(self.images)
        out = {"full_rows_per_image": self.full_rows / n, "decoder_rows_per_image": self.decoder_rows / n,
               "seconds_per_image": self.seconds / n}
        if decoder_fraction is not None:
            out["unet_equivalents_per_image"] = (self.full_rows + decoder_fraction * self.decoder_rows) / n
        return out


# --- the UNet call ----------------------------------------------------------------------------------------------

def _grow(value, batch: int, rows: Tensor):
    """Append `value[rows]` to every tensor (or tuple of tensors) whose first axis is the batch."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return torch.cat([value, value[rows]])
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, Tensor) for v in value):
        return type(value)(_grow(v, batch, rows) for v in value)
    return value


def check_splittable(unet: nn.Module) -> None:
    """The split pass needs a diffusers UNet whose up path sees the batch only through its block arguments."""
    if not hasattr(unet, "up_blocks") or getattr(unet, "mid_block", None) is None:
        raise VismechError(f"the split two-pass step needs a diffusers UNet with mid_block and up_blocks, got "
                           f"{type(unet).__name__}; use two_pass='naive'")
    if getattr(unet.config, "time_embedding_type", "positional") == "fourier" or any(
            hasattr(b, "skip_conv") for b in unet.up_blocks):
        raise VismechError("the split two-pass step does not support Fourier time embeddings or skip up-blocks; "
                           "use two_pass='naive'")


@contextmanager
def _after_mid(unet: nn.Module, batch: int, rows: Tensor | None, edit_rows: Callable[[Tensor], Tensor] | None,
               observe: Callable[[Tensor], None] | None):
    """Hooks for one UNet call: `observe(h)` sees the mid block's output; with `rows`, the edited h of those rows
    is appended to the batch there, and every up block gets its batch-sized arguments (skips, time embedding,
    text states) grown to match, so the up path runs once on [all rows, edited rows]."""

    def mid_hook(module, args, h):
        if observe is not None:
            observe(h.detach())
        if rows is None:
            return None
        return torch.cat([h, edit_rows(h[rows])])

    def up_hook(module, args, kwargs):
        return (tuple(_grow(a, batch, rows) for a in args), {k: _grow(v, batch, rows) for k, v in kwargs.items()})

    handles = [unet.mid_block.register_forward_hook(mid_hook)]
    if rows is not None:
        handles += [b.register_forward_pre_hook(up_hook, with_kwargs=True) for b in unet.up_blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class _Call:
    """One step's UNet inputs: `x` (the model batch), its conditioning, and which rows an edit touches."""

    x: Tensor
    t: Tensor
    kwargs: dict
    rows: Tensor  # model-batch rows of the selected samples (the conditional half under CFG)
    ids: Tensor  # the selected samples' ids
    step: int
    steps: int


def _unet(subject: DiffusionSubject, call: _Call, edit: HSpaceEdit | None, two_pass: str,
          observe: Observer | None, counts: list[int]) -> tuple[Tensor, Tensor]:
    """(eps_orig, eps_edit) for every row of the model batch; eps_edit is eps_orig where nothing is edited."""
    unet, batch = subject.unet, call.x.shape[0]
    seen = (lambda h: observe(h, call.step)) if observe is not None else None
    counts[0] += batch
    if edit is None or len(call.rows) == 0:
        with _after_mid(unet, batch, None, None, seen):
            eps = unet(call.x, call.t, **call.kwargs).sample
        return eps, eps
    if two_pass == "naive":
        counts[0] += batch
        with _after_mid(unet, batch, None, None, seen):
            eps = unet(call.x, call.t, **call.kwargs).sample
        with edit, edit.at(call.rows, call.ids, call.step, call.steps):
            edited = unet(call.x, call.t, **call.kwargs).sample
        return eps, edited
    counts[1] += len(call.rows)
    shift = lambda h: edit.shift(h, call.ids, call.step, call.steps)  # noqa: E731
    with _after_mid(unet, batch, call.rows, shift, seen):
        out = unet(call.x, call.t, **call.kwargs).sample
    eps, edited = out[:batch], out[:batch].clone()
    edited[call.rows] = out[batch:]
    return eps, edited


# --- the DDIM step ----------------------------------------------------------------------------------------------

def _scheduler(subject: DiffusionSubject, steps: int):
    """A private DDIM scheduler with the subject's schedule (set_timesteps mutates a scheduler)."""
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(subject.scheduler.config)
    if steps > ddim.config.num_train_timesteps:
        raise VismechError(f"sampling steps must be <= the {ddim.config.num_train_timesteps} training timesteps, "
                           f"got {steps}")
    ddim.set_timesteps(steps)
    return ddim


def direction_coefficient(ddim, t: Tensor, eta: float) -> float:
    """sqrt(1 - a_prev - sigma_t^2): the weight of eps in x_prev, as diffusers' DDIMScheduler.step computes it."""
    prev = int(t) - ddim.config.num_train_timesteps // ddim.num_inference_steps
    a_t = ddim.alphas_cumprod[int(t)]
    a_prev = ddim.alphas_cumprod[prev] if prev >= 0 else ddim.final_alpha_cumprod
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    return float((1 - a_prev - eta ** 2 * variance).clamp_min(0) ** 0.5)


def two_pass_step(ddim, t: Tensor, x: Tensor, eps_edit: Tensor, eps_orig: Tensor, eta: float,
                  noise: Tensor | None) -> Tensor:
    """The Asyrp step: diffusers' DDIM step on eps_edit (x0_hat, clipping, noise) with its direction term swapped
    to eps_orig. Where eps_edit equals eps_orig the correction is exactly 0, so unedited rows are plain DDIM."""
    out = ddim.step(eps_edit, t, x, eta=eta, variance_noise=noise).prev_sample
    if eps_edit is eps_orig:
        return out
    return out + direction_coefficient(ddim, t, eta) * (eps_orig - eps_edit)


# --- sampling ---------------------------------------------------------------------------------------------------

def _noise(generators: list[torch.Generator], shape: tuple[int, ...], device) -> Tensor:
    """One draw per generator, on the CPU, so an image's noise is the same in any batch and on any device."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def _latent_shape(subject: DiffusionSubject) -> tuple[int, int, int]:
    size = subject.unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    return subject.unet.config.in_channels, size, size


def _text(subject: DiffusionSubject, prompts: list[str], guided: bool) -> Tensor:
    """The pipeline's own prompt encoding; [uncond; cond] under guidance, as StableDiffusionPipeline batches it."""
    cond, uncond = subject.pipeline.encode_prompt(prompts, subject.device, 1, guided)
    return torch.cat([uncond, cond]) if guided else cond


def _decode(subject: DiffusionSubject, x: Tensor) -> Tensor:
    if subject.conditional:
        vae = subject.pipeline.vae
        x = vae.decode(x / vae.config.scaling_factor).sample
    return (x / 2 + 0.5).clamp(0, 1).cpu()


@torch.no_grad()
def _sample_batch(subject: DiffusionSubject, ids: Tensor, seeds: list[int], prompts: list[str] | None,
                  edit: HSpaceEdit | None, sampling: Sampling, two_pass: str, observe: Observer | None,
                  counts: list[int], bar) -> Tensor:
    ddim = _scheduler(subject, sampling.steps)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    shape, device, n = _latent_shape(subject), subject.device, len(seeds)
    x = _noise(generators, shape, device) * ddim.init_noise_sigma
    guided = subject.conditional and sampling.guidance_scale > 1
    kwargs = {"encoder_hidden_states": _text(subject, prompts, guided)} if subject.conditional else {}
    offset = n if guided else 0  # under guidance the edited rows are the conditional half
    for step, t in enumerate(ddim.timesteps):
        chosen = edit.selected(ids, step, sampling.steps).nonzero().flatten() if edit else ids[:0]
        call = _Call(torch.cat([x, x]) if guided else x, t, kwargs, chosen + offset, ids[chosen], step, sampling.steps)
        eps, edited = _unet(subject, call, edit, two_pass, observe, counts)
        if guided:  # keeping `edited is eps` when nothing was edited keeps the step plain DDIM
            eps, edited = (_guide(eps, n, sampling.guidance_scale),) * 2 if edited is eps else \
                (_guide(e, n, sampling.guidance_scale) for e in (eps, edited))
        noise = _noise(generators, shape, device) if sampling.eta > 0 else None
        x = two_pass_step(ddim, t, x, edited, eps, sampling.eta, noise)
        bar.update(n)
    return _decode(subject, x)


def _guide(eps: Tensor, n: int, scale: float) -> Tensor:
    uncond, cond = eps[:n], eps[n:]
    return uncond + scale * (cond - uncond)


def _check(subject: DiffusionSubject, ids: Sequence[int], seeds: Sequence[int], prompts: Sequence[str] | None,
           two_pass: str) -> None:
    if not isinstance(subject, DiffusionSubject):
        raise VismechError(f"the bias sampler needs a diffusion subject, got {type(subject).__name__} '{subject.id}'")
    if two_pass not in TWO_PASS:
        raise VismechError(f"two_pass must be one of {', '.join(TWO_PASS)}, got {two_pass!r}")
    if two_pass == "split":
        check_splittable(subject.unet)
    if len(ids) != len(seeds) or not seeds:
        raise VismechError(f"sample needs one seed per id and at least one, got {len(ids)} ids and {len(seeds)} seeds")
    if subject.conditional != (prompts is not None):
        want = "one prompt per sample" if subject.conditional else "no prompts"
        raise VismechError(f"subject '{subject.id}' is {'' if subject.conditional else 'un'}conditional: give {want}")
    if prompts is not None and len(prompts) != len(seeds):
        raise VismechError(f"sample needs one prompt per seed, got {len(prompts)} prompts and {len(seeds)} seeds")


def sample(subject: DiffusionSubject, ids: Sequence[int], seeds: Sequence[int], *,
           prompts: Sequence[str] | None = None, edit: Edit | None = None, sampling: Sampling = Sampling(),
           two_pass: str = "split", observe: Observer | None = None, progress: bool = False) -> Generated:
    """Generate one image per (id, seed[, prompt]) under `edit`. `ids` name the samples (an edit draws each
    sample's class from its id); `seeds` seed their noise. `observe(h, step)` sees the unedited h of every UNet
    batch (both CFG halves, uncond first). The images depend neither on `sampling.batch_size` nor on `two_pass`
    (up to float rounding between the two)."""
    from .progress import progress_bar

    _check(subject, ids, seeds, prompts, two_pass)
    ids_t, seeds, prompts = torch.as_tensor(list(ids), dtype=torch.long), list(seeds), prompts and list(prompts)
    h_edit = edit if isinstance(edit, HSpaceEdit) else None
    if isinstance(edit, PromptEdit):
        prompts = edit.rewrite(prompts, ids_t)
    context = edit if edit is not None and h_edit is None else nullcontext()
    counts, start, size = [0, 0], time.perf_counter(), sampling.batch_size
    with context, progress_bar(total=len(seeds) * sampling.steps, desc=f"{subject.id} DDIM x{sampling.steps}",
                               unit="img-step", enabled=progress) as bar:
        images = torch.cat([
            _sample_batch(subject, ids_t[i:i + size], seeds[i:i + size], prompts and prompts[i:i + size], h_edit,
                          sampling, two_pass, observe, counts, bar)
            for i in range(0, len(seeds), size)])
    return Generated(images, counts[0], counts[1], time.perf_counter() - start)


@torch.no_grad()
def decoder_fraction(subject: DiffusionSubject) -> float:
    """The share of one UNet pass's FLOPs spent after the mid block (up blocks and output layers), counted by
    torch's FlopCounterMode on one row: the price of a decoder-only row in UNet passes."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = subject.unet
    x = torch.zeros(1, *_latent_shape(subject), device=subject.device)
    kwargs = {}
    if subject.conditional:
        kwargs["encoder_hidden_states"] = _text(subject, [""], False)
    with FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(500), **kwargs)
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(unet).__name__
    after = [f"{root}.up_blocks.{i}" for i in range(len(unet.up_blocks))] + [
        f"{root}.{name}" for name in ("conv_norm_out", "conv_act", "conv_out")]
    return sum(flops.get(k, 0) for k in after) / flops["Global"]

"""DiffLens (Shi et al., CVPR 2025): bias features in a diffusion UNet's h-space, and steering them while sampling.

Implements docs/methods/difflens.md. `fit(subject, data)` takes a `vismech.datasets.bias.BiasFitData` and
 1. samples the fit ids unedited with the task's sampler, keeping h (site `h`, the mid-block output) at every step;
    unconditional: each sample's class is its final image's attribute (pixel rule or judge); conditional (the
    spec's SD locate): sample i's prompt names class i mod K ("a green sneaker"), that is its class, and a second
    run with the same noise naming another class gives IG's baseline;
 2. trains one TopK SAE on h tokens of all steps (both CFG halves for a conditional subject);
 3. trains one linear probe per step on the flattened h (the conditional half), class-balanced;
 4. scores every latent by integrated gradients of softmax(probe_t(W_dec s + b_dec) / T)[y] w.r.t. the code s
    (m points, left Riemann sum; unconditional: baseline code 0, y = the probe's argmax on the real h_t, signed IG;
    conditional: the counterfactual's code, y = the named class, |z - z'| * mean gradient), summed per class y over
    positions, samples and the last `ig_last_steps` steps, and ranks the latents per class;
 5. reports the SAE (FVU, L0, dead fraction), the probes (held-out accuracy per step) and the drift of generations
    when h is replaced by the SAE's reconstruction;
 6. calibrates (below).

`edit(subject, finding, strength)`: each sample gets a class c from its id (the mixture pi, below); at edited steps
(all but the first `skip_first_steps` and the last `skip_last_steps`) its code z at every position becomes z' with
the first `features_per_class` latents of class c moved, and h <- h + W_dec (z' - z): the SAE's reconstruction
error passes through. Under classifier-free guidance only the conditional half is edited. The sampler is the
two-pass step of `vismech.sampling`.

Strength s (identity 0 in both modes): mode "scale" sets z'_i = (1 + s) z_i (the reference's beta = 1 + s, so
s >= -1), mode "add" sets z'_i = z_i + s (beta = s).

Calibration: for each strength of `calibration_strengths`, on the calibration ids, measure M[:, 0] (unedited) and
M[:, c + 1] (every sample boosted towards class c), the attribute shares (K classes, then unlabelled); solve
q ~ M pi with pi on the simplex (pi >= 0, sum 1: a non-negative least squares whose solution is a mixture); the
edit at strength s draws class c with probability pi(s)[c + 1] (pi(s)[0]: left unedited), pi interpolated
linearly between calibrated strengths. Without calibration strengths, pi = (0, q): the reference's probability
mode. The finding's meta names the calibrated strength: the smallest whose predicted distribution is within
`calibration_tolerance` (total variation) of the target, else the closest.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..datasets.bias import BiasFitData, shares
from ..edit import Edit, HookEdit, NoEdit
from ..errors import VismechError, check_range
from ..finding import Finding
from ..method import Method, MethodConfig
from ..registry import METHODS
from ..sampling import HSpaceEdit, sample
from ..subject import DiffusionSubject, Subject
from .findings import BiasFinding
from .sae import LAYOUTS, SAETraining, TopKSAE, from_tokens, sae_report, to_tokens, train_sae

TASK = "bias"
MODES = ("scale", "add")
ADD_RULES = ("add", "set")
WRITE_BACKS = ("delta", "delta_and_bias")
Tensor = torch.Tensor


# --- configs ----------------------------------------------------------------------------------------------------

@dataclass
class SteeringConfig(MethodConfig):
    """What every h-space steering method of the bias task shares: the edited steps and the calibration."""

    skip_first_steps: int = 1
    skip_last_steps: int | None = None  # None: 0 for an unconditional subject, 1 for a conditional one (the spec's)
    calibration_strengths: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0])
    calibration_tolerance: float = 0.02

    def validate(self) -> None:
        if self.skip_first_steps < 0 or (self.skip_last_steps is not None and self.skip_last_steps < 0):
            raise VismechError(f"skip_first_steps and skip_last_steps must be >= 0, got {self.skip_first_steps} "
                               f"and {self.skip_last_steps}")
        if sorted(set(self.calibration_strengths)) != list(self.calibration_strengths):
            raise VismechError(f"calibration_strengths must be increasing and distinct, got "
                               f"{self.calibration_strengths}")
        check_range("calibration_tolerance", self.calibration_tolerance, 0.0, 1.0)


@dataclass
class ProbeConfig(SteeringConfig):
    """Steering config plus the per-step linear probes' training (Adam, class-balanced, 90/10 split)."""

    probe_lr: float = 0.01
    probe_epochs: int = 3
    probe_batch_size: int = 32
    probe_per_class: int = 1000

    def validate(self) -> None:
        super().validate()
        for name in ("probe_epochs", "probe_batch_size", "probe_per_class"):
            if getattr(self, name) < 1:
                raise VismechError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.probe_lr > 0:
            raise VismechError(f"probe_lr must be > 0, got {self.probe_lr}")


@dataclass
class DiffLensConfig(ProbeConfig):
    # the keys that choose between the released code's behaviour and vismech's (in each paper card's generated
    # deviations page)
    SWITCHES: ClassVar[dict[str, str]] = {
        "mode": "latents scaled by 1 + s (scale) or shifted by s (add)",
        "add_rule": "add mode: z + s (add), or z set to s where s > 0 (set)",
        "write_back": "h += W_dec (z' - z) (delta), or also + b_dec at every edited step for every sample "
                      "(delta_and_bias: strength 0 is not the identity)",
        "ig_steps": "[first, last] steps whose IG is summed (null: the last ig_last_steps)",
        "class_strengths": "per-class multipliers of the strength (null: one strength for every class)",
        "class_features": "per-class number of edited latents, tau (null: features_per_class for every class)",
        "calibration_strengths": "strengths at which the class mixture is calibrated ([]: classes drawn from the "
                                 "target, the released probability mode)",
    }
    sae_k: int = 8
    sae_expansion: int = 8
    sae_steps: int = 2000
    sae_batch_tokens: int = 1024
    sae_lr: float = 1e-3
    sae_warmup: float = 0.05
    sae_remove_parallel_grad: bool = True
    token_layout: str = "position"
    temperature: float = 1.0
    ig_points: int = 10
    ig_last_steps: int = 10
    ig_samples: int = 500
    features_per_class: int = 30
    ranked_per_class: int = 100
    mode: str = "scale"
    drift_samples: int = 64
    # mode "add" with add_rule "set": a class's latents become s where s > 0 instead of z + s (the reference's SD
    # `add_all`); s <= 0 still adds
    add_rule: str = "add"
    # "delta_and_bias": the decoder bias b_dec is added to h at every edited step on top of W_dec (z' - z), for
    # every sample (the reference's P2 write-back), so strength 0 is not the identity; "delta": only the change
    write_back: str = "delta"
    # [first, last] sampling-step indices (inclusive) whose IG is summed; null: the last `ig_last_steps` steps
    ig_steps: list[int] | None = None
    # per class: a multiplier of the strength (the reference tunes beta per class, e.g. SD age +30 / +0 / +50:
    # [30, 0, 50] at strength 1) and the number of ranked latents edited (tau, e.g. [10, 0, 30]); null: the
    # strength as given and `features_per_class` for every class
    class_strengths: list[float] | None = None
    class_features: list[int] | None = None

    def validate(self) -> None:
        super().validate()
        self.sae_training().validate()
        if self.add_rule not in ADD_RULES:
            raise VismechError(f"add_rule must be one of {', '.join(ADD_RULES)}, got {self.add_rule!r}")
        if self.write_back not in WRITE_BACKS:
            raise VismechError(f"write_back must be one of {', '.join(WRITE_BACKS)}, got {self.write_back!r}")
        if self.ig_steps is not None and not (len(self.ig_steps) == 2 and 0 <= self.ig_steps[0] <= self.ig_steps[1]):
            raise VismechError(f"ig_steps must be [first, last] with 0 <= first <= last, or null; got {self.ig_steps}")
        if self.class_features is not None and not all(0 <= n <= self.ranked_per_class for n in self.class_features):
            raise VismechError(f"class_features must each be in [0, ranked_per_class = {self.ranked_per_class}], got "
                               f"{self.class_features}")
        if self.token_layout not in LAYOUTS:
            raise VismechError(f"token_layout must be one of {', '.join(LAYOUTS)}, got {self.token_layout!r}")
        if self.mode not in MODES:
            raise VismechError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("ig_points", "ig_last_steps", "ig_samples", "features_per_class", "ranked_per_class"):
            if getattr(self, name) < 1:
                raise VismechError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.features_per_class > self.ranked_per_class:
            raise VismechError(f"features_per_class ({self.features_per_class}) must be <= ranked_per_class "
                               f"({self.ranked_per_class}): only the ranked latents are stored")
        if not self.temperature > 0:
            raise VismechError(f"temperature must be > 0, got {self.temperature}")
        if self.drift_samples < 0:
            raise VismechError(f"drift_samples must be >= 0, got {self.drift_samples}")
        if self.mode == "scale" and any(s < -1 for s in self.calibration_strengths):
            raise VismechError(f"in mode 'scale' strengths must be >= -1 (beta = 1 + strength >= 0), got "
                               f"{self.calibration_strengths}")

    def ig_step_list(self, steps: int) -> list[int]:
        """The sampling steps whose IG is summed, of `steps`."""
        if self.ig_steps is None:
            return list(range(max(0, steps - self.ig_last_steps), steps))
        first, last = self.ig_steps
        if last >= steps:
            raise VismechError(f"ig_steps {self.ig_steps} must lie within the sampler's steps 0..{steps - 1}")
        return list(range(first, last + 1))

    def per_class(self, k: int) -> tuple[Tensor, list[int]]:
        """(K,) strength multipliers and the K numbers of edited latents, checked against the K classes."""
        for name in ("class_strengths", "class_features"):
            value = getattr(self, name)
            if value is not None and len(value) != k:
                raise VismechError(f"{name} must give one value per class ({k}), got {value}")
        scale = torch.tensor(self.class_strengths if self.class_strengths is not None else [1.0] * k,
                             dtype=torch.float32)
        return scale, list(self.class_features if self.class_features is not None else [self.features_per_class] * k)

    def sae_training(self) -> SAETraining:
        return SAETraining(k=self.sae_k, expansion=self.sae_expansion, steps=self.sae_steps,
                           batch_tokens=self.sae_batch_tokens, lr=self.sae_lr, warmup=self.sae_warmup,
                           remove_parallel_grad=self.sae_remove_parallel_grad)


# --- stage 1: trajectories --------------------------------------------------------------------------------------

@dataclass
class Trajectories:
    """h at every step of unedited sampling of the fit samples, and each sample's class."""

    ids: list[int]
    h: Tensor  # (N, T, C, H, W): the maps the probes read (the conditional half under guidance)
    labels: Tensor  # (N,) class index, -1 unlabelled
    unet_rows: int
    others: list[Tensor] = field(default_factory=list)  # more maps of the same samples for the SAE (uncond halves)
    baseline: Tensor | None = None  # IG's baseline maps: the same noise with another class named (conditional)
    named: bool = False  # labels are the class named in each prompt (conditional), not measured on the image

    def sae_maps(self, samples: slice = slice(None)) -> Tensor:
        """(n * T * parts, C, H, W): every map the SAE trains on."""
        return torch.cat([p[samples].flatten(0, 1) for p in (self.h, *self.others)])


class _Recorder:
    """The sampler's observer: keeps h of every UNet call, then regroups them per sample and step."""

    def __init__(self):
        self.calls: list[Tensor] = []

    def __call__(self, h: Tensor, step: int) -> None:
        self.calls.append(h.detach().float().cpu().clone())

    def stacked(self, steps: int, guided: bool) -> tuple[Tensor, Tensor | None]:
        batches = [torch.stack(self.calls[i:i + steps], 1) for i in range(0, len(self.calls), steps)]
        if not guided:
            return torch.cat(batches), None
        halves = [b.chunk(2) for b in batches]  # each UNet batch is [uncond; cond]
        return torch.cat([c for _, c in halves]), torch.cat([u for u, _ in halves])


def check_bias_inputs(subject: Subject, data: Any) -> BiasFitData:
    if not isinstance(data, BiasFitData):
        raise VismechError(f"bias methods fit on a vismech.datasets.bias.BiasFitData, got {type(data).__name__}")
    if not isinstance(subject, DiffusionSubject):
        raise VismechError(f"bias methods need a diffusion subject, got {type(subject).__name__} '{subject.id}'")
    if subject.conditional != data.conditional:
        raise VismechError(f"subject '{subject.id}' is {'' if subject.conditional else 'un'}conditional but the fit "
                           f"data has {len(data.prompts)} prompts")
    subject.site("h")
    return data


def _run(subject: DiffusionSubject, data: BiasFitData, ids: list[int], prompts: list[str] | None,
         progress: bool) -> tuple[Tensor, Tensor | None, Tensor, int]:
    """Unedited sampling with h recorded: (h of the conditional half or of every row, h of the unconditional
    half or None, the images, UNet rows run)."""
    recorder = _Recorder()
    out = sample(subject, ids, data.seeds(ids), prompts=prompts, sampling=data.sampling, observe=recorder,
                 progress=progress)
    guided = subject.conditional and data.sampling.guidance_scale > 1
    h, uncond = recorder.stacked(data.sampling.steps, guided)
    return h, uncond, out.images, out.full_rows


def pair_classes(ids: list[int], k: int) -> tuple[Tensor, Tensor]:
    """The class each conditional fit sample names (id mod K: balanced) and its counterfactual, a different
    class cycling through the others, for IG's pair baseline."""
    ids_t = torch.tensor(ids)
    named = ids_t % k
    return named, (named + 1 + (ids_t // k) % (k - 1)) % k


def collect(subject: DiffusionSubject, data: BiasFitData, progress: bool = False) -> Trajectories:
    """Unconditional: the fit samples as they come, labelled by their images. Conditional (the spec's SD locate):
    each fit sample's prompt names a class ("a green sneaker"), which is its label, and a second run with the same
    noise names another class: its h is the IG baseline; the SAE also sees the unconditional half."""
    ids = data.ids("fit")
    if not subject.conditional:
        h, _, images, rows = _run(subject, data, ids, None, progress)
        return Trajectories(ids, h, data.labels(images), rows)
    if not data.attribute_prompts:
        raise VismechError(f"a conditional fit needs attribute_prompts (each prompt naming every class); "
                           f"fit data '{data.name}' has none")
    named, other = pair_classes(ids, len(data.classes))
    def wording(classes: Tensor) -> list[str]:
        return [data.attribute_prompts[i % len(data.prompts)][c] for i, c in zip(ids, classes.tolist())]

    h, uncond, _, rows = _run(subject, data, ids, wording(named), progress)
    h_other, _, _, rows_other = _run(subject, data, ids, wording(other), progress)
    return Trajectories(ids, h, named, rows + rows_other, others=[uncond] if uncond is not None else [],
                        baseline=h_other, named=True)


# --- sharing between the methods of one sweep -------------------------------------------------------------------

SHARED_ENTRIES = 4  # trajectories and SAEs kept in this process (a sweep's difflens, its controls, h_direction)
SHARED_MAX_BYTES = 2**30  # larger trajectories (the paper track's) are not kept: recomputing beats holding them
_shared: dict[str, tuple[Any, dict[str, int]]] = {}


def shared(key: str, subject: DiffusionSubject, compute, size_of=lambda value: 0):
    """`compute()` once per content `key` in this process: DiffLens, its random-latent control and h_direction
    of one sweep fit on the same trajectories and (the first two) the same SAE, so the later ones reuse them. A
    reuse adds to the subject's cost meter the passes the work cost when it was computed, so a record counts the
    same passes whichever method of the sweep ran first (as a finding loaded from the store does)."""
    if key in _shared:
        value, passes = _shared[key]
        for name, count in passes.items():
            setattr(subject.cost, name, getattr(subject.cost, name) + count)
        return value
    before = subject.cost.snapshot()
    value = compute()
    after = subject.cost.snapshot()
    if size_of(value) <= SHARED_MAX_BYTES:
        while len(_shared) >= SHARED_ENTRIES:
            _shared.pop(next(iter(_shared)))
        _shared[key] = (value, {name: after[name] - before[name] for name in after})
    return value


def shared_key(*parts: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def trajectory_bytes(traj: Trajectories) -> int:
    maps = [traj.h, *traj.others] + ([traj.baseline] if traj.baseline is not None else [])
    return sum(m.numel() * m.element_size() for m in maps)


# --- stage 3: probes --------------------------------------------------------------------------------------------

def balanced(labels: Tensor, per_class: int, k: int, generator: torch.Generator) -> Tensor:
    """Indices of up to `per_class` labelled samples of each class, the same number for every class."""
    counts = torch.bincount(labels[labels >= 0], minlength=k)
    if counts.min() < 2:
        raise VismechError(f"the fit samples hold too few of some class to train probes (per class: "
                           f"{counts.tolist()}); widen fit_ids")
    keep = min(per_class, int(counts.min()))
    chosen = [torch.nonzero(labels == c).flatten() for c in range(k)]
    return torch.cat([c[torch.randperm(len(c), generator=generator)[:keep]] for c in chosen])


@dataclass
class Probes:
    """One linear head per step on flattened h: logits_t = x @ weight[t].T + bias[t]."""

    weight: Tensor  # (T, K, D)
    bias: Tensor  # (T, K)

    def logits(self, x: Tensor, step: int | None = None) -> Tensor:
        """x (N, T, D) -> (N, T, K); with `step`, x (N, D) -> (N, K) for that step's head."""
        if step is not None:
            return x @ self.weight[step].T + self.bias[step]
        return torch.einsum("ntd,tkd->ntk", x, self.weight) + self.bias


def train_probes(x: Tensor, labels: Tensor, k: int, lr: float, epochs: int, batch_size: int,
                 generator: torch.Generator) -> tuple[Probes, Tensor]:
    """Adam on the summed cross-entropy of every step's head, 90/10 split; returns the probes and the held-out
    accuracy per step. x (N, T, D) of labelled samples."""
    n, steps, d = x.shape
    order = torch.randperm(n, generator=generator)
    held = max(1, n // 10)
    val, train = order[:held], order[held:]
    weight = torch.zeros(steps, k, d, requires_grad=True)  # zero init: the problem is convex, no draw needed
    bias = torch.zeros(steps, k, requires_grad=True)
    probes = Probes(weight, bias)
    optimiser = torch.optim.Adam([weight, bias], lr=lr)
    for _ in range(epochs):
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(shuffled), batch_size):
            b = shuffled[start:start + batch_size]
            logits = probes.logits(x[b])
            loss = F.cross_entropy(logits.flatten(0, 1), labels[b].repeat_interleave(steps), reduction="sum") / len(b)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        accuracy = (probes.logits(x[val]).argmax(-1) == labels[val, None]).double().mean(0)
    return Probes(weight.detach(), bias.detach()), accuracy


# --- stage 4: integrated gradients ------------------------------------------------------------------------------

def latent_ig(sae: TopKSAE, probes: Probes, step: int, h: Tensor, y: Tensor, temperature: float, points: int,
              layout: str, baseline: Tensor | None = None) -> Tensor:
    """IG of softmax(probe_step(decode(s)) / T)[y] w.r.t. the code s along s = z' + alpha (z - z'), z = encode(h),
    with a left Riemann sum of `points` terms; gradients flow through the decoder and the probe only.
    Baseline code z' = 0 (h = b_dec) gives the signed IG (z - z') * mean grad (the spec's P2 form); a baseline
    map (the counterfactual prompt's h) gives |z - z'| * mean grad (its SD form). h (B, C, H, W), y (B,) ->
    (B, positions, latents)."""
    b = h.shape[0]
    with torch.no_grad():
        z = sae.encode(to_tokens(h, layout)).view(b, -1, sae.n_latents)
        start = torch.zeros_like(z) if baseline is None else sae.encode(to_tokens(baseline, layout)).view_as(z)
    alphas = torch.arange(points, dtype=z.dtype) / points
    s = (start + alphas.view(-1, 1, 1, 1) * (z - start)).flatten(0, 1).requires_grad_(True)  # (points * B, P, n)
    decoded = from_tokens(sae.decode(s.flatten(0, 1)), (points * b, *h.shape[1:]), layout)
    probs = (probes.logits(decoded.flatten(1), step) / temperature).softmax(-1)
    target = probs.gather(1, y.repeat(points)[:, None]).sum()
    (grad,) = torch.autograd.grad(target, s)
    change = z - start if baseline is None else (z - start).abs()
    return change * grad.view(points, b, *z.shape[1:]).mean(0)


def score_latents(sae: TopKSAE, probes: Probes, traj: Trajectories, steps: list[int], k: int, samples: int,
                  temperature: float, points: int, layout: str, chunk: int = 64) -> Tensor:
    """(K, latents) float64: IG summed over positions, the first `samples` fit samples and `steps`, per class y:
    the class a conditional sample names, else the class the step's probe predicts on the real h."""
    scores = torch.zeros(k, sae.n_latents, dtype=torch.float64)
    h = traj.h[:samples]
    for step in steps:
        for start in range(0, len(h), chunk):
            part = slice(start, start + chunk)
            maps = h[part, step]
            if traj.named:
                y = traj.labels[:samples][part]
            else:
                with torch.no_grad():
                    y = probes.logits(maps.flatten(1), step).argmax(-1)
            baseline = traj.baseline[:samples][part, step] if traj.baseline is not None else None
            ig = latent_ig(sae, probes, step, maps, y, temperature, points, layout, baseline).sum(1).double()
            scores.index_add_(0, y, ig)
    return scores


def rank(scores: Tensor, keep: int) -> Tensor:
    """(K, keep) latent indices per class, highest score first (ties by index: a stable order)."""
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep]


# --- the edits --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """The edited steps: all but the first `skip_first` and the last `skip_last`."""

    skip_first: int
    skip_last: int

    def contains(self, step: int, steps: int) -> bool:
        return self.skip_first <= step < steps - self.skip_last


class ClassDraw:
    """Each sample's class from its id alone: c ~ pi over (unedited, class 0, ..., class K-1), drawn from the
    method's generator keyed by the id (so neither batch nor order matters); -1 means unedited."""

    def __init__(self, method: Method, pi: Tensor):
        self.method, self.cdf = method, pi.double().cumsum(0)
        self._cache: dict[int, int] = {}

    def _one(self, sample_id: int) -> int:
        if sample_id not in self._cache:
            u = torch.rand((), generator=self.method.generator(f"class|{sample_id}"), dtype=torch.float64)
            self._cache[sample_id] = min(int(torch.searchsorted(self.cdf, u, right=True)), len(self.cdf) - 1) - 1
        return self._cache[sample_id]

    def __call__(self, ids: Tensor) -> Tensor:
        return torch.tensor([self._one(int(i)) for i in ids], dtype=torch.long)


def fixed_class(c: int):
    return lambda ids: torch.full((len(ids),), c, dtype=torch.long)


class SteeringEdit(HSpaceEdit):
    """Per-sample class steering in h at the steps of `window`; subclasses say how h moves for a class."""

    def __init__(self, subject: DiffusionSubject, classes_of, window: Window):
        super().__init__(subject)
        self.classes_of, self.window = classes_of, window

    def selected(self, ids: Tensor, step: int, steps: int) -> Tensor:
        if not self.window.contains(step, steps):
            return torch.zeros(len(ids), dtype=torch.bool)
        return self.classes_of(ids) >= 0

    def shift(self, h: Tensor, ids: Tensor, step: int, steps: int) -> Tensor:
        return h + self.delta(h, self.classes_of(ids).to(h.device), step)

    def delta(self, h: Tensor, classes: Tensor, step: int) -> Tensor:
        raise NotImplementedError


class LatentEdit(SteeringEdit):
    """DiffLens's edit: z' = z with class c's latents scaled by (1 + s_c) or shifted by s_c (with add_rule "set":
    set to s_c > 0); h += W_dec (z' - z), and with write_back "delta_and_bias" also + b_dec for every sample."""

    def __init__(self, subject, sae: TopKSAE, features: Tensor, strength: float, mode: str, layout: str,
                 classes_of, window: Window, *, counts: list[int] | None = None, class_scale: Tensor | None = None,
                 add_rule: str = "add", write_back: str = "delta"):
        super().__init__(subject, classes_of, window)
        self.sae, self.mode, self.layout = sae.to(subject.device), mode, layout
        self.add_rule, self.write_back = add_rule, write_back
        k = len(features)
        counts = counts if counts is not None else [features.shape[1]] * k
        mask = torch.zeros(k, sae.n_latents)
        for c, n in enumerate(counts):  # class c edits its first counts[c] ranked latents (tau_c)
            mask[c, features[c, :n]] = 1.0
        self.mask = mask.to(subject.device)  # (K, latents)
        scale = class_scale if class_scale is not None else torch.ones(k)
        self.strengths = (strength * scale.float()).to(subject.device)  # (K,) s_c

    def selected(self, ids: Tensor, step: int, steps: int) -> Tensor:
        if self.write_back == "delta_and_bias":  # the bias goes into every sample, edited class or not
            return torch.full((len(ids),), self.window.contains(step, steps), dtype=torch.bool)
        return super().selected(ids, step, steps)

    def shift(self, h: Tensor, ids: Tensor, step: int, steps: int) -> Tensor:
        classes = self.classes_of(ids).to(h.device)
        edited = classes >= 0
        out = h.clone()
        if edited.any():
            out[edited] = h[edited] + self.delta(h[edited], classes[edited], step)
        if self.write_back == "delta_and_bias":
            per_map = len(to_tokens(h[:1], self.layout))
            out = out + from_tokens(self.sae.b_dec.expand(per_map * len(h), -1), h.shape, self.layout)
        return out

    def delta(self, h: Tensor, classes: Tensor, step: int) -> Tensor:
        tokens = to_tokens(h, self.layout)
        per_map = len(tokens) // len(h)
        mask = self.mask[classes].repeat_interleave(per_map, dim=0)
        s = self.strengths[classes].repeat_interleave(per_map)[:, None]  # (tokens, 1)
        if self.mode == "scale":
            dz = s * self.sae.encode(tokens) * mask
        elif self.add_rule == "set":  # the reference's add_all: the latent becomes s where s > 0
            dz = torch.where(s > 0, s - self.sae.encode(tokens), s) * mask
        else:
            dz = s * mask
        return from_tokens(self.sae.decode_delta(dz), h.shape, self.layout)


def reconstruction_edit(subject: DiffusionSubject, sae: TopKSAE, layout: str) -> Edit:
    """h replaced by the SAE's reconstruction at every step (a plain one-pass edit): the SAE's fidelity."""
    sae = sae.to(subject.device)
    return HookEdit(subject, {"h": lambda h: from_tokens(sae(to_tokens(h, layout)), h.shape, layout)})


# --- calibration ------------------------------------------------------------------------------------------------

def _on_support(m: Tensor, q: Tensor, support: list[int]) -> Tensor:
    """argmin ||m p - q|| with sum p = 1 and p zero off `support`: the KKT system, solved by least squares."""
    a = m[:, support]
    n = len(support)
    kkt = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    kkt[:n, :n], kkt[:n, n], kkt[n, :n] = 2 * a.T @ a, 1.0, 1.0
    rhs = torch.cat([2 * a.T @ q, torch.ones(1, dtype=torch.float64)])
    p = torch.zeros(m.shape[1], dtype=torch.float64)
    p[support] = torch.linalg.lstsq(kkt, rhs[:, None]).solution[:n, 0]
    return p


MAX_MIXTURE = 12  # 2^12 supports; bias attributes have a handful of classes


def simplex_lstsq(m: Tensor, q: Tensor) -> Tensor:
    """argmin ||m p - q|| over the simplex {p >= 0, sum p = 1}: a non-negative least squares whose solution is a
    mixture. Exact: the optimum solves the equality-constrained problem on its own support, so every support is
    tried and the best feasible solution kept (fewest columns on ties)."""
    m, q = m.double(), q.double()
    n = m.shape[1]
    if n > MAX_MIXTURE:
        raise VismechError(f"calibration mixes at most {MAX_MIXTURE} columns, got {n}")
    best, best_error = None, float("inf")
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            p = _on_support(m, q, list(support))
            if p.min() < -1e-12:
                continue
            error = float((m @ p.clamp_min(0) - q).norm())
            if error < best_error - 1e-12:
                best, best_error = p.clamp_min(0), error
    return best / best.sum()


def interpolate_pi(strengths: Tensor, pis: Tensor, strength: float) -> Tensor:
    """pi at `strength`, linear between calibrated strengths, the nearest end outside them."""
    s = strengths.double()
    if strength <= s[0]:
        return pis[0]
    if strength >= s[-1]:
        return pis[-1]
    j = int(torch.searchsorted(s, torch.tensor(strength, dtype=torch.float64)))
    w = (strength - s[j - 1]) / (s[j] - s[j - 1])
    return (1 - w) * pis[j - 1] + w * pis[j]


def tv(p: Tensor, q: Tensor) -> float:
    return float((p - q).abs().sum() / 2)


# --- the method family ------------------------------------------------------------------------------------------

class SteeringMethod(Method):
    """Shared skeleton of h-space steering on the bias task: collect -> locate (the subclass) -> calibrate.
    Subclasses implement `locate(subject, data, trajectories) -> (tensors, meta)` and
    `make_edit(subject, finding, strength, classes_of, window) -> SteeringEdit`."""

    tasks = (TASK,)
    Config: ClassVar[type[SteeringConfig]] = SteeringConfig
    strength_range = (-float("inf"), float("inf"))
    identity_strength = 0.0
    progress: bool = False

    # subclasses ------------------------------------------------------------------------------------------------
    def locate(self, subject: DiffusionSubject, data: BiasFitData, traj: Trajectories) -> tuple[dict, dict]:
        raise NotImplementedError

    def make_edit(self, subject: DiffusionSubject, finding: Finding, strength: float, classes_of,
                  window: Window) -> SteeringEdit:
        raise NotImplementedError

    # fit -------------------------------------------------------------------------------------------------------
    def fit(self, subject: Subject, data: Any) -> Finding:
        data = check_bias_inputs(subject, data)
        traj = shared(self.trajectory_key(subject, data), subject, lambda: collect(subject, data, self.progress),
                      trajectory_bytes)
        tensors, meta = self.locate(subject, data, traj)
        meta = {**meta, "classes": list(data.classes), "attribute": data.attribute, "target": list(data.target),
                "sampling": asdict(data.sampling), "conditional": subject.conditional, "labeler": data.labeler,
                "fit_labels": shares(traj.labels, len(data.classes)).tolist(), "fit_unet_rows": traj.unet_rows,
                "fit_labels_are": "named in the prompt" if traj.named else f"measured ({data.labeler})"}
        finding = self.new_finding(subject, TASK, tensors=tensors, meta=meta)
        calib_tensors, calib_meta = self.calibrate(subject, data, finding)
        finding.tensors.update(calib_tensors)
        finding.meta["calibration"] = calib_meta
        return finding

    def trajectory_key(self, subject: DiffusionSubject, data: BiasFitData) -> str:
        return shared_key("trajectories", subject.weights_digest, data.digest())

    def window(self, subject: DiffusionSubject) -> Window:
        skip_last = self.config.skip_last_steps
        if skip_last is None:
            skip_last = 1 if subject.conditional else 0
        return Window(self.config.skip_first_steps, skip_last)

    def measure(self, subject: DiffusionSubject, data: BiasFitData, ids: list[int], edit: Edit | None) -> Tensor:
        images = sample(subject, ids, data.seeds(ids), prompts=data.prompts_for(ids), edit=edit,
                        sampling=data.sampling, progress=self.progress).images
        return shares(data.labels(images), len(data.classes))

    def calibrate(self, subject: DiffusionSubject, data: BiasFitData, finding: Finding) -> tuple[dict, dict]:
        """M per calibration strength, the simplex least-squares mixture pi, and the strength it names."""
        k, strengths = len(data.classes), list(self.config.calibration_strengths)
        target = torch.tensor([*data.target, 0.0], dtype=torch.float64)  # no unlabelled samples wanted
        if not strengths:
            return {}, {"strength": None, "target": list(data.target), "rule": "no calibration: pi = (0, target)"}
        ids, window = data.ids("calibration"), self.window(subject)
        base = self.measure(subject, data, ids, None)
        ms, pis = [], []
        for s in strengths:
            columns = [base] + [self.measure(subject, data, ids, self.make_edit(subject, finding, s, fixed_class(c),
                                                                                 window)) for c in range(k)]
            ms.append(torch.stack(columns, 1))
            pis.append(simplex_lstsq(ms[-1], target))
        predicted = [m @ p for m, p in zip(ms, pis)]
        errors = [tv(p, target) for p in predicted]
        within = [i for i, e in enumerate(errors) if e <= self.config.calibration_tolerance]
        best = within[0] if within else min(range(len(errors)), key=errors.__getitem__)
        tensors = {"calibration.strengths": torch.tensor(strengths, dtype=torch.float64),
                   "calibration.M": torch.stack(ms), "calibration.pi": torch.stack(pis),
                   "calibration.predicted": torch.stack(predicted)}
        meta = {"strength": strengths[best], "target": list(data.target), "tv_error": errors,
                "predicted": [round(float(v), 4) for v in predicted[best]], "samples": len(ids),
                "rule": f"smallest strength with predicted TV <= {self.config.calibration_tolerance}, else the "
                        f"closest; columns: unedited, then each class boosted; rows: classes, then unlabelled"}
        return tensors, meta

    # edit ------------------------------------------------------------------------------------------------------
    def edits_at_identity(self) -> bool:
        """Whether the identity strength still changes h (a reference write-back does)."""
        return False

    def mixture(self, finding: Finding, strength: float) -> Tensor:
        """pi at `strength`: over (unedited, class 0, ..., class K-1)."""
        calibration = BiasFinding.read(finding).calibration
        if "pi" not in calibration:
            return torch.tensor([0.0, *finding.meta["target"]], dtype=torch.float64)
        return interpolate_pi(calibration["strengths"], calibration["pi"], strength)

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        strength = self.check_strength(strength)
        self.check_finding(subject, finding)
        if strength == self.identity_strength and not self.edits_at_identity():
            return NoEdit(subject)  # the identity: no hook at all, so bit-identical by construction
        draw = ClassDraw(self, self.mixture(finding, strength))
        return self.make_edit(subject, finding, strength, draw, self.window(subject))


class SAEMethod(SteeringMethod):
    """Steering SAE latents (DiffLens and its random-latent control): fit trains the SAE, the subclass picks the
    latents per class."""

    Config = DiffLensConfig

    def check_strength(self, strength: float) -> float:
        strength = super().check_strength(strength)
        if self.config.mode == "scale" and strength < -1:
            raise VismechError(f"strength of method '{self.name}' in mode 'scale' must be >= -1 (beta = 1 + "
                               f"strength >= 0), got {strength:g}")
        return strength

    def shared_generator(self, salt: str) -> torch.Generator:
        """The SAE and probes draw from difflens's streams, so a control that shares them differs only in its
        choice of latents."""
        owner = self if self.name == DiffLens.name else DiffLens(self.config, seed=self.seed)
        return owner.generator(salt)

    def train_sae(self, subject: DiffusionSubject, data: BiasFitData, traj: Trajectories) -> tuple[TopKSAE, dict]:
        """SAE on the tokens of the first 90% of trajectories; the report on the held-out 10%."""
        cfg = self.config
        held = max(1, len(traj.ids) // 10)
        fit_part, held_part = slice(0, len(traj.ids) - held), slice(len(traj.ids) - held, None)

        def train() -> tuple[TopKSAE, dict]:
            train_tokens = to_tokens(traj.sae_maps(fit_part), cfg.token_layout)
            sae, curve = train_sae(train_tokens, cfg.sae_training(), self.shared_generator("sae"))
            report = sae_report(sae, to_tokens(traj.sae_maps(held_part), cfg.token_layout))
            return sae, {**report, "held_out_trajectories": held, "loss_curve": curve[::10]}

        # the SAE is a function of the trajectories, its training config and difflens's seed: shared in a sweep
        key = shared_key("sae", self.trajectory_key(subject, data), asdict(cfg.sae_training()), cfg.token_layout,
                         self.seed)
        sae, meta = shared(key, subject, train)
        return sae, dict(meta)

    def drift(self, subject: DiffusionSubject, data: BiasFitData, sae: TopKSAE) -> dict[str, float]:
        """How much generations move when h is replaced by the SAE's reconstruction at every step."""
        n = self.config.drift_samples
        if n == 0:
            return {}
        ids = data.ids("calibration")[:n]
        run = lambda edit: sample(subject, ids, data.seeds(ids), prompts=data.prompts_for(ids), edit=edit,  # noqa: E731
                                  sampling=data.sampling).images
        plain, rebuilt = run(None), run(reconstruction_edit(subject, sae, self.config.token_layout))
        same = (data.labels(plain) == data.labels(rebuilt)).double().mean()
        return {"samples": len(ids), "mean_abs_pixel": round(float((plain - rebuilt).abs().mean()), 5),
                "attribute_agreement": round(float(same), 4)}

    def edits_at_identity(self) -> bool:
        return self.config.write_back == "delta_and_bias"

    def make_edit(self, subject, finding, strength, classes_of, window) -> SteeringEdit:
        cfg = self.config
        sae = TopKSAE.from_tensors(finding.tensors, finding.meta["sae"]["k"])
        ranked = BiasFinding.read(finding).ranked_latents
        scale, counts = cfg.per_class(len(ranked))
        counts = [min(n, ranked.shape[1]) for n in counts]
        return LatentEdit(subject, sae, ranked, strength, cfg.mode, cfg.token_layout, classes_of, window,
                          counts=counts, class_scale=scale, add_rule=cfg.add_rule, write_back=cfg.write_back)


@METHODS.register()
class DiffLens(SAEMethod):
    """DiffLens: SAE latents of h ranked per class by IG through per-step probes, scaled or shifted while sampling."""

    name = "difflens"

    def locate(self, subject, data, traj):
        cfg, k = self.config, len(data.classes)
        sae, sae_meta = self.train_sae(subject, data, traj)
        keep = balanced(traj.labels, cfg.probe_per_class, k, self.shared_generator("probe-split"))
        probes, accuracy = train_probes(traj.h[keep].flatten(2), traj.labels[keep], k, cfg.probe_lr, cfg.probe_epochs,
                                        cfg.probe_batch_size, self.shared_generator("probes"))
        cfg.per_class(k)  # per-class settings that do not fit the classes fail before any training
        ig_steps = cfg.ig_step_list(data.sampling.steps)
        scores = score_latents(sae, probes, traj, ig_steps, k, cfg.ig_samples, cfg.temperature, cfg.ig_points,
                               cfg.token_layout)
        ranked = rank(scores, min(cfg.ranked_per_class, sae.n_latents))
        tensors = {**sae.tensors(), "probe.weight": probes.weight, "probe.bias": probes.bias,
                   "latents.scores": scores.float(), "latents.ranked": ranked}
        meta = {"sae": {**sae_meta, "drift": self.drift(subject, data, sae)},
                "probes": {"samples_per_class": len(keep) // k,
                           "held_out_accuracy": [round(float(a), 4) for a in accuracy],
                           "mean_held_out_accuracy": round(float(accuracy.mean()), 4)},
                "ig": {"steps": ig_steps, "samples": min(cfg.ig_samples, len(traj.ids)), "points": cfg.ig_points,
                       "temperature": cfg.temperature,
                       "baseline": "counterfactual prompt, same noise; score |dz| * grad" if traj.baseline is not None
                       else "zero code (h = b_dec); signed IG"}}
        return tensors, meta

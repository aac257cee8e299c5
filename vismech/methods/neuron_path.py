"""NeuronPath (Wang et al., ICLR 2025): one influential FFN neuron per ViT layer, per image, and its baselines.

Implements docs/methods/neuronpath.md. A neuron is a channel of block l's FFN hidden state after GELU, read at the
CLS token (`token_scope="cls"`) or over all patch tokens (`"mean_patches"`, the MAE reading); `"auto"` reads the
subject's head (timm's `global_pool`: "token" -> cls, "avg" -> mean_patches). The target is the
softmax probability of each image's own ground-truth class.

Everything rests on one primitive, `ramp_sums`: for a set of items (an image plus some units in each clamped
layer), ramp those units by alpha_k = k/m while every other scoped unit of the clamped layers is held at its clean
value, and sum dF/d(unit) over the m steps. The JAS of a path, the layer-scaled candidate score (the whole layer is
"the units"), the exact rescoring of candidates, and the knowledge-neuron score are all read off those sums.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from ..edit import Edit, HookEdit
from ..errors import VismechError, check_at_least, check_choice
from ..finding import Finding
from ..method import Method, MethodConfig
from ..progress import progress_bar
from ..registry import METHODS
from ..subject import Subject
from .findings import PathFinding

TASK = "neuron_path"
TOKEN_SCOPES = ("auto", "cls", "mean_patches")
JAS_FORMS = ("ref", "ig")
CANDIDATE_SCORINGS = ("layer_scaled", "isolated")
PROCEDURES = ("vismech", "reference")
TOPK_ACCUMULATE = ("sum", "reference")
BATCH_TARGETS = ("each", "first")

Tensor = torch.Tensor
Sums = dict[int, Tensor]  # layer -> (items, units, tokens), fp32


# ---------------------------------------------------------------------------------------------------------------
# The model side: which modules, which tokens, replacing their values.

def ffn_width(subject: Subject) -> int:
    return subject.site("ffn.0").width


def ffn_modules(subject: Subject) -> list[nn.Module]:
    """The modules of the activation sites ffn.0 .. ffn.{L-1}, in layer order."""
    found = {}
    for site in subject.sites_of("ffn."):
        match = re.fullmatch(r"ffn\.(\d+)", site.name)
        if match and site.kind == "activation":
            found[int(match.group(1))] = subject.module(site)
    if not found or sorted(found) != list(range(len(found))):
        raise VismechError(f"subject '{subject.id}' needs activation sites ffn.0 .. ffn.<L-1> (FFN units after GELU) "
                           f"for task '{TASK}'; it has: {', '.join(sorted(subject.sites)) or '(none)'}")
    return [found[i] for i in range(len(found))]


def token_positions(model: nn.Module, scope: str) -> slice:
    """CLS for supervised ViTs; every patch token (prefix tokens excluded) for MAE's mean-pooled head."""
    if scope == "auto":
        scope = "mean_patches" if getattr(model, "global_pool", "token") in ("avg", "avgmax", "max") else "cls"
    if scope == "cls":
        return slice(0, 1)
    return slice(int(getattr(model, "num_prefix_tokens", 1)), None)


@dataclass
class Probe:
    """One batch of images on one subject, and how attribution passes over it are run."""

    model: nn.Module
    modules: list[nn.Module]
    tokens: slice
    x: Tensor  # preprocessed images (b, ...): the model's own input space, where the IG baseline 0 lives
    labels: Tensor  # (b,) ground-truth classes
    m: int
    chunk_rows: int
    separate_grads: bool = False  # the reference's calls: one gradient call per clamped tensor
    acts: list[Tensor] | None = field(default=None, repr=False)  # clean scoped activations, (b, S, N) per layer

    @property
    def depth(self) -> int:
        return len(self.modules)

    @property
    def size(self) -> int:
        return self.x.shape[0]

    def activations(self) -> list[Tensor]:
        if self.acts is None:
            self.acts = clean_activations(self)
        return self.acts

    @property
    def width(self) -> int:
        return self.activations()[0].shape[-1]


@contextmanager
def replaced(probe: Probe, fns: Mapping[int, Callable[[Tensor], Tensor]]) -> Iterator[dict[int, Tensor]]:
    """Inside the block, layer l's scoped FFN tokens become `fns[l](current)`; yields {layer: what was inserted}.

    Inserting a leaf cuts gradient flow through that layer's scoped units (the clamping of the spec); the residual
    stream, attention and the other tokens still carry gradients around it.
    """
    inserted: dict[int, Tensor] = {}

    def make(layer: int, fn: Callable[[Tensor], Tensor]):
        def hook(module, args, output):
            new = output.clone()
            inserted[layer] = value = fn(output[:, probe.tokens])
            new[:, probe.tokens] = value
            return new

        return hook

    handles = [probe.modules[layer].register_forward_hook(make(layer, fn)) for layer, fn in fns.items()]
    try:
        yield inserted
    finally:
        for handle in handles:
            handle.remove()


def constant(value: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda current: value


def detached(current: Tensor) -> Tensor:
    return current.detach()


def leaf(current: Tensor) -> Tensor:
    return current.detach().requires_grad_()


@torch.no_grad()
def clean_activations(probe: Probe) -> list[Tensor]:
    """One clean forward yields every layer's scoped activations."""
    with replaced(probe, {layer: detached for layer in range(probe.depth)}) as seen:
        probe.model(probe.x)
    return [seen[layer] for layer in range(probe.depth)]


def target(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum over rows of p(y): rows do not interact, so one backward gives every row's own gradient."""
    return logits.float().softmax(-1).gather(1, labels[:, None]).sum()


def gradients(probe: Probe, output: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    """One reverse sweep for all tensors; the reference walks back once per tensor (same values, more work)."""
    with warnings.catch_warnings():
        # The cost meter's full backward hook on the root module fires on its output here (the images need no
        # gradient); that is exactly the one count per reverse sweep we want.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        if probe.separate_grads:
            return [torch.autograd.grad(output, [t], retain_graph=True)[0] for t in tensors]
        return list(torch.autograd.grad(output, tensors))


def row_chunks(total_items: int, per_item: int, chunk_rows: int) -> Iterator[tuple[Tensor, Tensor]]:
    """(item, step) of each row, item-major, at most `chunk_rows` rows at a time: IG sums are linear in the steps."""
    total = total_items * per_item
    for start in range(0, total, chunk_rows):
        rows = torch.arange(start, min(start + chunk_rows, total))
        yield rows // per_item, rows % per_item


def gather_units(values: Tensor, units: Tensor) -> Tensor:
    """values (r, S, N), units (r, K) -> (r, K, S)."""
    return values.gather(2, units[:, None, :].expand(-1, values.shape[1], -1)).transpose(1, 2)


def ramped(clean: Tensor, units: Tensor, alpha: Tensor) -> Tensor:
    """clean (r, S, N) with `units` (r, K) scaled by alpha (r,) and everything else exactly clean."""
    scale = torch.ones(clean.shape[0], clean.shape[-1], dtype=clean.dtype, device=clean.device)
    scale.scatter_(1, units, alpha[:, None].to(clean.dtype).expand_as(units))
    return clean * scale[:, None, :]


# ---------------------------------------------------------------------------------------------------------------
# Attribution.

def ramp_sums(probe: Probe, image_of: Tensor, units: Mapping[int, Tensor]) -> tuple[Sums, Sums]:
    """Clean values W_l and gradient sums G_l = sum_k dF/d(unit) at alpha_k = k/m (left Riemann, alpha = 1 unseen).

    Items: item i is image `image_of[i]` with units `units[l][i]` (K_l of them) ramped in each clamped layer l (the
    keys of `units`); every other scoped unit of those layers is held clean, later layers run normally.
    Returns W, G: {layer: (items, K_l, S)} in fp32.
    """
    acts, layers, device = probe.activations(), sorted(units), probe.x.device
    image_of = image_of.to(device)
    units = {layer: u.to(device) for layer, u in units.items()}
    W = {layer: gather_units(acts[layer][image_of].float(), units[layer]) for layer in layers}
    G = {layer: torch.zeros_like(w) for layer, w in W.items()}
    for item, step in row_chunks(image_of.numel(), probe.m, probe.chunk_rows):
        item, step = item.to(device), step.to(device)
        image = image_of[item]
        alpha = step.float() / probe.m
        values = {layer: ramped(acts[layer][image], units[layer][item], alpha).requires_grad_() for layer in layers}
        with torch.enable_grad(), replaced(probe, {layer: constant(v) for layer, v in values.items()}):
            output = target(probe.model(probe.x[image]), probe.labels[image])
        grads = gradients(probe, output, [values[layer] for layer in layers])
        for layer, grad in zip(layers, grads):
            G[layer].index_add_(0, item, gather_units(grad.float(), units[layer][item]))
    return W, G


def totals(sums: Sums, layers) -> Tensor:
    """Sum over the given layers and their units: (items, S), zeros when there are none."""
    out = torch.zeros_like(next(iter(sums.values()))[:, 0])
    for layer in layers:
        out = out + sums[layer].sum(1)
    return out


def jas_forms(W: Sums, G: Sums, m: int) -> dict[str, Tensor]:
    """Both JAS forms from the same sums, averaged over scoped tokens (a no-op for the CLS scope), and the path-IG
    form's term of each layer, (items, L): the per-layer share of the attribution that plots of a path show.

    ref (product of sums, what the released code computes) and ig (path integrated gradients; complete as m grows).
    """
    layers = list(W)
    ref = (totals(W, layers) / m * totals(G, layers)).mean(-1)
    per_layer = torch.stack([(W[layer] * G[layer]).sum(1).div(m).mean(-1) for layer in layers], 1)
    return {"ref": ref, "ig": per_layer.sum(1), "layers": per_layer}


def counted(W: Sums, G: Sums, accumulate: str, scanned: int | None = None) -> tuple[Sums, Sums]:
    """The units whose clean values and gradients enter a score. "sum": all K of each layer. "reference": the
    released top-K code writes every unit's term of an earlier layer into the same slot, so only the K-th ranked
    unit (the last written) counts, while the forward still ramps all K. `scanned` (the layer whose every unit is
    a candidate) is kept whole."""
    if accumulate == "sum":
        return W, G

    def last(sums: Sums) -> Sums:
        return {layer: s if layer == scanned else s[:, -1:] for layer, s in sums.items()}

    return last(W), last(G)


def layer_scaled_scores(W: Sums, G: Sums, layer: int, m: int) -> Tensor:
    """The reference's candidate score for every unit j of `layer` (all of whose units were ramped):
    (G_layer[j] + sum of the other ramped units' G) * (W_layer[j] + sum of their W) / m, token-averaged. (items, N)."""
    others = [other for other in W if other != layer]
    g = G[layer] + totals(G, others)[:, None, :]
    w = W[layer] + totals(W, others)[:, None, :]
    return (g * w).mean(-1) / m


def all_units(items: int, width: int, device) -> Tensor:
    return torch.arange(width, device=device).expand(items, width)


def path_units(paths: Tensor, layers: range | list[int]) -> dict[int, Tensor]:
    """paths (items, L, K) -> {layer: (items, K)}."""
    return {layer: paths[:, layer] for layer in layers}


def path_jas(probe: Probe, paths: Tensor, image_of: Tensor | None = None, accumulate: str = "sum") -> dict[str, Tensor]:
    """JAS of whole paths (items, L, K) with all L layers clamped; item i explains image image_of[i] (default i)."""
    image_of = torch.arange(paths.shape[0]) if image_of is None else image_of
    W, G = ramp_sums(probe, image_of, path_units(paths, range(probe.depth)))
    return jas_forms(*counted(W, G, accumulate), probe.m)


def top(scores: Tensor, k: int) -> Tensor:
    """Indices of the k largest (signed) scores per row, best first."""
    return scores.topk(k, dim=-1).indices


# ---------------------------------------------------------------------------------------------------------------
# Path finders. Each returns paths (b, L, K) long; the NeuronPath search may also return its final JAS.

def activation_paths(probe: Probe, k: int) -> Tensor:
    """Per layer, the largest clean signed activations (token sum for the patch scope)."""
    return torch.stack([top(a.float().sum(1), k) for a in probe.activations()], 1)


def extend_isolated(probe: Probe, path: list[Tensor], candidates: Tensor, accumulate: str = "sum") -> dict[str, Tensor]:
    """Exact JAS of P_<t plus each candidate alone at layer t = len(path): (b, C) per form."""
    b, c = candidates.shape
    image_of = torch.arange(b, device=candidates.device).repeat_interleave(c)
    units = {layer: p.repeat_interleave(c, 0) for layer, p in enumerate(path)}
    units[len(path)] = candidates.reshape(-1, 1)
    W, G = counted(*ramp_sums(probe, image_of, units), accumulate, scanned=len(path))
    return {name: value.view(b, c, *value.shape[1:]) for name, value in jas_forms(W, G, probe.m).items()}


def greedy_search(probe: Probe, config: "NeuronPathConfig") -> tuple[Tensor, dict[str, Tensor] | None]:
    """Layer-progressive greedy search; with `isolated` scoring and K = 1 the last rescoring is the final JAS."""
    b, k = probe.size, config.top_k
    images = torch.arange(b, device=probe.x.device)
    path: list[Tensor] = []
    final = None
    for t in range(probe.depth):
        if config.procedure == "reference":
            probe.acts = clean_activations(probe)  # the reference's clean forward per layer
        units = {**dict(enumerate(path)), t: all_units(b, probe.width, probe.x.device)}
        W, G = counted(*ramp_sums(probe, images, units), config.topk_accumulate, scanned=t)
        scores = layer_scaled_scores(W, G, t, probe.m)
        if config.candidate_scoring == "layer_scaled":
            path.append(top(scores, k))
            continue
        candidates = top(scores, min(config.candidates, probe.width))
        exact = extend_isolated(probe, path, candidates, config.topk_accumulate)
        chosen = top(exact[config.jas_form], k)
        path.append(candidates.gather(1, chosen))
        rows = torch.arange(b, device=chosen.device)
        final = {name: value[rows, chosen[:, 0]] for name, value in exact.items()} if k == 1 else None
    return torch.stack(path, 1), final


def knowledge_neuron_paths(probe: Probe, k: int) -> Tensor:
    """Per layer on its own: ramp the whole layer, score a_j * (1/m) sum_k g_j, take the argmax."""
    b, images = probe.size, torch.arange(probe.size, device=probe.x.device)
    picks = []
    for t in range(probe.depth):
        W, G = ramp_sums(probe, images, {t: all_units(b, probe.width, probe.x.device)})
        picks.append(top(layer_scaled_scores(W, G, t, probe.m), k))
    return torch.stack(picks, 1)


def influence_pattern_paths(probe: Probe, k: int) -> Tensor:
    """Input-space IG ramp from the normalised all-zero image; per layer t, the argmax of dp(y)/d(layer-t units)
    averaged over steps and tokens. No activation factor.

    The reference re-inserts layers < t as clamped tensors; at their own values that changes neither the forward
    nor a gradient taken at layer t, which depends only on what runs after it, so only layer t is replaced. Layers
    after t must run unclamped, hence one pass per layer.
    """
    b, device = probe.size, probe.x.device
    picks = []
    for t in range(probe.depth):
        fns = {t: leaf}
        total = torch.zeros(b, probe.width, dtype=torch.float32, device=device)
        for item, step in row_chunks(b, probe.m, probe.chunk_rows):
            item, step = item.to(device), step.to(device)
            alpha = (step.float() / probe.m).to(probe.x.dtype).view(-1, *([1] * (probe.x.dim() - 1)))
            with torch.enable_grad(), replaced(probe, fns) as inserted:
                output = target(probe.model(probe.x[item] * alpha), probe.labels[item])
            (grad,) = gradients(probe, output, [inserted[t]])
            total.index_add_(0, item, grad.float().mean(1))
        picks.append(top(total, k))
    return torch.stack(picks, 1)


def random_paths(generator_for: Callable[[str], torch.Generator], ids: Tensor, depth: int, width: int, k: int,
                 draw: int) -> Tensor:
    """K distinct uniform units per layer, from a generator keyed by (seed, draw, image id): batch-independent."""
    rows = []
    for item_id in ids.tolist():
        gen = generator_for(f"path|{draw}|{item_id}")
        rows.append(torch.stack([torch.randperm(width, generator=gen)[:k] for _ in range(depth)]))
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------------------------
# Edits and findings.

def path_edit(subject: Subject, paths: Tensor, strength: float, token_scope: str = "auto") -> HookEdit:
    """Scale each row's path units by `strength` at the scoped tokens (0 removes, 2 enhances, 1 is the identity).

    Row r of every batch gets paths[r]: the caller restricts the finding to the batch's items in batch order.
    """
    paths = paths if paths.dim() == 3 else paths[..., None]
    tokens = token_positions(subject.model, token_scope)
    sites = [f"ffn.{layer}" for layer in range(len(ffn_modules(subject)))]
    if paths.shape[1] != len(sites):
        raise VismechError(f"paths have {paths.shape[1]} layers but subject '{subject.id}' has {len(sites)}")

    def make(units: Tensor):
        def hook(output: Tensor) -> Tensor:
            if output.shape[0] != units.shape[0]:
                raise VismechError(f"a neuron-path edit holds paths for {units.shape[0]} items but the batch has "
                                   f"{output.shape[0]} rows; restrict the finding to the batch with select_items")
            scale = torch.ones(output.shape[0], output.shape[-1], dtype=output.dtype, device=output.device)
            scale.scatter_(1, units.to(output.device), strength)
            new = output.clone()
            new[:, tokens] = output[:, tokens] * scale[:, None, :]
            return new

        return hook

    return HookEdit(subject, {site: make(paths[:, layer]) for layer, site in enumerate(sites)})


CLASS_PREFIX = "class_"  # finding tensors indexed by class, not by item


def as_ranks(paths: Tensor) -> Tensor:
    """Paths as (items, L, K) whether stored with K = 1 squeezed or not."""
    return paths if paths.dim() == 3 else paths[..., None]


def class_frequency(paths: Tensor, labels: Tensor, num_classes: int, width: int) -> Tensor:
    """How often each (layer, unit) lies on the paths of each class's images, over all K ranks: (C, L, N) float."""
    paths, labels = as_ranks(paths).long(), labels.long()
    n, depth, k = paths.shape
    slot = (labels[:, None, None] * depth + torch.arange(depth)[None, :, None]) * width + paths
    counts = torch.bincount(slot.reshape(-1), minlength=num_classes * depth * width)
    return counts.view(num_classes, depth, width).float()


def class_paths(paths: Tensor, labels: Tensor, num_classes: int, width: int) -> Tensor:
    """Each class's path: per (layer, rank) slot, the most frequent unit over the class's images (the smallest unit
    index among ties, so the choice is deterministic); -1 for a class without images. (C, L, K) long."""
    paths, labels = as_ranks(paths).long(), labels.long()
    n, depth, k = paths.shape
    slot = ((labels[:, None, None] * depth + torch.arange(depth)[None, :, None]) * k
            + torch.arange(k)[None, None, :]) * width + paths
    counts = torch.bincount(slot.reshape(-1), minlength=num_classes * depth * k * width)
    counts = counts.view(num_classes, depth, k, width)
    modes = counts.argmax(-1)  # argmax returns the first maximum: the smallest unit
    present = torch.bincount(labels, minlength=num_classes) > 0
    return torch.where(present[:, None, None], modes, torch.full_like(modes, -1))


def class_similarity(frequency: Tensor) -> Tensor:
    """Cosine similarity of the classes' flattened (layer, unit) frequency vectors: (C, C); 0 for empty classes."""
    flat = frequency.flatten(1).double()
    norms = flat.norm(dim=1, keepdim=True)
    unit = flat / norms.clamp_min(1e-12)
    return unit @ unit.T


def select_items(finding: Finding, ids) -> Finding:
    """The finding restricted to `ids`, in that order: every per-item tensor (first axis = items) is re-indexed."""
    item_ids = finding.tensors["item_ids"]
    position = {int(i): p for p, i in enumerate(item_ids.tolist())}
    wanted = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
    missing = [i for i in wanted if i not in position]
    if missing:
        raise VismechError(f"finding of method '{finding.method}' has no path for item id(s) "
                           f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
    index = torch.tensor([position[i] for i in wanted], dtype=torch.long)
    tensors = {name: t if name.startswith(CLASS_PREFIX) or not t.dim() else t[index] for name, t in finding.tensors.items()}
    return replace(finding, tensors=tensors, meta=dict(finding.meta))


def select_draw(finding: Finding, draw: int) -> Finding:
    """A random-path finding whose `paths` and JAS are those of draw `draw` (for per-draw edits)."""
    if "draw_paths" not in finding.tensors:
        raise VismechError(f"finding of method '{finding.method}' has no draws")
    draws = finding.tensors["draw_paths"].shape[1]
    if not 0 <= draw < draws:
        raise VismechError(f"draw must be in [0, {draws - 1}], got {draw}")
    t = finding.tensors
    return replace(finding, tensors={**t, "paths": t["draw_paths"][:, draw], "jas_ref": t["draw_jas_ref"][:, draw],
                                     "jas_ig": t["draw_jas_ig"][:, draw]}, meta={**finding.meta, "draw": draw})


def make_probe(subject: Subject, images: Tensor, labels: Tensor, *, m: int, chunk_rows: int, token_scope: str,
               separate_grads: bool = False) -> Probe:
    device = subject.device
    with torch.no_grad():
        x = subject.preprocess(images.to(device))
    return Probe(subject.model, ffn_modules(subject), token_positions(subject.model, token_scope), x, labels.to(device),
                 m, chunk_rows, separate_grads)


def _explainable(subject: Subject) -> None:
    if not hasattr(subject, "preprocess") or not hasattr(subject, "num_classes"):
        raise VismechError(f"task '{TASK}' needs a classifier subject; '{subject.id}' is {type(subject).__name__}")


def images_to_explain(subject: Subject, data: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(data, Mapping) or not {"id", "image", "label"} <= set(data):
        raise VismechError(f"task '{TASK}' fits on items with 'id', 'image' and 'label'; got "
                           f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}")
    ids, images, labels = (torch.as_tensor(data[key]) for key in ("id", "image", "label"))
    if not (ids.dim() == labels.dim() == 1 and images.shape[0] == ids.shape[0] == labels.shape[0] > 0):
        raise VismechError(f"'id' and 'label' must be (n,) and 'image' (n, ...) with the same n > 0; got "
                           f"{tuple(ids.shape)}, {tuple(labels.shape)}, {tuple(images.shape)}")
    _explainable(subject)
    return ids.long(), images, labels.long()


def batches_to_explain(subject: Subject, data: Any, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(ids, images, labels) batches of a mapping of tensors, or of an item set read lazily (an image folder of
    50,000 files is never held in memory at once)."""
    if isinstance(data, Mapping):
        ids, images, labels = images_to_explain(subject, data)
        with progress_bar(total=ids.shape[0], desc="fit", unit="img") as bar:
            for lo in range(0, ids.shape[0], batch_size):
                yield ids[lo:lo + batch_size], images[lo:lo + batch_size], labels[lo:lo + batch_size]
                bar.update(min(batch_size, ids.shape[0] - lo))
        return
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__") or len(data) == 0:
        raise VismechError(f"task '{TASK}' fits on a non-empty item set or a mapping of tensors; got "
                           f"{type(data).__name__}")
    from torch.utils.data import DataLoader

    with progress_bar(total=len(data), desc="fit", unit="img") as bar:
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
            yield images_to_explain(subject, batch)
            bar.update(len(batch["id"]))


def class_runs(batches: Iterator[tuple[Tensor, Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Each batch cut where the label changes: the released code targets the first image's label for the whole
    batch, which is right only on one-class batches (ImageNet val read in folder order is class-sorted, so its
    batches of 50 are exactly the classes)."""
    for ids, images, labels in batches:
        change = torch.nonzero(labels[1:] != labels[:-1]).flatten() + 1
        bounds = [0, *change.tolist(), len(labels)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            yield ids[lo:hi], images[lo:hi], labels[lo:hi]


# ---------------------------------------------------------------------------------------------------------------
# Methods.

@dataclass
class PathConfig(MethodConfig):
    m: int = 20  # Riemann steps of every ramp
    jas_form: str = "ref"  # the form selection uses where it reads a JAS; both forms are always reported
    top_k: int = 1  # units per layer (the pruning variant uses K > 1)
    token_scope: str = "auto"  # the subject's head decides: cls, or mean_patches for MAE-style pooled heads
    batch_size: int = 32  # images explained together
    chunk_rows: int = 4096  # rows per forward/backward; the sums are linear in the steps

    def validate(self) -> None:
        check_choice("jas_form", self.jas_form, JAS_FORMS)
        check_choice("token_scope", self.token_scope, TOKEN_SCOPES)
        for name, low in (("m", 1), ("top_k", 1), ("batch_size", 1), ("chunk_rows", 1)):
            check_at_least(name, getattr(self, name), low)


class PathMethod(Method):
    """Base of the neuron-path methods: batches the images, reports JAS and cost, edits path units."""

    tasks = (TASK, "pruning")  # pruning keeps the class paths made from these per-image paths
    Config = PathConfig
    strength_range = (0.0, 2.0)  # multiplier of the path units: 1 is the identity
    identity_strength = 1.0

    def find(self, probe: Probe, ids: Tensor) -> Tensor:
        """Paths (b, L, K) for one batch."""
        raise NotImplementedError

    def explain(self, probe: Probe, ids: Tensor) -> dict[str, Tensor]:
        paths = self.find(probe, ids)
        jas = path_jas(probe, paths)
        return {"paths": paths, "jas_ref": jas["ref"], "jas_ig": jas["ig"], "layer_ig": jas["layers"]}

    def check_subject(self, subject: Subject, task: str) -> None:
        width = ffn_width(subject)
        if self.config.top_k > width:
            raise VismechError(f"method.config.top_k must be at most the {width} FFN units per layer of "
                               f"'{subject.id}', got {self.config.top_k}")
        candidates = getattr(self.config, "candidates", None)
        if candidates is not None and candidates > width:
            raise VismechError(f"method.config.candidates must be at most the {width} FFN units per layer of "
                               f"'{subject.id}', got {candidates}")

    def probe(self, subject: Subject, images: Tensor, labels: Tensor) -> Probe:
        c = self.config
        return make_probe(subject, images, labels, m=c.m, chunk_rows=c.chunk_rows, token_scope=c.token_scope,
                          separate_grads=getattr(c, "procedure", "vismech") == "reference")

    def batches(self, subject: Subject, data: Any) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        return batches_to_explain(subject, data, self.config.batch_size)

    def fit(self, subject: Subject, data: Any) -> Finding:
        start = subject.cost.snapshot()
        parts: list[dict[str, Tensor]] = []
        id_parts, label_parts = [], []
        for ids, images, labels in self.batches(subject, data):
            parts.append(self.explain(self.probe(subject, images, labels), ids))
            id_parts.append(ids)
            label_parts.append(labels)
        ids, labels = torch.cat(id_parts), torch.cat(label_parts)
        tensors = {name: torch.cat([p[name].detach().cpu() for p in parts]) for name in parts[0]}
        tensors = {name: self._stored(name, t) for name, t in tensors.items()}
        width = ffn_width(subject)
        classes = class_paths(tensors["paths"], labels, subject.num_classes, width)
        tensors[CLASS_PREFIX + "paths"] = classes.squeeze(-1) if self.config.top_k == 1 else classes
        tensors[CLASS_PREFIX + "images"] = torch.bincount(labels, minlength=subject.num_classes)
        end = subject.cost.snapshot()
        n = max(ids.shape[0], 1)
        cost = {key: end[key] - start[key] for key in end}
        # wall time is cost, not content: it stays out of the finding so equal findings have equal digests
        meta = {**cost, **{f"{key}_per_image": cost[key] / n for key in cost}, "items": int(ids.shape[0]),
                "layers": len(ffn_modules(subject)), "width": width, "jas_form": self.config.jas_form}
        found = PathFinding(ids, labels, tensors.pop("paths"), tensors.pop("jas_ref"), extra=tensors)
        return self.new_finding(subject, TASK, tensors=found.tensors(), meta=meta)

    def _stored(self, name: str, t: Tensor) -> Tensor:
        if name.endswith("paths"):
            return t.long().squeeze(-1) if self.config.top_k == 1 else t.long()
        return t.float()

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        strength = self.check_strength(strength)
        self.check_finding(subject, finding)
        paths = PathFinding.read(finding).paths
        return path_edit(subject, paths, strength, finding.config.get("token_scope", "auto"))


@dataclass
class NeuronPathConfig(PathConfig):
    # the keys that choose between the released code's behaviour and vismech's (in each paper card's generated
    # deviations page)
    SWITCHES: ClassVar[dict[str, str]] = {
        "jas_form": "the JAS form selection reads: ref (product of sums, the released code's) or ig (path IG)",
        "candidate_scoring": "candidates scored with all of layer t ramped (layer_scaled, the released search) or "
                             "exactly (isolated)",
        "topk_accumulate": "top-K: every one of the K units of an earlier layer counts (sum), or only the K-th "
                           "ranked (reference)",
        "batch_target": "target class: each image's label (each), or the batch's first (first; batches are cut at "
                        "label changes)",
    }
    candidate_scoring: str = "layer_scaled"  # the reference's objective; "isolated" rescores candidates exactly
    candidates: int = 16  # C: candidates rescored exactly per layer with "isolated" (C = N is exact greedy)
    procedure: str = "vismech"  # "reference": the released code's calls, for the cost comparison
    score_activation_path: bool = True  # the reference also reports the Activation path's JAS
    # "reference": of the K units of each earlier layer only the K-th ranked one counts in candidate scores and in
    # the reported JAS (the released top-K code's slot index never advances); the forward still ramps all K
    topk_accumulate: str = "sum"
    # "first": the batch's first label is every image's target (the released code); batches are then cut wherever
    # the label changes, so each batch is one class and the result equals "each" (per-image labels)
    batch_target: str = "each"

    def validate(self) -> None:
        super().validate()
        check_choice("candidate_scoring", self.candidate_scoring, CANDIDATE_SCORINGS)
        check_choice("procedure", self.procedure, PROCEDURES)
        check_choice("topk_accumulate", self.topk_accumulate, TOPK_ACCUMULATE)
        check_choice("batch_target", self.batch_target, BATCH_TARGETS)
        if self.candidate_scoring == "isolated":  # layer_scaled keeps the top K of all N units: no candidates
            check_at_least("candidates", self.candidates, self.top_k)
        if self.procedure == "reference" and self.candidate_scoring != "layer_scaled":
            raise VismechError("procedure 'reference' reproduces the reference's calls and needs "
                               "candidate_scoring 'layer_scaled'")


@METHODS.register()
class NeuronPath(PathMethod):
    """NeuronPath (ICLR 2025): layer-progressive greedy search for the path of highest joint attribution."""

    name = "neuron_path"
    Config = NeuronPathConfig

    def probe(self, subject: Subject, images: Tensor, labels: Tensor) -> Probe:
        if self.config.batch_target == "first":
            labels = labels[:1].expand_as(labels)
        return super().probe(subject, images, labels)

    def batches(self, subject: Subject, data: Any) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        batches = super().batches(subject, data)
        return class_runs(batches) if self.config.batch_target == "first" else batches

    def explain(self, probe: Probe, ids: Tensor) -> dict[str, Tensor]:
        accumulate = self.config.topk_accumulate
        paths, final = greedy_search(probe, self.config)
        if final is None:
            final = path_jas(probe, paths, accumulate=accumulate)
        out = {"paths": paths, "jas_ref": final["ref"], "jas_ig": final["ig"], "layer_ig": final["layers"]}
        if self.config.score_activation_path:
            baseline = activation_paths(probe, self.config.top_k)
            jas = path_jas(probe, baseline, accumulate=accumulate)
            out |= {"activation_paths": baseline, "activation_jas_ref": jas["ref"], "activation_jas_ig": jas["ig"]}
        return out


@METHODS.register()
class ActivationPath(PathMethod):
    """Baseline: per layer, the unit with the largest clean activation."""

    name = "activation_path"

    def find(self, probe: Probe, ids: Tensor) -> Tensor:
        return activation_paths(probe, self.config.top_k)


@METHODS.register()
class InfluencePattern(PathMethod):
    """Baseline (Lu et al. 2021, greedy gradient-only): per layer, the argmax of the input-IG gradient."""

    name = "influence_pattern"

    def find(self, probe: Probe, ids: Tensor) -> Tensor:
        return influence_pattern_paths(probe, self.config.top_k)


@METHODS.register()
class KnowledgeNeurons(PathMethod):
    """Baseline (Dai et al. 2022): per layer independently, the unit of largest integrated gradients."""

    name = "knowledge_neurons"

    def find(self, probe: Probe, ids: Tensor) -> Tensor:
        return knowledge_neuron_paths(probe, self.config.top_k)


@dataclass
class RandomPathConfig(PathConfig):
    draws: int = 5  # independent random paths per image; `paths` and the JAS columns hold their mean / draw 0

    def validate(self) -> None:
        super().validate()
        check_at_least("draws", self.draws, 1)


@METHODS.register()
class RandomPath(PathMethod):
    """Control: uniformly random units per layer, keyed by (seed, image id); JAS averaged over several draws."""

    name = "random_path"
    Config = RandomPathConfig
    control = True

    def explain(self, probe: Probe, ids: Tensor) -> dict[str, Tensor]:
        b, d = probe.size, self.config.draws
        draws = torch.stack([random_paths(self.generator, ids, probe.depth, probe.width, self.config.top_k, draw)
                             for draw in range(d)], 1).to(probe.x.device)  # (b, D, L, K)
        jas = path_jas(probe, draws.flatten(0, 1), torch.arange(b).repeat_interleave(d))
        ref, ig = jas["ref"].view(b, d), jas["ig"].view(b, d)
        return {"paths": draws[:, 0], "jas_ref": ref.mean(1), "jas_ig": ig.mean(1),
                "layer_ig": jas["layers"].view(b, d, -1).mean(1), "draw_paths": draws,
                "draw_jas_ref": ref, "draw_jas_ig": ig}


def jas_of_paths(subject: Subject, data: Mapping[str, Tensor], paths: Tensor, *, m: int = 20,
                 token_scope: str = "auto", chunk_rows: int = 4096) -> dict[str, Tensor]:
    """Both JAS forms of given paths (n, L[, K]) for the images of `data` (dict with 'image', 'label')."""
    _, images, labels = images_to_explain(subject, {"id": torch.arange(len(data["label"])), **data})
    probe = make_probe(subject, images, labels, m=m, chunk_rows=chunk_rows, token_scope=token_scope)
    paths = paths if paths.dim() == 3 else paths[..., None]
    return {name: value.cpu() for name, value in path_jas(probe, paths.to(probe.x.device)).items()}

"""The paper track's judges of generated images (docs/protocols.md §3), each from a weights file given by path.

- classifier (`top1/resnet50-v2`): torchvision ResNet-50 with the IMAGENET1K_V2 weights and the transforms bundled
  with them (resize 232 bilinear, centre crop 224, ImageNet mean/std); `classes` are torchvision's 1000 category
  names, which the concept task matches by name (Imagenette's "chain saw", "English springer" are spelled so).
- clip: open_clip (OpenAI weights converted to open_clip's layout, e.g. timm/vit_base_patch32_clip_224.openai's
  `open_clip_model.safetensors`). OpenAI's TorchScript `.pt` is not accepted: a weights-only load cannot read it.
  The arch must be the `-quickgelu` variant for OpenAI weights: the plain names use GELU and would load the same
  keys into a different network. `encode_*` return L2-normalised embeddings; each metric applies its own scale.
- fid: the feature space `fid_features` names, each torch-fidelity's extractor fed uint8 images at their own size
  (it resizes them the TF1 way), its weights file given by `fid`:
  - "inception" (default): Inception-v3 pool3 (2048-d), `FeatureExtractorInceptionV3` (the network torchmetrics'
    FID wraps) with `pt_inception-2015-12-05-6726825d.pth`.
  - "dinov2-vit-l-14" (FD-DINOv2): the CLS token (1024-d) of DINOv2 ViT-L/14, `FeatureExtractorDinoV2`'s forward
    (resize to 224, ImageNet mean/std) around timm's VisionTransformer, into which DINOv2's own checkpoint
    (`dinov2_vitl14_pretrain.pth`) loads key for key. torch-fidelity builds the network only through torch.hub (a
    download) and refuses a weights path, so the network is built here; the checkpoint's 37 x 37 position
    embeddings are resampled to the 16 x 16 grid once, as DINOv2's `interpolate_pos_encoding` does per call.
  - "clip-vit-l-14": OpenAI CLIP ViT-L/14's image embedding (768-d, not normalised), `FeatureExtractorCLIP`'s forward
    (resize to 224, CLIP mean/std) around the visual tower torch-fidelity's `build_model` makes from a state dict in
    OpenAI's layout (open_clip's `open_clip_model.safetensors` of timm/vit_large_patch14_clip_224.openai is one);
    its own weights path would unpickle TorchScript, so the state dict is read here, weights-only.
  The reference folder's features are computed once and cached under `cache_dir`, keyed by the folder's content
  digest and the extractor's fingerprint (name, weights digest, preprocessing, dimension): FIDs in different
  feature spaces never share a cache entry or a leaderboard table.
- cmmd: CLIP ViT-L/14 at 336 px (torch-fidelity's "clip-vit-l-14-336px" visual tower, built as above from e.g.
  timm/vit_large_patch14_clip_336.openai's `open_clip_model.safetensors`), L2-normalised image embeddings (768-d)
  of images resized bicubic to 336 x 336 without a crop, as the CMMD release (Jayasumana et al. 2024) embeds them;
  the `cmmd` metric (vismech.metrics.distribution) compares them with the reference folder's, cached as FID's.
- attribute (`fd/fairface`): FairFace ResNet-34 (`res34_fair_align_multi_7_20190809.pt`, logits race 7, gender 2,
  age 9), 224 px squash, ImageNet mean/std; groups per docs/protocols.md (gender 2; age 0-19 / 20-59 / 60+; race White,
  Black, Asian = East + Southeast Asian, Indian, renormalised over the four).
- face_crop: "haar" crops the largest OpenCV Haar-cascade face (frontal, default cascade), squared and padded by
  `FACE_PADDING` per side, before FairFace. The protocol's dlib CNN detector with 5-landmark alignment needs model
  files not available here: this is a deviation, recorded in the attribute fingerprint. null: whole images (P2 on
  CelebA-HQ, whose images are aligned faces).

No-face policy "drop": an image where the detector finds no face gets a row of zeros from every attribute's probs
(no probability mass, no NaN). A consumer keeps rows whose sum is 1 for the shares and FD, and counts the others
with `no_face(probs)` in the `no_face_rate` metric.

Every file is read weights-only: safetensors, or `torch.load(weights_only=True)` (a pickle needing anything but
tensors and plain containers is refused, never executed), then loaded strictly into the architecture.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import pickle
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ...errors import VismechError, one_line
from .base import Judges

Tensor = torch.Tensor

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
EXPECTED = "a .safetensors file or a weights-only torch state dict (.pth/.pt/.bin, optionally under 'state_dict')"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FID_DIM = 2048
FAIRFACE_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# FairFace's 18 logits (its predict.py): race 0-6, gender 7-8, age 9-17, in this order
FAIRFACE_RACE = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
FAIRFACE_GENDER = ("Male", "Female")
FAIRFACE_AGE = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
# attribute -> (first logit, FairFace bins, {group: bins summed into it}); Latino_Hispanic and Middle Eastern belong
# to no group, so race is renormalised over the four groups' mass
ATTRIBUTES: dict[str, tuple[int, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "gender": (7, FAIRFACE_GENDER, {"male": ("Male",), "female": ("Female",)}),
    "age": (9, FAIRFACE_AGE, {"0-19": ("0-2", "3-9", "10-19"), "20-59": ("20-29", "30-39", "40-49", "50-59"),
                              "60+": ("60-69", "70+")}),
    "race": (0, FAIRFACE_RACE, {"White": ("White",), "Black": ("Black",), "Asian": ("East Asian", "Southeast Asian"),
                                "Indian": ("Indian",)}),
}
FACE_CROPS = (None, "haar")
FACE_CASCADE = "haarcascade_frontalface_default.xml"
FACE_PADDING = 0.25  # of the face box's side, per side: dlib's get_face_chip default as FairFace calls it
HAAR = dict(scaleFactor=1.1, minNeighbors=5)  # OpenCV's documented defaults for face detection
MIN_FACE = 1 / 8  # smallest face side searched, as a fraction of the image's short side
# what the SD cards' CLIP metrics report, by arch (docs/protocols.md §3); other archs are unprofiled
# The protocols' scales differ from vismech's metrics (clip_t: 100 x cosine clipped at 0; clip_i: raw cosine): the
# profile names what the paper reports, and each metric's units what the record holds; the two convert linearly.
CLIP_PROFILES = {"ViT-B-32-quickgelu": "clipscore/openai-B32 (the paper reports raw cosine, 0-1)",
                 "ViT-L-14-quickgelu": "clip-i/openai-L14, clip-t/openai-L14 (the paper reports CLIP-I as "
                                       "(cos + 1) / 2 and CLIP-T as raw cosine)"}
SPEC_KEYS = ("classifier", "clip", "clip_arch", "fid", "fid_features", "cmmd", "reference", "reference_limit",
             "attribute", "face_crop", "cache_dir", "device", "batch_size")
FEATURE_SPACES = ("inception", "dinov2-vit-l-14", "clip-vit-l-14")  # judges.fid_features
CMMD_SPACE = "clip-vit-l-14-336px"  # the CLIP of CMMD's definition
# the published architectures of the feature spaces (DINOv2's vit_large; OpenAI's ViT-L/14 and ViT-L/14@336px
# visual towers); a test puts a tiny one of the same class in their place
ARCHS: dict[str, dict[str, int]] = {
    "dinov2-vit-l-14": {"patch_size": 14, "embed_dim": 1024, "depth": 24, "num_heads": 16},
    "clip-vit-l-14": {"resolution": 224, "patch_size": 14, "width": 1024, "layers": 24, "embed_dim": 768},
    "clip-vit-l-14-336px": {"resolution": 336, "patch_size": 14, "width": 1024, "layers": 24, "embed_dim": 768},
}
DINOV2_POS_OFFSET = 0.1  # DINOv2's interpolate_pos_encoding scales by (grid + 0.1) / M against floor rounding
# what torch/safetensors raise on a file that is not a readable weights-only checkpoint
_READ_ERRORS = (RuntimeError, ValueError, KeyError, AttributeError, EOFError, OSError, SafetensorError,
                pickle.UnpicklingError, zipfile.BadZipFile)


# --- weights files ------------------------------------------------------------------------------------------

def weights_file(path: str | Path, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise VismechError(f"{what} weights file '{file}' does not exist; expected {EXPECTED}")
    if file.suffix.lower() not in WEIGHT_SUFFIXES:
        raise VismechError(f"{what} weights file '{file}' has suffix '{file.suffix}'; allowed: "
                           f"{', '.join(WEIGHT_SUFFIXES)}")
    return file


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime make a rewritten file a new entry
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path, what: str) -> tuple[dict[str, Tensor], Path]:
    """A checkpoint's tensors, read without executing anything: safetensors, or a weights-only torch load."""
    file = weights_file(path, what)
    try:
        if file.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except _READ_ERRORS as exc:
        raise VismechError(f"{what} weights file '{file}' is not loadable ({one_line(exc)}); "
                           f"expected {EXPECTED}") from None
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise VismechError(f"{what} weights file '{file}' holds {type(state).__name__}, not a state dict of tensors; "
                           f"expected {EXPECTED}")
    # DataParallel checkpoints prefix every key
    return {k.removeprefix("module."): v for k, v in state.items()}, file


def fit_state_dict(module: torch.nn.Module, state: dict[str, Tensor], file: Path, what: str) -> None:
    """Strict load: a checkpoint of another architecture fails here instead of leaving random weights."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VismechError(f"{what} weights file '{file}' does not fit {what} ({one_line(exc, 240)})") from None


def fingerprint(library: str, file: Path, **items: Any) -> dict[str, Any]:
    from importlib.metadata import version

    return {"library": f"{library} {version(library)}", "weights": file.name, "weights_sha256": file_sha256(file),
            **items}


@contextmanager
def seeded_init() -> Iterator[None]:
    """Architectures initialise randomly before loading: keep that off the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def batched(fn: Callable[[Tensor], Tensor], batch_size: int) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else fn(x)

    return run


def to_uint8(x: Tensor) -> Tensor:
    """[0, 1] floats to the bytes a saved PNG holds (diffusers rounds, as here)."""
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)


def normalise(x: Tensor, mean, std) -> Tensor:
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


# --- the judges -------------------------------------------------------------------------------------------------

def imagenet_classifier(weights: str | Path, device: torch.device):
    """(classes, probs fn, fingerprint): ResNet-50 with IMAGENET1K_V2's bundled transforms and categories."""
    from torchvision.models import ResNet50_Weights, resnet50

    bundle = ResNet50_Weights.IMAGENET1K_V2
    what = "torchvision resnet50 (IMAGENET1K_V2, 1000 classes)"
    state, file = read_state_dict(weights, what)
    with seeded_init():
        model = resnet50()
    fit_state_dict(model, state, file, what)
    model.eval().to(device)
    transform, classes = bundle.transforms(), tuple(bundle.meta["categories"])

    def probs(x: Tensor) -> Tensor:
        return model(transform(x.to(device, torch.float32))).softmax(-1)

    labels = hashlib.sha256("\n".join(classes).encode()).hexdigest()
    return classes, probs, fingerprint(
        "torchvision", file, profile="top1/resnet50-v2", model="resnet50 IMAGENET1K_V2",
        preprocessing=f"tensor {transform!r}".replace("\n", " "), dtype="float32", scale="softmax probabilities",
        labels=f"torchvision ImageNet-1k categories (1000, sha256 {labels})")


def clip_judge(weights: str | Path, arch: str, device: torch.device):
    """(encode_image, encode_text, fingerprint) of an open_clip model."""
    import open_clip
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    if arch not in open_clip.list_models():
        raise VismechError(f"unknown open_clip arch '{arch}'; the protocols' archs: {', '.join(CLIP_PROFILES)} "
                           f"(open_clip.list_models() lists the {len(open_clip.list_models())} known)")
    what = f"open_clip {arch}"
    state, file = read_state_dict(weights, what)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns that no pretrained weights were loaded: they are, just below
    try:
        with seeded_init():
            model = open_clip.create_model(arch, pretrained=None)
    finally:
        root.setLevel(level)
    fit_state_dict(model, state, file, what)
    model.eval().to(device)
    tokenizer = open_clip.get_tokenizer(arch)
    cfg = model.visual.preprocess_cfg
    size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
    interpolation = InterpolationMode(cfg["interpolation"])

    def encode_image(x: Tensor) -> Tensor:
        x = TF.center_crop(TF.resize(x.to(device, torch.float32), [size], interpolation, antialias=True), [size])
        return torch.nn.functional.normalize(model.encode_image(normalise(x, cfg["mean"], cfg["std"])), dim=-1)

    def encode_text(texts: list[str]) -> Tensor:
        with torch.no_grad():
            return torch.nn.functional.normalize(model.encode_text(tokenizer(list(texts)).to(device)), dim=-1)

    return batched(encode_image, 64), encode_text, fingerprint(
        "open_clip_torch", file, profile=CLIP_PROFILES.get(arch, "unprofiled"), model=arch,
        preprocessing=f"tensor resize short side to {size} ({cfg['interpolation']}, antialias), centre crop {size}, "
                      f"mean {tuple(cfg['mean'])} std {tuple(cfg['std'])}",
        text="open_clip tokenizer, truncated at 77 tokens", dtype="float32",
        scale="L2-normalised embeddings (cosine = dot product); the metric's units state the reported scale")


def inception(weights: str | Path, device: torch.device):
    """(features fn, fingerprint): Inception-v3 pool3, 2048-d."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    what = "torch-fidelity FeatureExtractorInceptionV3 (pt_inception-2015-12-05)"
    state, file = read_state_dict(weights, what)
    # torch-fidelity reads its weights with weights_only=False; it gets only a buffer of the tensors read above
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        model = FeatureExtractorInceptionV3("inception-v3-compat", [str(FID_DIM)],
                                            feature_extractor_weights_path=buffer)
    except RuntimeError as exc:
        raise VismechError(f"{what} weights file '{file}' does not fit {what} ({one_line(exc, 240)})") from None
    model.eval().to(device)
    return uint8_features(model, device), fingerprint(
        "torch-fidelity", file, model="InceptionV3 pool3 (2048-d)",
        preprocessing="[0,1] -> uint8 (round), TF1-style bilinear resize to 299, (x - 128) / 128", dtype="float32",
        scale="pool3 features")


def torch_fidelity_extractor(cls, name: str, feature: str, network: torch.nn.Module, device: torch.device):
    """torch-fidelity's extractor `cls` around a network built here, its forward (resize, normalisation) used as is.

    Its constructor is skipped: DINOv2's builds the network only through torch.hub (a download) and CLIP's reads a
    weights path with torch.jit.load, which runs the file's code; nothing else it does is needed."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    extractor = cls.__new__(cls)
    FeatureExtractorBase.__init__(extractor, name, [feature])
    extractor.feature_extractor_internal_dtype = torch.float32
    extractor.model = network
    return extractor.requires_grad_(False).eval().to(device)


def dinov2_pos_embed(pos: Tensor, grid: int, file: Path, what: str) -> Tensor:
    """(1, 1 + grid^2, d) position embeddings from a checkpoint's (1, 1 + M^2, d), as DINOv2 resamples them per
    call: bicubic, no antialiasing, scale factor (grid + offset) / M, in float32."""
    patches = pos.shape[1] - 1 if pos.dim() == 3 else -1
    side = math.isqrt(max(patches, 0))
    if pos.dim() != 3 or pos.shape[0] != 1 or side * side != patches or side == 0:
        raise VismechError(f"{what} weights file '{file}' does not fit {what} (pos_embed of shape "
                           f"{tuple(pos.shape)}, not (1, 1 + M^2, dim))")
    if side == grid:
        return pos
    dim, scale = pos.shape[-1], (grid + DINOV2_POS_OFFSET) / side
    square = pos[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    square = torch.nn.functional.interpolate(square, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    return torch.cat([pos[:, :1].float(), square.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], 1).to(pos.dtype)


def dinov2(weights: str | Path, device: torch.device, name: str = "dinov2-vit-l-14"):
    """(features fn, fingerprint): the CLS token of DINOv2's ViT from its own checkpoint (`*_pretrain.pth`)."""
    from importlib.metadata import version

    from timm.models.vision_transformer import VisionTransformer
    from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

    arch = ARCHS[name]
    what = f"DINOv2 {name} (timm VisionTransformer {arch})"
    state, file = read_state_dict(weights, what)
    state = dict(state)
    state.pop("mask_token", None)  # DINOv2's checkpoints keep iBOT's masked-patch token; inference never uses it
    size = FeatureExtractorDinoV2.INPUT_IMAGE_SIZE
    if "pos_embed" in state:
        state["pos_embed"] = dinov2_pos_embed(state["pos_embed"], size // arch["patch_size"], file, what)
    with seeded_init():
        # DINOv2's block: LayerNorm eps 1e-6, exact GELU, MLP ratio 4, qkv bias, layer scale (init value: loaded)
        network = VisionTransformer(img_size=size, num_classes=0, global_pool="token", mlp_ratio=4.0,
                                    init_values=1.0, **arch)
    fit_state_dict(network, state, file, what)
    extractor = torch_fidelity_extractor(FeatureExtractorDinoV2, name, "dinov2", network, device)
    grid = size // arch["patch_size"]
    return uint8_features(extractor, device), fingerprint(
        "torch-fidelity", file, feature_space=name, dim=arch["embed_dim"],
        model=f"DINOv2 {name}: FeatureExtractorDinoV2's forward around timm {version('timm')} VisionTransformer "
              f"{arch}, CLS token after the final LayerNorm",
        preprocessing=f"[0,1] -> uint8 (round), TF1-style bilinear resize to {size}, ImageNet mean/std; position "
                      f"embeddings resampled to {grid}x{grid} as DINOv2 does (bicubic, scale (grid + "
                      f"{DINOV2_POS_OFFSET}) / M, no antialias)",
        dtype="float32", scale="CLS token features")


def clip_visual(weights: str | Path, device: torch.device, name: str):
    """(torch-fidelity's FeatureExtractorCLIP, fingerprint items): OpenAI's visual tower from a state dict in its
    layout (the text tower's keys are dropped by torch-fidelity's build_model, which also rounds the weights to
    float16, as OpenAI released them, before running in float32)."""
    from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP, VisionTransformer, build_model

    arch = ARCHS[name]
    what = f"torch-fidelity FeatureExtractorCLIP {name} (OpenAI CLIP layout, {arch})"
    state, file = read_state_dict(weights, what)
    try:
        with seeded_init():
            network = build_model(dict(state), torch.float32)
    except (KeyError, RuntimeError, ValueError) as exc:  # a missing key, a strict load, torch-fidelity's vassert
        raise VismechError(f"{what} weights file '{file}' does not fit {what} ({one_line(exc, 240)})") from None
    visual = network.visual
    found = None if not isinstance(visual, VisionTransformer) else {
        "resolution": visual.input_resolution, "patch_size": visual.conv1.kernel_size[0],
        "width": visual.conv1.out_channels, "layers": len(visual.transformer.resblocks),
        "embed_dim": visual.output_dim}
    if found != arch:  # build_model reads the architecture off the file: a ViT-B/32 would load without complaint
        raise VismechError(f"{what} weights file '{file}' holds a CLIP of {found or 'a ResNet'}, not {name}")
    extractor = torch_fidelity_extractor(FeatureExtractorCLIP, name, "clip", network, device)
    extractor.resolution = arch["resolution"]
    return extractor, fingerprint(
        "torch-fidelity", file, feature_space=name, dim=arch["embed_dim"],
        model=f"OpenAI CLIP {name} visual tower (torch-fidelity build_model {arch})",
        dtype="float32 (weights rounded to float16 by build_model, as OpenAI released them)")


def uint8_features(extractor: torch.nn.Module, device: torch.device) -> Callable[[Tensor], Tensor]:
    def features(x: Tensor) -> Tensor:
        images = x.to(device) if x.dtype == torch.uint8 else to_uint8(x.to(device))
        return extractor(images)[0]

    return batched(features, 64)


def clip_features(weights: str | Path, device: torch.device, name: str = "clip-vit-l-14"):
    """(features fn, fingerprint): torch-fidelity's CLIP features, its FID space (not normalised)."""
    extractor, items = clip_visual(weights, device, name)
    size = extractor.resolution
    return uint8_features(extractor, device), {
        **items, "preprocessing": f"[0,1] -> uint8 (round), TF1-style bilinear resize to {size}x{size} (squash), "
                                  f"OpenAI CLIP mean/std", "scale": "image embedding after the visual projection"}


def cmmd_embedder(weights: str | Path, device: torch.device):
    """(embed fn, fingerprint): CMMD's embedding, CLIP ViT-L/14@336px's image embedding, L2-normalised, of images
    resized bicubic to 336 x 336 with no crop (the CMMD release resizes so, with jax.image.resize: Keys' cubic,
    a = -0.5, antialiased, which torch's bicubic with antialias computes)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    extractor, items = clip_visual(weights, device, CMMD_SPACE)
    size = extractor.resolution

    def embed(x: Tensor) -> Tensor:
        pixels = x.to(device) if x.dtype == torch.uint8 else to_uint8(x.to(device))
        x = TF.resize(pixels.float() / 255, [size, size], InterpolationMode.BICUBIC, antialias=True)
        out = extractor.model.visual(normalise(x, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD))
        return torch.nn.functional.normalize(out.float(), dim=-1)

    return batched(embed, 64), {
        **items, "profile": "cmmd/clip-vit-l-14-336px",
        "preprocessing": f"[0,1] -> uint8 (round) -> /255, bicubic resize to {size}x{size} (antialias, no crop), "
                         f"OpenAI CLIP mean/std", "scale": "L2-normalised image embedding"}


def feature_space(name: str, weights: str | Path, device: torch.device):
    """(features fn, fingerprint) of the FID feature space `name` (one of FEATURE_SPACES)."""
    loaders = {"inception": inception, "dinov2-vit-l-14": dinov2, "clip-vit-l-14": clip_features}
    if name not in loaders:
        raise VismechError(f"judges.fid_features must be one of {', '.join(FEATURE_SPACES)}, got {name!r}")
    return loaders[name](weights, device)


def fairface(weights: str | Path, device: torch.device, face_crop: str | None):
    """({attribute: (groups, probs fn)}, fingerprint): FairFace ResNet-34 on (optionally face-cropped) images."""
    from torchvision.models import resnet34
    from torchvision.transforms import functional as TF

    if face_crop not in FACE_CROPS:
        raise VismechError(f"face_crop must be one of {', '.join(map(str, FACE_CROPS))}, got {face_crop!r}")
    what = "FairFace resnet34 (18 logits: race 7, gender 2, age 9)"
    state, file = read_state_dict(weights, what)
    with seeded_init():
        model = resnet34(num_classes=18)  # FairFace replaces torchvision's fc by Linear(512, 18)
    fit_state_dict(model, state, file, what)
    model.eval().to(device)
    crop = FaceCrop() if face_crop == "haar" else None

    def probs_of(name: str) -> Callable[[Tensor], Tensor]:
        def probs(x: Tensor) -> Tensor:
            """Group probabilities per image; a zero row where the crop found no face (no NaN)."""
            faces, found = crop(x) if crop else (x, torch.ones(len(x), dtype=torch.bool))
            faces = TF.resize(faces.to(device, torch.float32), [FAIRFACE_SIZE, FAIRFACE_SIZE], antialias=True)
            with torch.no_grad():
                out = batched(model, 64)(normalise(faces, IMAGENET_MEAN, IMAGENET_STD))
            return group_probs(out, name) * found.to(out.device)[:, None]

        return probs

    attributes = {name: (tuple(groups), probs_of(name)) for name, (_, _, groups) in ATTRIBUTES.items()}
    groups = {name: {g: list(bins) for g, bins in spec[2].items()} for name, spec in ATTRIBUTES.items()}
    crop_note = ("OpenCV Haar cascade " + (crop.describe() if crop else "") +
                 "; deviation: the protocol's dlib CNN detector + 5-landmark alignment") if crop else \
        "none (whole image)"
    return attributes, fingerprint(
        "torchvision", file, profile="fd/fairface", model="FairFace resnet34 (res34_fair_align_multi_7)",
        face_crop=crop_note, no_face_policy="drop: zero row, excluded from the shares, counted by no_face_rate",
        preprocessing=f"tensor resize to {FAIRFACE_SIZE}x{FAIRFACE_SIZE} (bilinear, antialias), ImageNet mean/std",
        dtype="float32", scale="softmax per attribute over FairFace bins, summed into groups, renormalised",
        labels={"logits": {"race": list(FAIRFACE_RACE), "gender": list(FAIRFACE_GENDER), "age": list(FAIRFACE_AGE)},
                "groups": groups})


def group_probs(logits: Tensor, attribute: str) -> Tensor:
    """(N, groups): softmax over the attribute's FairFace bins, bins summed into groups, renormalised."""
    start, bins, groups = ATTRIBUTES[attribute]
    p = logits[:, start:start + len(bins)].float().softmax(-1)
    merge = torch.zeros(len(bins), len(groups), dtype=p.dtype, device=p.device)
    for g, members in enumerate(groups.values()):
        for b in members:
            merge[bins.index(b), g] = 1.0
    grouped = p @ merge
    return grouped / grouped.sum(-1, keepdim=True)


def no_face(probs: Tensor) -> Tensor:
    """Per image 1.0 where the face crop found no face (its attribute row is all zeros), else 0.0."""
    return (probs.sum(-1) < 0.5).double()


class FaceCrop:
    """The largest frontal face of each image by OpenCV's Haar cascade, squared and padded, or no face."""

    def __init__(self):
        try:
            import cv2
        except ImportError:
            raise VismechError("face_crop 'haar' needs OpenCV: pip install opencv-python-headless") from None
        self.cv2 = cv2
        self.file = Path(cv2.data.haarcascades) / FACE_CASCADE
        self.cascade = cv2.CascadeClassifier(str(self.file))
        if self.cascade.empty():
            raise VismechError(f"OpenCV {cv2.__version__} could not read its cascade '{self.file}'; "
                               f"install opencv-python-headless<5 (5.0 ships no Haar cascades)")

    def describe(self) -> str:
        return (f"{FACE_CASCADE} (opencv {self.cv2.__version__}, sha256 {file_sha256(self.file)}), {HAAR}, "
                f"min face {MIN_FACE:g} of the short side, largest face, square, padding {FACE_PADDING} per side")

    def detect(self, gray) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the largest face in a uint8 grayscale array, or None."""
        side = max(1, int(min(gray.shape) * MIN_FACE))
        faces = self.cascade.detectMultiScale(gray, minSize=(side, side), **HAAR)
        return None if len(faces) == 0 else tuple(int(v) for v in max(faces, key=lambda f: f[2] * f[3]))

    def box(self, face: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int]:
        """(top, left, side) of the padded square around the face, moved inside the image."""
        x, y, w, h = face
        side = min(int(round(max(w, h) * (1 + 2 * FACE_PADDING))), height, width)
        top = min(max(int(round(y + h / 2 - side / 2)), 0), height - side)
        left = min(max(int(round(x + w / 2 - side / 2)), 0), width - side)
        return top, left, side

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(crops (N, 3, FAIRFACE_SIZE, FAIRFACE_SIZE), found (N,) bool); an image without a face keeps itself."""
        from torchvision.transforms import functional as TF

        images = images.float().cpu()
        pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
        crops, found = [], []
        for image, rgb in zip(images, pixels):
            face = self.detect(self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2GRAY))
            if face is not None:
                top, left, side = self.box(face, *image.shape[1:])
                image = image[:, top:top + side, left:left + side]
            crops.append(TF.resize(image, [FAIRFACE_SIZE, FAIRFACE_SIZE], antialias=True))
            found.append(face is not None)
        return torch.stack(crops), torch.tensor(found, dtype=torch.bool)


# --- the FID reference set ------------------------------------------------------------------------------------

def image_files(folder: Path, limit: int | None) -> list[Path]:
    if not folder.is_dir():
        raise VismechError(f"FID reference folder '{folder}' does not exist; expected a folder of image files "
                           f"({', '.join(IMAGE_SUFFIXES)})")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VismechError(f"FID reference folder '{folder}' holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None and not 1 <= limit:
        raise VismechError(f"judges.reference_limit must be >= 1 or null, got {limit}")
    return files[:limit]


def folder_digest(folder: Path, files: list[Path]) -> str:
    """sha256 over every file's relative path and bytes: the reference-set checksum of the FID profile."""
    h = hashlib.sha256()
    for file in files:
        h.update(f"\n{file.relative_to(folder).as_posix()}|".encode())
        h.update(bytes.fromhex(file_sha256(file)))
    return h.hexdigest()


def reference_features(folder: str | Path, features: Callable[[Tensor], Tensor], feature_fp: dict[str, Any],
                       cache_dir: str | Path | None, limit: int | None = None,
                       batch_size: int = 50) -> tuple[Tensor, dict[str, Any]]:
    """(features (M, d), the reference's fingerprint items); read from the cache when computed before."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file, save

    from ...io import atomic_write_bytes

    folder = Path(folder).expanduser()
    files = image_files(folder, limit)
    items = {"reference": str(folder), "reference_sha256": folder_digest(folder, files), "reference_size": len(files)}
    key = hashlib.sha256(json.dumps({**items, "features": feature_fp}, sort_keys=True, default=str).encode())
    cache = None if cache_dir is None else Path(cache_dir) / "fid_reference" / f"{key.hexdigest()[:32]}.safetensors"
    if cache is not None and cache.is_file():
        return load_file(str(cache))["features"], items
    rows, pending = [], []

    def flush():
        if pending:
            rows.append(features(torch.stack(pending)).float().cpu())
            pending.clear()

    for file in files:
        try:
            with Image.open(file) as image:
                pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
        except OSError as exc:
            raise VismechError(f"FID reference image '{file}' cannot be read ({one_line(exc)})") from None
        if pending and (pixels.shape != pending[0].shape or len(pending) == batch_size):
            flush()  # a batch holds images of one size: each is resized to 299 on its own terms
        pending.append(pixels)
    flush()
    result = torch.cat(rows)
    if cache is not None:
        atomic_write_bytes(cache, save({"features": result.contiguous()}))
    return result, items


# --- assembly -----------------------------------------------------------------------------------------------

def _missing(role: str, option: str) -> Callable:
    def fail(*_args, **_kwargs):
        raise VismechError(f"no {role} judge is configured; set task.judges.{option}=/path/to/its/weights")

    return fail


def _spec_key(spec: dict[str, Any]) -> str:
    """The spec plus each named file's size and mtime: a rewritten weights file is loaded again."""
    stats = {}
    for option in ("classifier", "clip", "fid", "cmmd", "attribute"):
        path = Path(str(spec.get(option))).expanduser()
        if spec.get(option) and path.is_file():
            stats[option] = (path.stat().st_size, path.stat().st_mtime_ns)
    return json.dumps({"spec": spec, "files": stats}, sort_keys=True, default=str)


def paper_judges(classifier: str | None = None, clip: str | None = None, clip_arch: str = "ViT-B-32-quickgelu",
                 fid: str | None = None, fid_features: str = "inception", cmmd: str | None = None,
                 reference: str | None = None, reference_limit: int | None = None, attribute: str | None = None,
                 face_crop: str | None = None, cache_dir: str | None = ".vismech-cache", device: str | None = None,
                 batch_size: int = 64, **unknown) -> Judges:
    """The paper judges a card names, each from a weights file (see the module docstring).

    classifier: ResNet-50 IMAGENET1K_V2 weights (concept). clip / clip_arch: open_clip weights and arch.
    fid: the weights of the feature space `fid_features` names (one of FEATURE_SPACES; "inception":
    pt_inception-2015-12-05-6726825d.pth); cmmd: CLIP ViT-L/14@336px weights in OpenAI's layout; reference: a
    folder of reference images (its first `reference_limit` in sorted order) for both, features cached under
    `cache_dir`/fid_reference. attribute: FairFace ResNet-34 weights (bias); face_crop: "haar" or null.
    device: where the judges run (default: CUDA when available).
    """
    if unknown:
        raise VismechError(f"unknown paper judges option(s) {sorted(unknown)}; known: {', '.join(SPEC_KEYS)}")
    if fid_features not in FEATURE_SPACES:
        raise VismechError(f"judges.fid_features must be one of {', '.join(FEATURE_SPACES)}, got {fid_features!r}")
    spec = dict(classifier=classifier, clip=clip, clip_arch=clip_arch, fid=fid, fid_features=fid_features, cmmd=cmmd,
                reference=reference, reference_limit=reference_limit, attribute=attribute, face_crop=face_crop,
                cache_dir=cache_dir, device=device, batch_size=batch_size)
    if (fid is None) != (reference is None) and not (fid is None and cmmd is not None):
        space = "Inception" if fid_features == "inception" else fid_features
        raise VismechError(f"FID needs both judges.fid ({space} weights) and judges.reference (an image folder); "
                           f"got fid={fid!r}, reference={reference!r}")
    if cmmd is not None and reference is None:
        raise VismechError(f"CMMD needs both judges.cmmd (CLIP ViT-L/14@336px weights) and judges.reference (an "
                           f"image folder); got cmmd={cmmd!r}, reference=None")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise VismechError(f"judges.batch_size must be a positive integer, got {batch_size!r}")
    return _build(_spec_key(spec), **spec)


@lru_cache(maxsize=1)  # a sweep reloads the same judges for every run; one set at a time holds the device's memory
def _build(_key: str, classifier, clip, clip_arch, fid, fid_features, cmmd, reference, reference_limit, attribute,
           face_crop, cache_dir, device, batch_size) -> Judges:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fingerprints: dict[str, dict[str, Any]] = {}
    classes, classify = (), _missing("classifier", "classifier")
    if classifier is not None:
        classes, probs, fingerprints["classifier"] = imagenet_classifier(classifier, device)
        classify = batched(probs, batch_size)
    encode_image, encode_text = _missing("CLIP", "clip"), _missing("CLIP", "clip")
    if clip is not None:
        encode_image, encode_text, fingerprints["clip"] = clip_judge(clip, clip_arch, device)
    features, ref = _missing("FID feature", "fid"), torch.zeros(0, FID_DIM)
    if fid is not None:
        features, feature_fp = feature_space(fid_features, fid, device)
        ref, ref_items = reference_features(reference, features, feature_fp, cache_dir, reference_limit, batch_size)
        fingerprints["fid"] = {**feature_fp, **ref_items}
    cmmd_features, cmmd_reference = None, None
    if cmmd is not None:
        cmmd_features, embed_fp = cmmd_embedder(cmmd, device)
        cmmd_reference, ref_items = reference_features(reference, cmmd_features, embed_fp, cache_dir, reference_limit,
                                                       batch_size)
        fingerprints["cmmd"] = {**embed_fp, **ref_items}
    attributes = {}
    if attribute is not None:
        attributes, fingerprints["attribute"] = fairface(attribute, device, face_crop)
    elif face_crop is not None:
        raise VismechError(f"face_crop={face_crop!r} without an attribute judge; set judges.attribute=/path/to/"
                           f"res34_fair_align_multi_7_20190809.pt")
    return Judges(classes=classes, classify=classify, features=features, reference=ref, encode_image=encode_image,
                  encode_text=encode_text, fingerprints=fingerprints, attributes=attributes,
                  cmmd_features=cmmd_features, cmmd_reference=cmmd_reference)

"""The paper track's FID feature spaces (DINOv2 ViT-L/14, CLIP ViT-L/14, beside Inception) and CMMD: random
extractors of the same classes (torch-fidelity's CLIP tower, timm's VisionTransformer in DINOv2's layout; tiny
configs in place of the published ones) saved to files, loaded through `paper_judges` and checked against the
networks run here by hand; the CMMD metric against a direct formula and for unbiasedness."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from paper_models import (TINY_CLIP_VISUAL, TINY_CLIP_VISUAL_336, TINY_DINOV2, random_clip_state, random_dinov2_state,
                          random_inception_state, save_state, write_reference)
from vismech.errors import VismechError
from vismech.metrics.judges import paper

DINOV2, CLIP, CMMD_CLIP = "dinov2-vit-l-14", "clip-vit-l-14", "clip-vit-l-14-336px"
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-spaces")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(21)
        states = {DINOV2: random_dinov2_state(TINY_DINOV2), CLIP: random_clip_state(TINY_CLIP_VISUAL),
                  CMMD_CLIP: random_clip_state(TINY_CLIP_VISUAL_336)}
    out = {"states": states, "reference": str(write_reference(root / "reference")), "root": root}
    for name, state in states.items():
        for suffix in (".safetensors", ".pth"):
            out[name, suffix] = str(save_state(state, root / f"{name}{suffix}"))
    return out


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    """The tiny architectures in place of the published ones; judges built afresh (they are cached by spec)."""
    monkeypatch.setitem(paper.ARCHS, DINOV2, TINY_DINOV2)
    monkeypatch.setitem(paper.ARCHS, CLIP, TINY_CLIP_VISUAL)
    monkeypatch.setitem(paper.ARCHS, CMMD_CLIP, TINY_CLIP_VISUAL_336)
    paper._build.cache_clear()
    yield
    paper._build.cache_clear()


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(5))


def judges(files, tmp_path, **options):
    return paper.paper_judges(reference=files["reference"], cache_dir=str(tmp_path / "cache"), device="cpu",
                              **options)


def uint8_float(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).float()


def dinov2_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """timm's ViT at 224 px with the checkpoint's 37 x 37 position embeddings resampled as DINOv2 does (bicubic,
    scale factor (16 + 0.1) / 37, no antialias), fed torch-fidelity's TF1 resize and ImageNet normalisation."""
    from timm.models.vision_transformer import VisionTransformer
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from torchvision.transforms.functional import normalize

    pos = state["pos_embed"]
    grid = pos[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic")
    assert grid.shape[-2:] == (16, 16)
    weights = {k: v for k, v in state.items() if k != "mask_token"}
    weights["pos_embed"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 256, -1)], 1)
    net = VisionTransformer(img_size=224, num_classes=0, init_values=1.0, **TINY_DINOV2)
    net.load_state_dict(weights)
    pixels = interpolate_bilinear_2d_like_tensorflow1x(uint8_float(x), size=(224, 224), align_corners=False)
    pixels = normalize(pixels, [255 * m for m in (0.485, 0.456, 0.406)], [255 * s for s in (0.229, 0.224, 0.225)])
    with torch.no_grad():
        return net.eval()(pixels)


def clip_tower(state: dict[str, torch.Tensor]):
    from torch_fidelity.feature_extractor_clip import build_model

    return build_model(dict(state), torch.float32).visual


def clip_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torch-fidelity's CLIP tower from the same state, fed its TF1 resize and CLIP normalisation."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from torchvision.transforms.functional import normalize

    size = TINY_CLIP_VISUAL["resolution"]
    pixels = interpolate_bilinear_2d_like_tensorflow1x(uint8_float(x), size=(size, size), align_corners=False)
    with torch.no_grad():
        return clip_tower(state)(normalize(pixels, [255 * m for m in CLIP_MEAN], [255 * s for s in CLIP_STD]))


def reference_pixels(files) -> torch.Tensor:
    from PIL import Image

    from vismech.metrics.judges.paper import image_files

    folder = Path(files["reference"])
    return torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy()).permute(2, 0, 1)
                        for f in image_files(folder, None)])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_dinov2_features_are_the_network_run_by_hand(files, tmp_path, suffix):
    """Same float32 operations in the same order on the same CPU: bit-identical."""
    j = judges(files, tmp_path, fid=files[DINOV2, suffix], fid_features=DINOV2)
    x = images()
    features = j.features(x)
    assert features.shape == (3, TINY_DINOV2["embed_dim"]) and j.reference.shape == (6, TINY_DINOV2["embed_dim"])
    assert torch.equal(features, dinov2_by_hand(files["states"][DINOV2], x))
    assert torch.equal(j.reference, dinov2_by_hand(files["states"][DINOV2], reference_pixels(files) / 255.0))
    fp = j.fingerprints["fid"]
    assert (fp["feature_space"], fp["dim"], fp["reference_size"]) == (DINOV2, TINY_DINOV2["embed_dim"], 6)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_clip_features_are_torch_fidelitys_tower_run_by_hand(files, tmp_path, suffix):
    j = judges(files, tmp_path, fid=files[CLIP, suffix], fid_features=CLIP)
    x = images()
    features = j.features(x)
    assert features.shape == (3, TINY_CLIP_VISUAL["embed_dim"])
    assert torch.equal(features, clip_by_hand(files["states"][CLIP], x))
    assert j.fingerprints["fid"]["feature_space"] == CLIP and j.fingerprints["fid"]["dim"] == 16


def test_each_feature_space_has_its_own_fid_fingerprint(files, tmp_path):
    from vismech.metrics import fingerprint_of
    from vismech.registry import METRICS

    inception = save_state(random_inception_state(), tmp_path / "inception.pth")
    fps = {space: judges(files, tmp_path, fid=weights, fid_features=space).fingerprints["fid"]
           for space, weights in (("inception", str(inception)), (DINOV2, files[DINOV2, ".pth"]),
                                  (CLIP, files[CLIP, ".pth"]))}
    assert len({fingerprint_of(fp) for fp in fps.values()}) == 3
    assert len({METRICS.get("fid")(judge=fp).fingerprint() for fp in fps.values()}) == 3
    assert "feature_space" not in fps["inception"]  # Inception's fingerprint is as before the feature spaces
    assert fps[DINOV2]["preprocessing"] != fps[CLIP]["preprocessing"]


def test_reference_features_are_cached_per_folder_and_extractor(files, tmp_path):
    cache = tmp_path / "cache" / "fid_reference"
    dino = judges(files, tmp_path, fid=files[DINOV2, ".pth"], fid_features=DINOV2)
    assert len(list(cache.iterdir())) == 1
    judges(files, tmp_path, fid=files[CLIP, ".pth"], fid_features=CLIP)
    assert len(list(cache.iterdir())) == 2  # a second extractor: its own entry
    calls = []

    def counted(x):
        calls.append(len(x))
        return dino.features(x)

    fp = dino.fingerprints["fid"]
    fp = {k: v for k, v in fp.items() if not k.startswith("reference")}
    again, items = paper.reference_features(files["reference"], counted, fp, tmp_path / "cache")
    assert calls == [] and torch.equal(again, dino.reference) and items["reference_size"] == 6
    other, _ = paper.reference_features(files["reference"], counted, {**fp, "weights_sha256": "another file"},
                                        tmp_path / "cache")
    assert sum(calls) == 6 and torch.equal(other, dino.reference) and len(list(cache.iterdir())) == 3


def test_a_bad_feature_space_is_one_line_naming_the_allowed_ones(files, tmp_path):
    with pytest.raises(VismechError, match=r"judges.fid_features must be one of inception, dinov2-vit-l-14, "
                                           r"clip-vit-l-14, got 'dinov2'$") as caught:
        judges(files, tmp_path, fid=files[DINOV2, ".pth"], fid_features="dinov2")
    assert "\n" not in str(caught.value)


def altered(state, change):
    state = dict(state)
    if change == "missing":
        state.pop(next(k for k in state if k.endswith("norm1.weight") or k.endswith("ln_1.weight")))
    else:
        state["visual.extra" if "visual.proj" in state else "blocks.0.extra"] = torch.zeros(3)
    return state


@pytest.mark.parametrize("space", [DINOV2, CLIP])
@pytest.mark.parametrize("change", ["missing", "extra"])
def test_a_file_with_missing_or_extra_keys_is_refused_in_one_line(files, tmp_path, space, change):
    bad = save_state(altered(files["states"][space], change), tmp_path / f"bad{space}.safetensors")
    with pytest.raises(VismechError, match=rf"weights file '.*bad{space}.safetensors' does not fit") as caught:
        judges(files, tmp_path, fid=str(bad), fid_features=space)
    assert "\n" not in str(caught.value)


def test_a_clip_of_another_architecture_is_refused(files, tmp_path):
    """torch-fidelity reads the architecture off the file: the 336 px tower would load as the 224 px one."""
    with pytest.raises(VismechError, match=r"holds a CLIP of \{'resolution': 42, .*\}, not clip-vit-l-14$"):
        judges(files, tmp_path, fid=files[CMMD_CLIP, ".pth"], fid_features=CLIP)


def touch(path: str) -> None:
    Path(path).touch()


class Trap:
    """Unpickling it would create the marker file: a weights-only load must refuse it without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (touch, (str(self.marker),))


@pytest.mark.parametrize("option", [{"fid_features": DINOV2}, {"fid_features": CLIP}, "cmmd"])
def test_a_pickle_needing_code_is_refused_unrun(files, tmp_path, option):
    marker = tmp_path / "ran"
    file = tmp_path / "trap.pth"
    torch.save({"pos_embed": torch.zeros(1), "trap": Trap(marker)}, file)
    with open(file, "rb") as fh:  # the file holds a call: an unrestricted unpickler would make the marker
        assert b"touch" in fh.read()
    options = {"cmmd": str(file)} if option == "cmmd" else {"fid": str(file), **option}
    with pytest.raises(VismechError, match=r"weights file '.*trap.pth' is not loadable") as caught:
        judges(files, tmp_path, **options)
    assert not marker.exists() and "\n" not in str(caught.value)


def test_cmmd_judge_embeds_as_the_cmmd_release_resizes(files, tmp_path):
    """uint8 -> [0, 1], bicubic antialiased resize to the tower's size without a crop, CLIP normalisation,
    L2-normalised; the reference folder embedded the same way and cached beside FID's."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import normalize, resize

    j = judges(files, tmp_path, cmmd=files[CMMD_CLIP, ".safetensors"])
    x = images()
    size = TINY_CLIP_VISUAL_336["resolution"]

    def by_hand(pixels):
        resized = resize(pixels / 255.0, [size, size], InterpolationMode.BICUBIC, antialias=True)
        with torch.no_grad():
            return torch.nn.functional.normalize(clip_tower(files["states"][CMMD_CLIP])(
                normalize(resized, CLIP_MEAN, CLIP_STD)), dim=-1)

    embedded = j.cmmd_features(x)
    assert embedded.shape == (3, 16) and torch.allclose(embedded.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.equal(embedded, by_hand(uint8_float(x)))
    assert torch.equal(j.cmmd_reference, by_hand(reference_pixels(files).float()))
    fp = j.fingerprints["cmmd"]
    assert fp["feature_space"] == CMMD_CLIP and fp["reference_size"] == 6 and "fid" not in j.fingerprints
    assert len(list((tmp_path / "cache" / "fid_reference").iterdir())) == 1


def test_cmmd_needs_a_reference_folder(files, tmp_path):
    with pytest.raises(VismechError, match=r"CMMD needs both judges.cmmd .* and judges.reference"):
        paper.paper_judges(cmmd=files[CMMD_CLIP, ".pth"], cache_dir=None, device="cpu")


# --- the cmmd metric -----------------------------------------------------------------------------------------

def cmmd_rows(x, y):
    from vismech.metrics.distribution import CMMD

    m = CMMD(reference=torch.as_tensor(y))
    m.update(torch.arange(len(x)), torch.as_tensor(x))
    return m, m.compute()[1].numpy()


def test_cmmd_on_three_points_by_hand():
    """X = {(0, 0), (20, 0)}, Y = {(0, 0), (0, 20)}: |.|^2 = 400 (k = e^-2) within each set; across them 0, 400,
    400, 800 (k = 1, e^-2, e^-2, e^-4)."""
    m, rows = cmmd_rows([[0.0, 0.0], [20.0, 0.0]], [[0.0, 0.0], [0.0, 20.0]])
    e = math.exp
    assert m.statistic(rows) == pytest.approx(1000 * (2 * e(-2) - 2 * (1 + 2 * e(-2) + e(-4)) / 4), abs=1e-9)


def unbiased_mmd_direct(x, y, sigma=10.0):
    """The unbiased estimator written out pair by pair."""
    k = lambda a, b: math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma ** 2))  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return 1000 * (xx + yy - 2 * xy)


def test_cmmd_is_the_direct_formula_and_its_jackknife_returns_it():
    from vismech.stats import pseudo_values

    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 6, (7, 5)), rng.normal(1, 6, (9, 5))
    m, rows = cmmd_rows(x, y)
    assert m.statistic(rows) == pytest.approx(unbiased_mmd_direct(x, y), rel=1e-12)
    # a U-statistic: the leave-one-out pseudo-values average back to it (float tolerance)
    assert pseudo_values(rows, m.statistic, max_groups=7).mean() == pytest.approx(m.statistic(rows), rel=1e-9)


def test_cmmd_is_unbiased_where_the_released_average_is_not():
    """Two samples of one distribution, 400 draws: the mean CMMD is within 4 standard errors of 0; the release's
    average over the full kernel matrices (diagonal included) on the same draws is 4 standard errors above 0."""
    from vismech.metrics.distribution import gaussian_kernel

    rng = np.random.default_rng(7)
    unbiased, released = [], []
    for _ in range(400):
        x, y = rng.normal(0, 8, (6, 3)), rng.normal(0, 8, (8, 3))
        m, rows = cmmd_rows(x, y)
        unbiased.append(m.statistic(rows))
        released.append(1000 * (gaussian_kernel(x, x).mean() + gaussian_kernel(y, y).mean()
                                - 2 * gaussian_kernel(x, y).mean()))
    for values, unbiased_draws in ((np.array(unbiased), True), (np.array(released), False)):
        se = values.std(ddof=1) / math.sqrt(len(values))
        assert bool(abs(values.mean()) < 4 * se) is unbiased_draws


def test_an_open_clip_file_in_openais_layout_loads_as_the_clip_feature_space(files, tmp_path):
    """The documented file (open_clip's `open_clip_model.safetensors` of OpenAI's weights) holds OpenAI's key names:
    a tiny open_clip CLIP of the same shape, weights in float16 as OpenAI released them, loads through
    torch-fidelity's tower and gives open_clip's own image embedding (float tolerance: two implementations)."""
    import json

    import open_clip

    name = "vismech-tiny-clip-openai-layout"
    if name not in open_clip.list_models():
        config = {"embed_dim": 16, "quick_gelu": True,
                  "vision_cfg": {"image_size": 28, "layers": 1, "width": 64, "head_width": 64, "patch_size": 14},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}}
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(tmp_path / f"{name}.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(22)
        model = open_clip.create_model(name, pretrained=None).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    file = save_state(model.state_dict(), tmp_path / "open_clip_model.safetensors")
    j = judges(files, tmp_path, fid=str(file), fid_features=CLIP)
    x = images()
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from torchvision.transforms.functional import normalize

    pixels = interpolate_bilinear_2d_like_tensorflow1x(uint8_float(x), size=(28, 28), align_corners=False)
    with torch.no_grad():
        expected = model.encode_image(normalize(pixels / 255.0, CLIP_MEAN, CLIP_STD))
    assert torch.allclose(j.features(x), expected, atol=1e-6, rtol=1e-5)  # float32: a few ulps of values ~1

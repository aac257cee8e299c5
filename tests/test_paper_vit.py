"""Paper-track ViT loaders and the ImageNet-style folder, on tiny random ViTs of the paper's timm classes saved to a
temporary directory and loaded back through the real `timm.create_model` path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_model_data_config

from vismech.datasets.image_folder import ImageFolderItems
from vismech.errors import VismechError
from vismech.models import timm_vit
from vismech.subject import weights_digest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2, img_size=32)
# each paper config's arch, and what its tiny stand-in changes besides TINY (patch sizes scaled to the 32 px input)
ARCHS = {
    "vit_b16": ("vit_base_patch16_224.orig_in21k_ft_in1k", dict(patch_size=8)),
    "vit_b32": ("vit_base_patch32_384.augreg_in21k_ft_in1k", dict(patch_size=16)),
    "vit_l32": ("vit_large_patch32_384.orig_in21k_ft_in1k", dict(patch_size=16)),
    "mae_b16": ("vit_base_patch16_224", dict(patch_size=8, num_classes=10)),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_model(arch: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(123)  # not the loader's init seed (0): a weight left unloaded would show
    return timm.create_model(arch, pretrained=False, **TINY, **kwargs).eval()


def save_safetensors(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("key", list(ARCHS))
def test_paper_configs_load_tiny_stand_ins_bit_for_bit(key, tmp_path):
    arch, extra = ARCHS[key]
    params = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{key}.yaml").params)  # ??? stays a plain string
    assert OmegaConf.load(CONFIGS / f"{key}.yaml").name == "timm_vit" and params["arch"] == arch
    original = tiny_model(arch, global_pool=params.get("global_pool", "token"), **extra)
    file = save_safetensors(original, tmp_path / "w.safetensors")
    # the config's own arguments, with only the sizes and the weights file replaced
    params.update(weights=str(file), img_size=32, model_args=dict(TINY, patch_size=extra["patch_size"]))
    params.update({k: v for k, v in extra.items() if k == "num_classes"})
    subject = timm_vit.load(**params)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(subject.model(x), original(x))
    assert subject.track == "paper" and subject.id == key and str(file) in subject.source
    assert subject.input_shape == (3, 32, 32) and subject.num_classes == original.num_classes
    assert [s.name for s in subject.sites_of("ffn.") if s.kind == "activation"] == ["ffn.0", "ffn.1"]
    assert all(subject.site(f"ffn.{i}").width == 64 for i in range(2))  # embed 32 x mlp_ratio 2
    assert subject.weights_digest == weights_digest(original)
    if key == "mae_b16":  # MAE's own eval preprocessing, not the untagged arch's Google 0.5/0.5
        assert subject.preprocess.mean == IMAGENET_MEAN and subject.model.pretrained_cfg["crop_pct"] == 0.875


def test_registered_and_configs_name_real_timm_tags():
    from vismech.registry import MODELS

    assert MODELS.get("timm_vit") is timm_vit.load
    for arch, _ in ARCHS.values():
        timm_vit._check_arch(arch)
    mae = OmegaConf.load(CONFIGS / "mae_b16.yaml").params
    assert OmegaConf.is_missing(mae, "weights") and mae.global_pool == "avg"
    with pytest.raises(VismechError, match="disagree"):
        timm_vit.load("vit_base_patch16_224", pretrained=False, img_size=224, model_args=TINY)


def test_preprocessing_follows_each_models_own_data_config(tmp_path):
    google = timm_vit.load("vit_base_patch16_224.orig_in21k_ft_in1k", pretrained=False, model_args=TINY)
    cfg = timm.models.get_pretrained_cfg("vit_base_patch16_224.orig_in21k_ft_in1k")
    assert google.preprocess.mean == cfg.mean == (0.5, 0.5, 0.5) and google.preprocess.std == cfg.std
    mae_cfg = timm.models.get_pretrained_cfg("vit_base_patch16_224.mae")
    mae = timm_vit.load("vit_base_patch16_224.mae", pretrained=False, model_args=TINY, num_classes=10)
    assert mae.preprocess.mean == mae_cfg.mean == IMAGENET_MEAN and mae.preprocess.std == IMAGENET_STD
    # B/32 and L/32 run at 224: the data config follows img_size, not the 384 of the tag
    l32 = timm_vit.load("vit_large_patch32_384.orig_in21k_ft_in1k", pretrained=False, img_size=64,
                        model_args=dict(TINY, img_size=64))
    assert l32.input_shape == (3, 64, 64)
    image = Image.new("RGB", (90, 70), (255, 0, 0))
    assert l32.input_transform(image).shape == (3, 64, 64)
    x = google.input_transform(image)
    assert x.shape == (3, 32, 32) and x.min() >= 0 and x.max() <= 1  # no normalisation in the input transform
    ref = timm_vit.load("vit_base_patch16_224.orig_in21k_ft_in1k", pretrained=False, model_args=TINY,
                        preprocessing="reference")
    assert ref.preprocess.mean == IMAGENET_MEAN and ref.input_transform(image).shape == (3, 32, 32)
    over = timm_vit.load("vit_base_patch16_224", pretrained=False, model_args=TINY,
                         data_config=dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), crop_pct=0.875))
    assert over.preprocess.mean == IMAGENET_MEAN and over.model.pretrained_cfg["crop_pct"] == 0.875
    with pytest.raises(VismechError, match="preprocessing must be one of"):
        timm_vit.load("vit_base_patch16_224", pretrained=False, model_args=TINY, preprocessing="imagenet")


def test_mae_checkpoint_layout_loads(tmp_path):
    arch, extra = ARCHS["mae_b16"]
    original = tiny_model(arch, global_pool="avg", **extra)
    assert "fc_norm.weight" in original.state_dict()
    file = tmp_path / "mae_finetuned_vit_base.pth"
    torch.save({"model": original.state_dict()}, file)  # the MAE release's layout
    subject = timm_vit.load(arch, weights=str(file), global_pool="avg", num_classes=10,
                            model_args=dict(TINY, patch_size=8))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(subject.model(x), original(x))
    # strict: another head size, or a class-token head (no fc_norm), does not take the MAE file
    with pytest.raises(VismechError, match="does not fit"):
        timm_vit.load(arch, weights=str(file), global_pool="avg", num_classes=5, model_args=dict(TINY, patch_size=8))
    with pytest.raises(VismechError, match="does not fit"):
        timm_vit.load(arch, weights=str(file), num_classes=10, model_args=dict(TINY, patch_size=8))


def save_google_npz(model: torch.nn.Module, path: Path) -> Path:
    """The model in the layout of Google's original ViT .npz releases (the inverse of timm's JAX importer)."""
    heads, dim = model.blocks[0].attn.num_heads, model.embed_dim
    embed = model.patch_embed.proj
    w = {"embedding/kernel": embed.weight.permute(2, 3, 1, 0), "embedding/bias": embed.bias,
         "cls": model.cls_token, "Transformer/posembed_input/pos_embedding": model.pos_embed,
         "Transformer/encoder_norm/scale": model.norm.weight, "Transformer/encoder_norm/bias": model.norm.bias,
         "head/kernel": model.head.weight.T, "head/bias": model.head.bias}
    for i, block in enumerate(model.blocks):
        p, mha = f"Transformer/encoderblock_{i}/", f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/"
        qkv = zip(("query", "key", "value"), block.attn.qkv.weight.chunk(3), block.attn.qkv.bias.chunk(3))
        for name, weight, bias in qkv:
            w[f"{mha}{name}/kernel"], w[f"{mha}{name}/bias"] = weight.T.reshape(dim, heads, -1), bias.reshape(heads, -1)
        w[f"{mha}out/kernel"] = block.attn.proj.weight.reshape(dim, heads, -1).permute(1, 2, 0)
        w[f"{mha}out/bias"] = block.attn.proj.bias
        for ln, norm in (("LayerNorm_0", block.norm1), ("LayerNorm_2", block.norm2)):
            w[f"{p}{ln}/scale"], w[f"{p}{ln}/bias"] = norm.weight, norm.bias
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"], w[f"{p}MlpBlock_3/Dense_{r}/bias"] = fc.weight.T, fc.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in w.items()})
    return path


def test_google_npz_goes_through_timms_jax_importer(tmp_path):
    # the orig tag ships a .pth (custom_load off): the loader must still route a .npz to the JAX importer
    arch, extra = ARCHS["vit_b16"]
    original = tiny_model(arch, **extra, num_classes=10)
    file = save_google_npz(original, tmp_path / "ViT-B_16-224.npz")
    subject = timm_vit.load(arch, weights=str(file), num_classes=10, model_args=dict(TINY, **extra))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(subject.model(x), original(x), atol=1e-6, rtol=0)
    # timm's importer leaves a head of another size random without a word: the loader refuses
    with pytest.raises(VismechError, match="head of 10 classes"):
        timm_vit.load(arch, weights=str(file), num_classes=7, model_args=dict(TINY, **extra))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    file = tmp_path / "evil.pth"
    torch.save({"model": {"x": _Payload(marker)}}, file)
    with pytest.raises(VismechError, match="evil.pth") as err:
        timm_vit.load("vit_base_patch16_224", weights=str(file), model_args=TINY)
    assert not marker.exists() and "\n" not in str(err.value)


def test_bad_weight_files_give_one_line_errors(tmp_path):
    original = tiny_model("vit_base_patch16_224")
    file = save_safetensors(original, tmp_path / "w.safetensors")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    cases = {truncated: "cut.safetensors' is not a loadable", tmp_path / "none.pth": "does not exist",
             tmp_path / "w.txt": "has suffix '.txt'", tmp_path / "bad.npz": "bad.npz' is not a loadable",
             tmp_path / "list.pth": "list.pth' is not a loadable"}
    (tmp_path / "w.txt").write_text("x")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    for path, message in cases.items():
        with pytest.raises(VismechError, match=message) as err:
            timm_vit.load("vit_base_patch16_224", weights=str(path), model_args=TINY)
        assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VismechError, match="holds none of model.safetensors"):
        timm_vit.load("vit_base_patch16_224", weights=str(tmp_path / "empty"), model_args=TINY)
    hub_layout = tmp_path / "hub"
    hub_layout.mkdir()
    save_safetensors(original, hub_layout / "model.safetensors")
    assert "hub/model.safetensors" in timm_vit.load("vit_base_patch16_224", weights=str(hub_layout),
                                                    model_args=TINY).source
    # a checkpoint of another shape is refused, not half-loaded
    with pytest.raises(VismechError, match="does not fit"):
        timm_vit.load("vit_base_patch16_224", weights=str(file), model_args=dict(TINY, embed_dim=64))
    with pytest.raises(VismechError, match="unknown timm architecture"):
        timm_vit.load("vit_nonexistent_patch16", pretrained=False)
    with pytest.raises(VismechError, match="no pretrained tag 'orig_in21k_ft_in1k'"):
        timm_vit.load("vit_base_patch32_384.orig_in21k_ft_in1k", pretrained=False)
    with pytest.raises(VismechError, match="pretrained=false"):
        timm_vit.load("vit_base_patch16_224", weights=str(file), pretrained=False, model_args=TINY)


def test_hub_failure_names_the_weights_option(monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    with pytest.raises(VismechError, match=r"could not fetch 'vit_base_patch16_224.orig_in21k_ft_in1k' weights from "
                                           r"the hub .*model.params.weights="):
        timm_vit.load("vit_base_patch16_224.orig_in21k_ft_in1k", model_args=TINY)


def write_folder(root: Path, per_class: int = 3) -> list[Path]:
    """Three classes (sorted names differ from creation order) of small PNG and JPEG images."""
    gen = torch.Generator().manual_seed(3)
    files = []
    for c in ("n02", "n01", "n03"):
        (root / c).mkdir(parents=True)
        for j in range(per_class):
            pixels = (torch.rand(40 + 3 * j, 48, 3, generator=gen) * 255).to(torch.uint8).numpy()
            path = root / c / f"img_{j}.{'png' if j % 2 else 'JPEG'}"
            Image.fromarray(pixels).save(path)
            files.append(path)
    (root / "n01" / "notes.txt").write_text("not an image")
    return files


def test_image_folder_ids_labels_slices_and_digest(tmp_path):
    root = tmp_path / "val"
    write_folder(root)
    tf = timm_vit.load("vit_base_patch16_224", pretrained=False, model_args=TINY).input_transform
    items = ImageFolderItems(root, tf)
    assert items.classes == ["n01", "n02", "n03"] and len(items) == 9 and items.name == "imagenet-folder:val"
    assert items.ids == list(range(9)) and items.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert items.files[:3] == ["n01/img_0.JPEG", "n01/img_1.png", "n01/img_2.JPEG"]
    item = items[4]
    assert item["id"] == 4 and item["label"] == 1 and item["image"].shape == (3, 32, 32)
    head, rest = ImageFolderItems(root, tf, per_class=(0, 2)), ImageFolderItems(root, tf, per_class=(2, None))
    assert head.ids == [0, 1, 3, 4, 6, 7] and rest.ids == [2, 5, 8] and rest.labels == [0, 1, 2]
    assert ImageFolderItems(root, tf, per_class=(0, 2), limit=3).ids == [0, 1, 3]
    assert head.name == "imagenet-folder:val[per class 0:2]"
    data = head.tensors()
    assert data["image"].shape == (6, 3, 32, 32) and data["id"].tolist() == head.ids
    remapped = ImageFolderItems(root, tf, classes=["n03", "n02", "n01", "n04"])
    assert remapped.labels[:3] == [2, 2, 2] and remapped.labels[-3:] == [0, 0, 0]

    digest = items.digest()
    assert digest == ImageFolderItems(root, tf).digest() and digest != head.digest()
    other_tf = timm_vit.load("vit_base_patch16_224", pretrained=False, model_args=TINY,
                             preprocessing="reference").input_transform
    assert ImageFolderItems(root, other_tf).digest() != digest
    Image.new("RGB", (5, 5)).save(root / "n02" / "img_1.png")  # same name, new content and size
    assert ImageFolderItems(root, tf).digest() != digest


def test_image_folder_errors(tmp_path):
    tf = lambda image: image  # noqa: E731
    with pytest.raises(VismechError, match="does not exist"):
        ImageFolderItems(tmp_path / "missing", tf)
    with pytest.raises(VismechError, match="no class subfolders"):
        ImageFolderItems(tmp_path, tf)
    (tmp_path / "n01").mkdir()
    (tmp_path / "n01" / "a.txt").write_text("x")
    with pytest.raises(VismechError, match="no image files"):
        ImageFolderItems(tmp_path, tf)
    (tmp_path / "n01" / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VismechError, match="b.jpg' cannot be read"):
        ImageFolderItems(tmp_path, tf)[0]
    for bad in ((2, 1), (0,), "0:2"):
        with pytest.raises(VismechError, match="per_class"):
            ImageFolderItems(tmp_path, tf, per_class=bad)
    with pytest.raises(VismechError, match="limit"):
        ImageFolderItems(tmp_path, tf, limit=0)
    with pytest.raises(VismechError, match="not in the class list"):
        ImageFolderItems(tmp_path, tf, classes=["n02"])


def test_end_to_end_logits_match_timms_own_transform(tmp_path):
    arch, extra = ARCHS["vit_b16"]
    # timm's data config keeps the tag's 224 px unless told the tiny model's size
    original = tiny_model(arch, **extra, pretrained_cfg_overlay=dict(input_size=(3, 32, 32)))
    file = save_safetensors(original, tmp_path / "w.safetensors")
    subject = timm_vit.load(arch, weights=str(file), model_args=dict(TINY, **extra))
    files = write_folder(tmp_path / "val", per_class=2)
    items = ImageFolderItems(tmp_path / "val", subject.input_transform)
    with torch.no_grad():
        logits = subject.logits(torch.stack([items[i]["image"] for i in range(len(items))]))
        timm_tf = create_transform(**resolve_model_data_config(original))  # timm's eval transform, with Normalize
        manual = original(torch.stack([timm_tf(Image.open(tmp_path / "val" / f).convert("RGB")) for f in items.files]))
    assert len(files) == len(items) == 6
    assert torch.allclose(logits, manual, atol=1e-6, rtol=0)

"""Tiny random stand-ins of the paper track's generative models and judges, written as the files a user passes.

Same classes as the paper's (diffusers StableDiffusionPipeline and DDPMPipeline, torchvision ResNet-50 and
FairFace's ResNet-34, torch-fidelity's Inception-v3, an open_clip CLIP), randomly initialised from fixed seeds and
saved to a folder, so a test loads them back through the suite's real loaders.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch

TINY_CLIP = "vismech-tiny-clip-quickgelu"
TINY_CLIP_CONFIG = {"embed_dim": 32, "quick_gelu": True,
                    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def register_tiny_clip(folder: Path) -> str:
    """A tiny open_clip architecture, registered under TINY_CLIP (open_clip reads model configs from json files)."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        file = folder / f"{TINY_CLIP}.json"
        file.write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(file)
    return TINY_CLIP


def random_inception_state() -> dict[str, torch.Tensor]:
    """A randomly initialised state dict of torch-fidelity's Inception-v3 (its constructor builds the modules,
    then fails to load an empty state dict: the modules are what is wanted)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3.__new__(FeatureExtractorInceptionV3)
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    try:
        FeatureExtractorInceptionV3.__init__(model, "inception-v3-compat", ["2048"],
                                             feature_extractor_weights_path=empty)
    except RuntimeError:
        pass
    # PyTorch's default conv init shrinks activations layer by layer, so 94 random layers would map every image to
    # the same features; variance-preserving weights (He: std sqrt(2 / fan_in)) keep images apart
    for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    return model.state_dict()


# tiny architectures of the feature spaces' classes, in place of the published ones (vismech...paper.ARCHS)
TINY_DINOV2 = {"patch_size": 14, "embed_dim": 32, "depth": 1, "num_heads": 2}
DINOV2_CHECKPOINT_SIZE = 518  # DINOv2's checkpoints hold 37 x 37 position embeddings, resampled to 16 x 16 at 224 px
# torch-fidelity's CLIP gives each head 64 channels: width 64 is one head
TINY_CLIP_VISUAL = {"resolution": 28, "patch_size": 14, "width": 64, "layers": 1, "embed_dim": 16}
TINY_CLIP_VISUAL_336 = {**TINY_CLIP_VISUAL, "resolution": 42}


def random_dinov2_state(arch: dict[str, int]) -> dict[str, torch.Tensor]:
    """A random DINOv2 checkpoint in the layout of `dinov2_vitl14_pretrain.pth`: timm's VisionTransformer keys at
    518 px, plus the masked-patch token DINOv2 keeps; layer scale 1, so the blocks change the features."""
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(img_size=DINOV2_CHECKPOINT_SIZE, num_classes=0, init_values=1.0, **arch)
    return {**net.state_dict(), "mask_token": torch.randn(1, arch["embed_dim"])}


def random_clip_state(arch: dict[str, int]) -> dict[str, torch.Tensor]:
    """A random CLIP checkpoint in OpenAI's layout: torch-fidelity's CLIPVisual tower, and the text tower's keys
    build_model reads (text_projection, for the embedding size) or drops."""
    from torch_fidelity.feature_extractor_clip import CLIPVisual

    visual = CLIPVisual(arch["embed_dim"], arch["resolution"], arch["layers"], arch["width"], arch["patch_size"])
    text_width = 32
    return {**visual.state_dict(), "text_projection": torch.randn(text_width, arch["embed_dim"]) / text_width ** 0.5,
            "logit_scale": torch.tensor(4.6052), "ln_final.weight": torch.ones(text_width),
            "ln_final.bias": torch.zeros(text_width), "token_embedding.weight": torch.randn(10, text_width)}


def save_state(state: dict[str, torch.Tensor], file: Path) -> Path:
    """A state dict as safetensors or as a weights-only torch file, by the file's suffix."""
    from safetensors.torch import save_file

    if file.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    else:
        torch.save(state, file)
    return file


def write_reference(folder: Path, count: int = 6, size: int = 32) -> Path:
    """A reference folder of `count` random RGB PNGs."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def write_judges(folder: Path) -> dict[str, str]:
    """The paper judges' weight files and a reference folder of 6 images; returns task.judges options."""
    import open_clip
    import torchvision
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        torch.save(torchvision.models.resnet50().state_dict(), folder / "resnet50.pth")
        torch.save(torchvision.models.resnet34(num_classes=18).state_dict(), folder / "fairface.pt")
        torch.save(random_inception_state(), folder / "inception.pth")
        clip = open_clip.create_model(register_tiny_clip(folder), pretrained=None)
        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(folder / "clip.safetensors"))
    reference = write_reference(folder / "reference")
    return {"classifier": str(folder / "resnet50.pth"), "attribute": str(folder / "fairface.pt"),
            "fid": str(folder / "inception.pth"), "clip": str(folder / "clip.safetensors"), "clip_arch": TINY_CLIP,
            "reference": str(reference), "cache_dir": str(folder / "judge-cache")}


def write_sd_pipeline(folder: Path) -> Path:
    """A StableDiffusionPipeline of sd_world's shape with random UNet, VAE and text encoder, and its tokenizer."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from vismech.zoo import sd_world

    shipped = sd_world.load()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        unet = UNet2DConditionModel.from_config(shipped.unet.config)
        vae = AutoencoderKL.from_config(shipped.vae.config)
        text = CLIPTextModel(shipped.text_encoder.config)
    pipe = sd_world.assemble(vae, unet, text, shipped.tokenizer)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_ddpm_pipeline(folder: Path) -> Path:
    """A DDPMPipeline of ddpm_world's shape with a random UNet and the DDPM schedule."""
    from diffusers import DDPMPipeline

    from vismech.zoo import ddpm_world

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(13)
        unet = ddpm_world.create_unet()
    DDPMPipeline(unet=unet, scheduler=ddpm_world.create_schedule()).save_pretrained(str(folder),
                                                                                   safe_serialization=True)
    return folder

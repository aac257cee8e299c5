"""clip_world: a small transformers CLIP trained contrastively on the mini world's captions.

It gives CLIP-T / CLIP-I scores in the world, and its text tower is sd_world's text encoder. The tokenizer is the
real CLIP BPE (open_clip's `bpe_simple_vocab_16e6.txt.gz`, 49,408 tokens), so the paper track's prompts tokenise
identically; the 49,408 x 48 token embedding is most of the file, which is why weights are stored in fp16 (and
loaded in fp32) and the tokenizer as CLIP's classic vocab.json + merges.txt (1.4 MB instead of a 3.6 MB
tokenizer.json).
"""
from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ..datasets.world import BACKGROUNDS, CLASSES, PATTERNS, WorldConfig, WorldItems, describe
from ..errors import VismechError
from .manifest import shipped_folder
from .recipe import fit, seeded_loader

NAME = "clip_world"
SUMMARY = "mini: transformers CLIP (ViT 16 px/patch 4, 3+3 layers, text 48 wide, real CLIP BPE) on the world's captions"
NEEDS: tuple[str, ...] = ()
CONTEXT_LENGTH = 32
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
VISION = dict(image_size=16, patch_size=4, num_channels=3, hidden_size=64, intermediate_size=256,
              num_hidden_layers=3, num_attention_heads=4)
TEXT = dict(vocab_size=49408, hidden_size=48, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=CONTEXT_LENGTH, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
PROJECTION_DIM = 64
MEAN = STD = 0.5  # images in [0, 1] -> [-1, 1]
# Caption kinds, one pair per image each epoch: the colour-less and detailed ones teach the text tower the
# item, background and pattern words that sd_world's prompts and the zero-shot checks use.
CAPTION_KINDS = {"colour": (True, False), "plain": (False, False), "details": (True, True)}
RECIPE: dict[str, Any] = dict(data="world judge split (10,000 items, uniform colours) x 3 caption kinds",
                              caption_kinds=list(CAPTION_KINDS), epochs=4, batch_size=256, lr=2e-3,
                              weight_decay=0.05, seed=0, stored_dtype="float16")
RETRIEVAL_BATCH = 256


def bpe_file() -> Path:
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def create_tokenizer():
    """The CLIP BPE tokenizer as a transformers CLIPTokenizer, built from open_clip's shipped merges file with the
    same vocabulary order as open_clip's SimpleTokenizer (bytes, bytes + '</w>', merges, then the two specials)."""
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    lines = gzip.open(bpe_file()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    units = list(bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + [BOS, EOS]
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges, model_max_length=CONTEXT_LENGTH,
                         bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)


def compact_tokenizer(folder: Path) -> None:
    """Replace the pretty-printed tokenizer.json that save_pretrained writes (3.6 MB) by CLIP's classic vocab.json +
    merges.txt (the same BPE in 1.4 MB); CLIPTokenizer.from_pretrained reads either."""
    spec = json.loads((folder / "tokenizer.json").read_text())["model"]
    (folder / "vocab.json").write_text(json.dumps(spec["vocab"], ensure_ascii=False, separators=(",", ":")))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in spec["merges"]) + "\n")
    (folder / "tokenizer.json").unlink()


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Padded to the context length with the end token, exactly as StableDiffusionPipeline.encode_prompt does."""
    return tokenizer(list(texts), padding="max_length", max_length=CONTEXT_LENGTH, truncation=True,
                     return_tensors="pt")["input_ids"]


def create_model():
    from transformers import CLIPConfig, CLIPModel

    return CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=PROJECTION_DIM))


class WorldCLIP:
    """A CLIPModel and its tokenizer, with the calls the benchmarks need; embeddings are L2-normalised."""

    def __init__(self, model, tokenizer, source: str = ""):
        self.model, self._tokenizer, self.source = model.eval(), tokenizer, source

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, VISION["image_size"], VISION["image_size"]):
            raise VismechError(f"{NAME} takes images of shape (N, 3, {VISION['image_size']}, {VISION['image_size']}) "
                               f"in [0, 1], got {tuple(images.shape)}")
        return F.normalize(self.model.get_image_features(pixel_values=_normalise(images)).pooler_output, dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise VismechError(f"{NAME}.encode_text takes a list of strings, got {texts!r}")
        ids = tokenize(self._tokenizer, texts).to(self.model.device)
        return F.normalize(self.model.get_text_features(input_ids=ids).pooler_output, dim=-1)

    def text_encoder(self):
        """A copy of the text tower as a CLIPTextModel (the class Stable Diffusion uses), frozen."""
        from transformers import CLIPTextModel

        encoder = CLIPTextModel(self.model.config.text_config)
        encoder.load_state_dict(self.model.text_model.state_dict())
        return encoder.eval().requires_grad_(False)

    def tokenizer(self):
        return self._tokenizer


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - MEAN) / STD


def load(weights: str | None = None) -> WorldCLIP:
    """The mini CLIP through CLIPModel/CLIPTokenizer.from_pretrained; `weights` is a folder written by `build`."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = Path(weights) if weights else shipped_folder(NAME)
    if not (folder / "config.json").is_file():
        raise VismechError(f"'{folder}' is not a {NAME} folder (no config.json); pass a folder written by its build")
    model = CLIPModel.from_pretrained(folder, dtype=torch.float32)
    return WorldCLIP(model, CLIPTokenizer.from_pretrained(folder), source=f"CLIPModel.from_pretrained('{folder}')")


def prompt_grid(attributes: tuple[str, ...], config: WorldConfig = WorldConfig()) -> list[tuple[str, dict[str, int]]]:
    """Every caption over the named attributes (item always included), with each value's index."""
    values = {"item": CLASSES, "colour": config.palette, "pattern": PATTERNS, "background": BACKGROUNDS}
    names = ("item", *[a for a in ("colour", "pattern", "background") if a in attributes])
    grid = []
    for combo in itertools.product(*(range(len(values[n])) for n in names)):
        chosen = dict(zip(names, combo))
        grid.append((describe(**{n: values[n][i] for n, i in chosen.items()}), chosen))
    return grid


# Which prompts decide each attribute zero-shot: the shortest captions that name it.
ZERO_SHOT_PROMPTS = {"colour": ("colour",), "item": (), "background": ("colour", "pattern", "background"),
                     "pattern": ("colour", "pattern", "background")}
TENSOR_KEY = {"item": "label", "colour": "colour", "background": "background", "pattern": "pattern"}


@torch.no_grad()
def zero_shot_accuracy(clip: WorldCLIP, data: dict[str, torch.Tensor], attribute: str, batch_size: int = 1000) -> float:
    """Accuracy of the attribute value whose prompts take the most probability (summed over the other words)."""
    grid = prompt_grid(ZERO_SHOT_PROMPTS[attribute])
    text = clip.encode_text([t for t, _ in grid])
    owner = torch.tensor([v[attribute] for _, v in grid])
    scale = clip.model.logit_scale.exp()
    correct = 0
    for start in range(0, len(data["image"]), batch_size):
        probs = (scale * clip.encode_image(data["image"][start:start + batch_size]) @ text.T).softmax(-1)
        marginal = torch.zeros(len(probs), int(owner.max()) + 1).index_add_(1, owner, probs)
        correct += int((marginal.argmax(1) == data[TENSOR_KEY[attribute]][start:start + batch_size]).sum())
    return correct / len(data["image"])


@torch.no_grad()
def retrieval_top1(clip: WorldCLIP, images: torch.Tensor, captions: list[str]) -> dict[str, float]:
    """Top-1 retrieval within one batch; a hit is any match with the same caption text (captions repeat)."""
    sims = clip.encode_image(images) @ clip.encode_text(captions).T
    same = torch.tensor([[a == b for b in captions] for a in captions])
    rows = torch.arange(len(captions))
    return {"image_to_text": float(same[rows, sims.argmax(1)].float().mean()),
            "text_to_image": float(same[rows, sims.argmax(0)].float().mean())}


def quality(clip: WorldCLIP, limit: int | None = None) -> dict[str, Any]:
    items = WorldItems("test", limit=limit)
    data = items.tensors()
    n = min(RETRIEVAL_BATCH, len(items))
    captions = [items.caption(i, with_details=True) for i in items.ids[:n]]
    return {"zero_shot_accuracy": {a: round(zero_shot_accuracy(clip, data, a), 4) for a in ZERO_SHOT_PROMPTS},
            "zero_shot_prompts": {a: f"{len(grid)} prompts like '{grid[-1][0]}', summed over the other words"
                                  for a, grid in ((a, prompt_grid(p)) for a, p in ZERO_SHOT_PROMPTS.items())},
            "retrieval_top1": {k: round(v, 4) for k, v in retrieval_top1(clip, data["image"][:n], captions).items()},
            "retrieval": f"first {n} test items with detail captions, top-1 among the batch",
            "test_items": len(items)}


def captioned_pairs(split: str, limit: int | None, tokenizer) -> tuple[TensorDataset, torch.Tensor, torch.Tensor]:
    """Every (image, caption kind) pair of a split as (image index, caption index), the images, and the token ids
    of each distinct caption: a batch holds repeats of a caption, and the loss needs to know which."""
    items = WorldItems(split, limit=limit)
    texts = [items.caption(i, *CAPTION_KINDS[k]) for k in CAPTION_KINDS for i in items.ids]
    unique = sorted(set(texts))
    index = {t: i for i, t in enumerate(unique)}
    image_index = torch.arange(len(items)).repeat(len(CAPTION_KINDS))
    caption_index = torch.tensor([index[t] for t in texts])
    tokens = tokenize(tokenizer, unique)
    # The text tower is causal and pools at the first end token, so padding past the longest caption changes no
    # embedding: dropping it makes training ~2.5x cheaper.
    longest = int((tokens == tokenizer.eos_token_id).int().argmax(1).max()) + 1
    return TensorDataset(image_index, caption_index), items.tensors()["image"], tokens[:, :longest]


class _Contrastive(L.LightningModule):
    def __init__(self, model, images: torch.Tensor, tokens: torch.Tensor, recipe: dict, steps: int):
        super().__init__()
        self.model, self.recipe, self.steps = model, recipe, steps
        self.register_buffer("images", images, persistent=False)
        self.register_buffer("tokens", tokens, persistent=False)

    def training_step(self, batch, _):
        image_index, caption_index = batch
        # A batch repeats captions: each distinct caption is encoded once, an image's target is its caption, and a
        # caption's target is spread evenly over the images that carry it.
        texts, owner = caption_index.unique(return_inverse=True)
        pixels = _normalise(self.images[image_index])
        image = F.normalize(self.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        text = F.normalize(self.model.get_text_features(input_ids=self.tokens[texts]).pooler_output, dim=-1)
        logits = self.model.logit_scale.exp() * image @ text.T
        carries = F.one_hot(owner, len(texts)).float().T
        loss = (F.cross_entropy(logits, owner) + F.cross_entropy(logits.T, carries / carries.sum(1, keepdim=True))) / 2
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.recipe["lr"], weight_decay=self.recipe["weight_decay"])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.recipe["lr"], total_steps=self.steps)
        return [opt], [{"scheduler": sched, "interval": "step"}]


def train(progress: bool = False, limit: int | None = None, **overrides) -> tuple[WorldCLIP, dict]:
    """The recipe, without quality; `limit` (items of the judge split) and `overrides` make short runs for tests."""
    recipe = dict(RECIPE, **overrides)
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    tokenizer = create_tokenizer()
    model = create_model()
    pairs, images, tokens = captioned_pairs("judge", limit, tokenizer)
    loader = seeded_loader(pairs, recipe["batch_size"], recipe["seed"])
    module = _Contrastive(model, images, tokens, recipe, steps=recipe["epochs"] * len(loader))
    measured = fit(module, loader, epochs=recipe["epochs"], seed=recipe["seed"], progress=progress)
    return WorldCLIP(model.cpu(), tokenizer, source="trained in memory"), {"recipe": recipe, "seed": recipe["seed"],
                                                                           **measured}


def save(clip: WorldCLIP, out: Path) -> None:
    """fp16 files (half the size; quality is measured after the round trip)."""
    from transformers import CLIPModel

    half = CLIPModel(clip.model.config)
    half.load_state_dict(clip.model.state_dict())
    half.half().save_pretrained(out)
    clip.tokenizer().save_pretrained(out)
    compact_tokenizer(out)


def build(out: Path, progress: bool = False) -> dict:
    clip, measured = train(progress=progress)
    save(clip, out)
    return {**measured, "quality": quality(load(str(out)))}

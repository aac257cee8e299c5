"""clip_world and sd_world recipes: the real CLIP tokenizer, losses that fall on short runs, and a pipeline that
round-trips through StableDiffusionPipeline.from_pretrained bit for bit."""
from __future__ import annotations

import copy

import pytest
import torch

from vismech.datasets.world import WorldItems
from vismech.errors import VismechError
from vismech.zoo import clip_world, sd_world
from vismech.zoo.manifest import read_manifest

CAPTION_IDS = list(range(0, 70_000, 997))


def world_captions() -> list[str]:
    items = WorldItems("train")
    return sorted({items.caption(i, colour, details) for i in CAPTION_IDS
                   for colour, details in ((True, False), (False, False), (True, True))})


def test_tokenizer_ids_equal_open_clip():
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    ours = clip_world.tokenize(clip_world.create_tokenizer(), world_captions())
    reference = open_clip.get_tokenizer("ViT-B-32")(world_captions(), context_length=clip_world.CONTEXT_LENGTH)
    simple = SimpleTokenizer(context_length=clip_world.CONTEXT_LENGTH)(world_captions())
    assert torch.equal(reference, simple)
    # open_clip pads with 0, transformers (and Stable Diffusion) with the end token: equal up to the end token
    for row, ref in zip(ours, reference):
        length = int((ref != 0).sum())
        assert row[:length].tolist() == ref[:length].tolist()
        assert (row[length:] == 49407).all()


def test_describe_matches_the_world_captions():
    items = WorldItems("test", limit=50)
    for i in items.ids:
        a = items.attributes(i)
        assert clip_world.describe(a["item"], a["colour"]) == items.caption(i)
        assert clip_world.describe(a["item"]) == items.caption(i, with_colour=False)
        assert clip_world.describe(**a) == items.caption(i, with_details=True)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """An untrained clip_world saved as its build writes it: sd_world only needs its text tower and tokenizer."""
    folder = tmp_path_factory.mktemp("clip_world")
    torch.manual_seed(0)
    clip_world.save(clip_world.WorldCLIP(clip_world.create_model(), clip_world.create_tokenizer()), folder)
    return folder


def test_clip_recipe_runs_and_its_loss_falls(clip_folder):
    clip, measured = clip_world.train(limit=256, epochs=4, batch_size=128, lr=5e-3)
    losses = measured["epoch_losses"]
    assert len(losses) == 4 and losses[-1] < 0.97 * losses[0]
    emb = clip.encode_text(["a red sneaker", "a sneaker"])
    assert emb.shape == (2, clip_world.PROJECTION_DIM)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2))
    assert clip.encode_image(torch.rand(3, 3, 16, 16)).shape == (3, clip_world.PROJECTION_DIM)


def test_clip_folder_loads_through_from_pretrained(clip_folder):
    loaded = clip_world.load(str(clip_folder))
    assert loaded.tokenizer()("a red sneaker")["input_ids"] == [49406, 320, 736, 24781, 49407]
    assert loaded.tokenizer().model_max_length == clip_world.CONTEXT_LENGTH
    assert {p.name for p in clip_folder.iterdir()} >= {"model.safetensors", "vocab.json", "merges.txt"}
    assert next(loaded.model.parameters()).dtype == torch.float32
    with pytest.raises(VismechError, match="list of strings"):
        loaded.encode_text("a red sneaker")
    with pytest.raises(VismechError, match="shape"):
        loaded.encode_image(torch.rand(2, 3, 32, 32))


@pytest.fixture(scope="module")
def short_sd(clip_folder):
    return sd_world.train(str(clip_folder), limit=256, vae_items=256, vae_epochs=3, epochs=3)


def test_sd_recipe_runs_and_its_losses_fall(short_sd):
    pipe, measured = short_sd
    assert measured["vae_epoch_losses"][-1] < measured["vae_epoch_losses"][0]
    assert measured["epoch_losses"][-1] < measured["epoch_losses"][0]
    ff = [n for n, _ in pipe.unet.named_parameters() if n.endswith(("ff.net.0.proj.weight", "ff.net.2.weight"))]
    assert len(ff) == 2 * 7  # 2 down, 1 mid, 4 up transformer blocks
    assert pipe.vae_scale_factor == 2 and pipe.safety_checker is None


def test_sd_pipeline_round_trips_bit_exactly(short_sd, tmp_path):
    pipe, _ = short_sd
    sd_world.save(pipe, tmp_path)
    loaded = sd_world.load(str(tmp_path))
    prompts, seeds = ["a blue sneaker", "a sneaker", "a checked red bag on a white background"], [3, 4, 5]
    images = sd_world.generate(loaded, prompts, seeds, steps=3)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    assert torch.equal(images, sd_world.generate(sd_world.load(str(tmp_path)), prompts, seeds, steps=3))
    # the files hold fp16: the in-memory pipeline rounded the same way gives the same bits
    rounded = copy.deepcopy(pipe).to(torch.float16).to(torch.float32)
    rounded.set_progress_bar_config(disable=True)
    assert torch.equal(images, sd_world.generate(rounded, prompts, seeds, steps=3))
    assert not torch.equal(images[0], sd_world.generate(loaded, prompts[:1], [6], steps=3)[0])


def test_sd_load_and_generate_refuse_bad_input(short_sd, tmp_path):
    with pytest.raises(VismechError, match="model_index.json"):
        sd_world.load(str(tmp_path))
    with pytest.raises(VismechError, match="one seed per prompt"):
        sd_world.generate(short_sd[0], ["a sneaker"], [1, 2])


def test_sd_quality_measures_run(short_sd):
    settings = dict(per_prompt=1, colourless_per_item=1, steps=2, reconstruction_items=64)
    q = sd_world.quality(short_sd[0], **settings)
    assert q["prompt_adherence"]["samples"] == 40 and 0 <= q["prompt_adherence"]["mean"] <= 1
    shares = q["colourless"]["shares"]
    assert q["colourless"]["samples"] == 10
    assert sum(shares.values()) + q["colourless"]["uncoloured"] == pytest.approx(1)
    assert set(q["vae_reconstruction"]) >= {"mse", "colour_agreement", "background_agreement", "pattern_agreement"}


def test_shipped_clip_reproduces_its_manifest_quality():
    quality = read_manifest()["clip_world"]["quality"]
    clip = clip_world.load()
    data = WorldItems("test", limit=1000).tensors()
    for attribute, tolerance in (("colour", 0.01), ("item", 0.05), ("background", 0.01)):
        measured = clip_world.zero_shot_accuracy(clip, data, attribute)
        assert measured == pytest.approx(quality["zero_shot_accuracy"][attribute], abs=tolerance), attribute
    assert quality["zero_shot_accuracy"]["colour"] > 0.98 and quality["zero_shot_accuracy"]["item"] > 0.5


def test_shipped_sd_follows_colour_prompts_and_carries_the_skew():
    quality = read_manifest()["sd_world"]["quality"]
    pipe = sd_world.load()
    assert sd_world.reconstruction(pipe.vae, 500)["colour_agreement"] > 0.98
    adherence = sd_world.prompt_adherence(pipe, per_prompt=1)  # 40 images
    assert adherence["mean"] == pytest.approx(quality["prompt_adherence"]["mean"], abs=0.2)
    colourless = sd_world.colourless_distribution(pipe, colourless_per_item=4)  # 40 images
    # colour-less prompts inherit the training skew toward red (0.7): the conditional bias subject's bias
    assert colourless["shares"]["red"] > 0.55 and quality["colourless"]["shares"]["red"] > 0.55

"""ddpm_world, the bias task's mini subject: its recipe trains, its folder loads bit-exactly through diffusers'
from_pretrained, sampling gives each image from its own seed alone, and the shipped model reproduces the skew."""
from __future__ import annotations

import pytest
import torch

from vismech.datasets.world import WorldConfig, WorldItems, measure_colour
from vismech.errors import VismechError
from vismech.zoo import ddpm_world
from vismech.zoo.manifest import read_manifest

SEEDS = [3, 1, 4, 15, 9, 2, 6, 5]
STEPS = 8  # enough DDIM steps for rounding differences to compound, few enough to stay fast
# Batch composition changes how CPU kernels block their loops, so float sums may round differently; measured
# differences are ~2e-6 after 20 steps, 50x below this.
BATCH_ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a shared 2-core machine two OpenMP threads spin at every barrier while the other jobs hold the cores,
    which made these small-batch tests ~10x slower than one thread; alone on the machine one thread costs ~1.5x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """A short recipe run on a small subset: the sampling tests then run on a model that makes coloured shapes,
    not on noise-predicting random weights."""
    return ddpm_world.train(limit=128, max_steps=64, batch_size=16)


def test_short_training_lowers_the_loss(trained):
    _, measured = trained
    losses = measured["epoch_losses"]
    assert len(losses) == 8 and losses[-1] < 0.5 * losses[0]


def test_saved_folder_loads_through_from_pretrained_and_samples_bit_exactly(trained, tmp_path):
    (unet, schedule), _ = trained
    ddpm_world.save(unet, schedule, tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} == {
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json"}
    loaded = ddpm_world.load(str(tmp_path))
    assert type(loaded.unet) is type(unet) and type(loaded.scheduler).__name__ == "DDIMScheduler"
    state = loaded.unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in unet.state_dict().items())
    before = ddpm_world.sample(unet, schedule, SEEDS, STEPS)
    assert torch.equal(ddpm_world.sample(loaded.unet, loaded.scheduler, SEEDS, STEPS), before)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampling_does_not_depend_on_batch_size(trained, eta):
    (unet, schedule), _ = trained
    together = ddpm_world.sample(unet, schedule, SEEDS, STEPS, eta=eta, batch_size=len(SEEDS))
    alone = ddpm_world.sample(unet, schedule, SEEDS, STEPS, eta=eta, batch_size=1)
    torch.testing.assert_close(alone, together, rtol=0, atol=BATCH_ATOL)
    assert together.shape == (len(SEEDS), 3, 16, 16) and 0 <= together.min() and together.max() <= 1


def test_an_image_depends_only_on_its_own_seed(trained):
    (unet, schedule), _ = trained
    images = ddpm_world.sample(unet, schedule, SEEDS, STEPS, eta=1.0)
    swapped = ddpm_world.sample(unet, schedule, SEEDS[::-1], STEPS, eta=1.0)
    torch.testing.assert_close(swapped.flip(0), images, rtol=0, atol=BATCH_ATOL)
    distinct = (images[:, None] - images[None]).abs().flatten(2).amax(2)
    assert (distinct + torch.eye(len(SEEDS)) > 0.05).all()  # different seeds, different images


def test_sampling_leaves_the_scheduler_alone(trained):
    (unet, schedule), _ = trained
    timesteps = schedule.timesteps.clone()
    ddpm_world.sample(unet, schedule, SEEDS[:2], 3)
    assert torch.equal(schedule.timesteps, timesteps)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seeds=[]), "seeds must be a non-empty list"), (dict(seeds=[1, -2]), "seeds must be"),
    (dict(seeds=[1.5]), "seeds must be"), (dict(steps=0), "steps must be an integer in \\[1, 1000\\]"),
    (dict(steps=1001), "steps must be"), (dict(eta=1.5), "eta must be in \\[0, 1\\]"),
    (dict(batch_size=0), "batch_size must be")])
def test_bad_sampling_arguments_fail_clearly(trained, kwargs, match):
    (unet, schedule), _ = trained
    with pytest.raises(VismechError, match=match):
        ddpm_world.sample(unet, schedule, **{"seeds": [0], "steps": 2, **kwargs})


def test_missing_or_broken_folders_fail_clearly(trained, tmp_path):
    with pytest.raises(VismechError, match="does not exist"):
        ddpm_world.load(str(tmp_path / "nothing"))
    with pytest.raises(VismechError, match="is not a ddpm_world folder"):
        ddpm_world.load(str(tmp_path))
    (unet, schedule), _ = trained
    ddpm_world.save(unet, schedule, tmp_path)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(VismechError, match="is not a ddpm_world folder"):
        ddpm_world.load(str(tmp_path))


@pytest.mark.parametrize("split, expected", [("train", WorldConfig().skew), ("test", (0.25,) * 4)])
def test_generation_measures_read_the_world_exactly(split, expected):
    """The quality measure applied to real items recovers each split's colour distribution."""
    images = WorldItems(split, limit=3000).tensors()["image"]
    quality = ddpm_world.measure_generations(images)
    assert quality["samples"] == 3000 and quality["clear_colour_share"] == 1.0
    for (colour, share), target in zip(quality["colour_share"].items(), expected):
        assert abs(share - target) < 4 * quality["colour_se"][colour] + 1e-3, colour
    assert abs(quality["background_share"]["white"] - 0.5) < 0.04
    assert abs(quality["pattern_share"]["checked"] - 0.5) < 0.04


def test_shipped_model_reproduces_the_train_skew():
    entry = read_manifest()["ddpm_world"]
    reported = entry["quality"]
    assert reported["colour_share"]["red"] == pytest.approx(0.7, abs=0.05)
    assert reported["clear_colour_share"] > 0.8
    unet, scheduler = ddpm_world.load()
    n = 200
    images = ddpm_world.sample(unet, scheduler, ddpm_world.quality_seeds(n), steps=20, eta=ddpm_world.QUALITY["eta"])
    quality = ddpm_world.measure_generations(images)
    # 0.7 +- 3.5 binomial standard errors at n = 200 (0.032), plus 0.02 for the model's own bias
    assert quality["colour_share"]["red"] == pytest.approx(0.7, abs=0.13)
    assert all(quality["colour_share"][c] < 0.25 for c in ("green", "blue", "yellow"))
    assert quality["background_share"]["white"] == pytest.approx(0.5, abs=0.15)
    assert quality["clear_colour_share"] > 0.7


def test_skip_dropout_zeroes_every_skip_of_the_dropped_samples_only():
    from diffusers import UNet2DModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                           layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
                           up_block_types=("UpBlock2D",) * 2, norm_num_groups=4).eval()
    x, t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([10, 500])
    seen = []
    with torch.no_grad():
        plain = unet(x, t).sample
        dropout = ddpm_world.SkipDropout(unet)
        # registered after the dropout's hooks: the watcher sees the skips the up blocks get
        watch = [b.register_forward_pre_hook(lambda m, args: seen.append(args[1])) for b in unet.up_blocks]
        dropout.keep = torch.tensor([True, False])
        dropped = unet(x, t).sample
        skips = [s for call in seen for s in call]
        assert len(skips) == 4 and all(s[1].abs().max() == 0 and s[0].abs().max() > 0 for s in skips)
        dropout.keep = None
        assert torch.equal(unet(x, t).sample, plain)
        dropout.remove()
        assert torch.equal(unet(x, t).sample, plain) and not torch.equal(dropped[1], plain[1])
        assert torch.allclose(dropped[0], plain[0], atol=1e-6)  # the kept sample is denoised as without dropout
    for h in watch:
        h.remove()


def test_shipped_model_keeps_the_colour_in_h():
    """Trained with skip dropout, the shipped UNet's decoder reads the colour from h: zeroing the mid block's output
    at every step recolours a fifth of the images (measured 22% of these 64). Trained without it, the same zeroing
    left the colour shares where they were (red 0.699 -> 0.699 of 256) and DiffLens had nothing to steer."""
    unet, scheduler = ddpm_world.load()
    seeds = ddpm_world.quality_seeds(64)
    plain = ddpm_world.sample(unet, scheduler, seeds, steps=20, eta=ddpm_world.QUALITY["eta"])
    handle = unet.mid_block.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
    try:
        zeroed = ddpm_world.sample(unet, scheduler, seeds, steps=20, eta=ddpm_world.QUALITY["eta"])
    finally:
        handle.remove()
    changed = (measure_colour(plain).argmax(1) != measure_colour(zeroed).argmax(1)).double().mean()
    assert changed > 0.15, changed

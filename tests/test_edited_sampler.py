"""The bias task's sampler: plain sampling reproduces the zoo's samplers bit for bit, the split two-pass step equals
the naive two full passes, the Asyrp step against its formula, per-image seeds, cost counts, hooks restored."""
from __future__ import annotations

import pytest
import torch

from vismech.datasets.bias import Sampling
from vismech.errors import VismechError
from vismech.sampling import HSpaceEdit, PromptEdit, decoder_fraction, sample, two_pass_step
from vismech.subject import DiffusionSubject, unet_sites
from vismech.zoo import ddpm_world, sd_world

SEEDS = [11, 12, 13, 14, 15]
IDS = [0, 1, 2, 3, 4]


class EvenShift(HSpaceEdit):
    """Test edit: h += 0.5 * (1 + step / steps) on samples with even ids, from step 1 on."""

    def selected(self, ids, step, steps):
        return (ids % 2 == 0) & (step >= 1)

    def shift(self, h, ids, step, steps):
        assert bool((ids % 2 == 0).all())
        return h + 0.5 * (1 + step / steps)


class ZeroShift(EvenShift):
    def shift(self, h, ids, step, steps):
        return h + 0.0


@pytest.fixture(scope="module")
def tiny():
    """A randomly initialised UNet2DModel (8 px, two levels) with DDPM's linear schedule, x0 clipped."""
    from diffusers import DDPMScheduler, UNet2DModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                           layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
                           up_block_types=("UpBlock2D",) * 2, norm_num_groups=8)
    scheduler = DDPMScheduler(num_train_timesteps=1000, clip_sample=True)
    return DiffusionSubject("tiny", unet.eval(), scheduler, unet_sites(unet), image_size=8)


@pytest.fixture(scope="module")
def sd():
    return sd_world.subject()


PROMPTS = ["a sneaker", "a bag", "a red dress", "a dress", "a coat"]
SD_SAMPLING = Sampling(steps=6, eta=0.0, guidance_scale=4.0)
TINY_SAMPLING = Sampling(steps=8, eta=1.0, batch_size=5)


def test_plain_sampling_reproduces_ddpm_world_sampler_bit_for_bit(tiny):
    ours = sample(tiny, IDS, SEEDS, sampling=TINY_SAMPLING)
    ref = ddpm_world.sample(tiny.unet, tiny.scheduler, SEEDS, steps=8, eta=1.0)
    assert torch.equal(ours.images, ref)
    assert (ours.full_rows, ours.decoder_rows) == (5 * 8, 0)


def test_plain_sampling_reproduces_the_sd_pipeline_bit_for_bit(sd):
    ours = sample(sd, IDS, SEEDS, prompts=PROMPTS, sampling=SD_SAMPLING)
    ref = sd_world.generate(sd.pipeline, PROMPTS, SEEDS, guidance_scale=4.0, steps=6)
    assert torch.equal(ours.images, ref)
    assert ours.full_rows == 5 * 6 * 2  # both CFG halves


def test_split_two_pass_equals_naive_two_pass_unconditional(tiny):
    split = sample(tiny, IDS, SEEDS, edit=EvenShift(tiny), sampling=TINY_SAMPLING)
    naive = sample(tiny, IDS, SEEDS, edit=EvenShift(tiny), sampling=TINY_SAMPLING, two_pass="naive")
    plain = sample(tiny, IDS, SEEDS, sampling=TINY_SAMPLING)
    torch.testing.assert_close(split.images, naive.images, atol=2e-5, rtol=0)
    assert (split.images - plain.images)[0::2].abs().max() > 1e-3  # the edit does something, on even ids only
    assert torch.equal(split.images[1::2], plain.images[1::2])
    edited = 3 * 7  # ids 0, 2, 4 at steps 1..7
    assert (split.full_rows, split.decoder_rows) == (40, edited)
    assert (naive.full_rows, naive.decoder_rows) == (40 + 5 * 7, 0)  # the whole batch twice at edited steps


def test_split_two_pass_equals_naive_under_guidance_and_edits_only_the_conditional_half(sd):
    seen = []
    split = sample(sd, IDS, SEEDS, prompts=PROMPTS, edit=EvenShift(sd), sampling=SD_SAMPLING,
                   observe=lambda h, step: seen.append((step, tuple(h.shape))))
    naive = sample(sd, IDS, SEEDS, prompts=PROMPTS, edit=EvenShift(sd), sampling=SD_SAMPLING, two_pass="naive")
    torch.testing.assert_close(split.images, naive.images, atol=2e-5, rtol=0)
    assert split.full_rows == 60 and split.decoder_rows == 3 * 5  # [uncond, cond, cond-edited]: 3 rows, not 4
    assert seen[0] == (0, (10, 64, 4, 4)) and len(seen) == 6  # observe sees both halves, unedited


def test_asyrp_step_against_its_formula():
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False)
    ddim.set_timesteps(10)
    gen = torch.Generator().manual_seed(0)
    x, e_edit, e_orig, xi = (torch.randn(2, 3, 4, 4, generator=gen) for _ in range(4))
    t, eta = ddim.timesteps[3], 0.5
    a_t, a_prev = ddim.alphas_cumprod[int(t)], ddim.alphas_cumprod[int(t) - 100]
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    x0 = (x - (1 - a_t).sqrt() * e_edit) / a_t.sqrt()
    want = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).sqrt() * e_orig + sigma * xi
    torch.testing.assert_close(two_pass_step(ddim, t, x, e_edit, e_orig, eta, xi), want, atol=1e-5, rtol=1e-5)


def test_images_do_not_depend_on_batch_size(tiny):
    one = sample(tiny, IDS, SEEDS, edit=EvenShift(tiny), sampling=Sampling(steps=8, eta=1.0, batch_size=2))
    all_ = sample(tiny, IDS, SEEDS, edit=EvenShift(tiny), sampling=TINY_SAMPLING)
    torch.testing.assert_close(one.images, all_.images, atol=2e-5, rtol=0)
    alone = sample(tiny, IDS[3:4], SEEDS[3:4], edit=EvenShift(tiny), sampling=TINY_SAMPLING)
    torch.testing.assert_close(alone.images[0], all_.images[3], atol=2e-5, rtol=0)


def test_zero_shift_two_pass_equals_plain_and_hooks_are_removed(tiny):
    zero = sample(tiny, IDS, SEEDS, edit=ZeroShift(tiny), sampling=TINY_SAMPLING)
    plain = sample(tiny, IDS, SEEDS, sampling=TINY_SAMPLING)
    torch.testing.assert_close(zero.images, plain.images, atol=2e-5, rtol=0)
    unet = tiny.unet
    assert not unet.mid_block._forward_hooks
    assert not any(b._forward_pre_hooks for b in unet.up_blocks)


def test_an_h_edit_refuses_to_run_outside_the_sampler(tiny):
    with EvenShift(tiny), pytest.raises(VismechError, match="vismech.sampling.sample"):
        tiny.unet(torch.zeros(1, 3, 8, 8), 10)
    assert not tiny.unet.mid_block._forward_hooks


class Recolour(PromptEdit):
    def rewrite(self, prompts, ids):
        return [p.replace("a ", "a green ", 1) for p in prompts]


def test_prompt_edit_rewrites_prompts(sd):
    edited = sample(sd, IDS[:2], SEEDS[:2], prompts=PROMPTS[:2], edit=Recolour(sd), sampling=SD_SAMPLING)
    direct = sample(sd, IDS[:2], SEEDS[:2], prompts=["a green sneaker", "a green bag"], sampling=SD_SAMPLING)
    assert torch.equal(edited.images, direct.images)


def test_bad_calls_are_one_line_errors(tiny, sd):
    with pytest.raises(VismechError, match="unconditional: give no prompts"):
        sample(tiny, IDS, SEEDS, prompts=PROMPTS, sampling=TINY_SAMPLING)
    with pytest.raises(VismechError, match="one prompt per sample"):
        sample(sd, IDS, SEEDS, sampling=SD_SAMPLING)
    with pytest.raises(VismechError, match="two_pass must be one of"):
        sample(tiny, IDS, SEEDS, sampling=TINY_SAMPLING, two_pass="twice")
    with pytest.raises(VismechError, match="one seed per id"):
        sample(tiny, IDS[:2], SEEDS, sampling=TINY_SAMPLING)
    with pytest.raises(VismechError, match="steps must be"):
        Sampling(steps=1)


def test_decoder_fraction_is_the_share_after_the_mid_block(tiny, sd):
    for subject in (tiny, sd):
        assert 0.2 < decoder_fraction(subject) < 0.9

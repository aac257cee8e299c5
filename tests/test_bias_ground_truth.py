"""Ground truth of the bias task on the mini world (sd_world): calibrated DiffLens reaches a uniform colour mix
where the random-latent control of the same SAE does not, at less FID; the SAE's reconstruction in place of h
keeps the images. A file of its own: the longest test, which a parallel run schedules beside the others."""
from __future__ import annotations

import pytest
import torch

from vismech.datasets.bias import shares, world_fit_data
from vismech.methods.bias_baselines import RandomLatents
from vismech.methods.difflens import DiffLens
from vismech.methods.edited_sampler import sample


@pytest.fixture(scope="module")
def sd():
    from vismech.zoo import sd_world

    return sd_world.subject()


GT_CONFIG = {"sae_expansion": 4, "sae_k": 32, "sae_steps": 3000, "mode": "add", "temperature": 1000.0,
             "ig_last_steps": 24, "ig_samples": 192, "features_per_class": 30, "probe_epochs": 10,
             "calibration_strengths": [0.25], "drift_samples": 64}


def test_ground_truth_sd_world_calibrated_difflens_reaches_uniform_and_random_latents_do_not(sd):
    """Colour-less prompts give ~79% red. DiffLens, calibrated to a uniform target on held-out seeds, lands within
    5 points of 25% per colour on test seeds, judged alike by the pixel rule and the judge, and its FID (judge
    features, against the uniform test split) stays below the random-latent control's at the same strength, which
    does not move the distribution at all. The SAE's reconstruction in place of h at every step keeps the colour
    of at least 80% of the images and moves pixels by less than 0.06 on average (measured: 87.5%, 0.053)."""
    from vismech.datasets.bias import measure_attribute
    from vismech.datasets.world import WorldItems
    from vismech.methods.difflens import tv
    from vismech.zoo import judge_world

    data = world_fit_data(conditional=True, fit_ids=(0, 192), calibration_ids=(100_000, 100_096))
    method = DiffLens(GT_CONFIG, seed=0)
    found = method.fit(sd, data)
    drift = found.meta["sae"]["drift"]
    assert drift["attribute_agreement"] >= 0.8 and drift["mean_abs_pixel"] <= 0.06, drift
    ids = list(range(200_000, 200_192))
    judge, real = judge_world.load(), WorldItems("test", limit=len(ids)).tensors()["image"]
    target = torch.tensor([*data.target, 0.0], dtype=torch.float64)

    def measured(edit):
        images = sample(sd, ids, data.seeds(ids), prompts=data.prompts_for(ids), edit=edit,
                        sampling=data.sampling).images
        pixel, judged = measure_attribute(images, data.classes), measure_attribute(images, data.classes, "judge")
        return shares(pixel, 4), judge.fid(real, images), float((pixel == judged).double().mean())

    base, base_fid, _ = measured(None)
    strength = found.meta["calibration"]["strength"]
    edited, fid, agreement = measured(method.edit(sd, found, strength))
    control = RandomLatents({**GT_CONFIG, "calibration_strengths": [], "drift_samples": 0}, seed=0)
    random_shares, random_fid, _ = measured(control.edit(sd, control.fit(sd, data), strength))
    assert base[0] > 0.7  # the bias
    assert float((edited - target).abs().max()) <= 0.05, edited
    assert agreement >= 0.9
    assert tv(random_shares, target) > 0.4  # the control does not shift the distribution ...
    assert fid < random_fid and fid < base_fid + 5, (fid, random_fid, base_fid)  # ... and costs more FID

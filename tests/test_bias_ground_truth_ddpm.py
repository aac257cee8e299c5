"""Ground truth of the bias task on the unconditional mini DDPM (ddpm_world): its generations keep the training
skew, and DiffLens calibrated to a uniform target lands within 5 points of it, where the random-latent control of
the same SAE at the same strength neither reaches it nor keeps FID as low. The configuration is
`experiment=mini_bias_ddpm`'s, calibrated at its chosen strength only. A file of its own so that a parallel run
schedules it beside the sd_world ground truth, not after it."""
from __future__ import annotations

import torch

from vismech.datasets.bias import measure_attribute, shares, world_fit_data
from vismech.methods.bias_baselines import RandomLatents
from vismech.methods.difflens import DiffLens
from vismech.methods.edited_sampler import sample

GT_CONFIG = {"sae_expansion": 4, "sae_k": 32, "sae_steps": 3000, "mode": "add", "temperature": 1000.0,
             "ig_last_steps": 24, "ig_samples": 192, "features_per_class": 60, "probe_epochs": 10,
             "calibration_strengths": [2.0], "drift_samples": 0}


def test_ground_truth_ddpm_world_calibrated_difflens_reaches_uniform_and_random_latents_do_not():
    """Measured on 192 test seeds: unedited red 0.729; DiffLens at 2.0 0.266 / 0.229 / 0.250 / 0.245 (largest
    error 2.1 points), FID 120 against the train split; random latents at 2.0 leave blue at 0.02, FID 149."""
    from vismech.datasets.world import WorldItems
    from vismech.zoo import ddpm_world, judge_world

    subject = ddpm_world.subject()
    data = world_fit_data(conditional=False, fit_ids=(0, 192), calibration_ids=(100_000, 100_096))
    method = DiffLens(GT_CONFIG, seed=0)
    found = method.fit(subject, data)
    ids = list(range(200_000, 200_192))
    judge, real = judge_world.load(), WorldItems("train", limit=2000).tensors()["image"]
    target = torch.tensor([*data.target, 0.0], dtype=torch.float64)

    def measured(edit):
        images = sample(subject, ids, data.seeds(ids), edit=edit, sampling=data.sampling).images
        pixel, judged = measure_attribute(images, data.classes), measure_attribute(images, data.classes, "judge")
        return shares(pixel, 4), judge.fid(real, images), float((pixel == judged).double().mean())

    base, base_fid, _ = measured(None)
    strength = found.meta["calibration"]["strength"]
    edited, fid, agreement = measured(method.edit(subject, found, strength))
    control = RandomLatents({**GT_CONFIG, "calibration_strengths": []}, seed=0)
    random_shares, random_fid, _ = measured(control.edit(subject, control.fit(subject, data), strength))
    assert base[0] > 0.65  # the training skew (0.7 red)
    assert float((edited - target).abs().max()) <= 0.05, edited
    assert agreement >= 0.8
    assert float((random_shares - target).abs().max()) > 0.15, random_shares
    assert fid < random_fid, (fid, random_fid, base_fid)

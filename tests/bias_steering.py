"""The bias ground truths' shared measurement: DiffLens calibrated to the fit data's target against the random-latent
control of the same SAE at the same strength, on test seeds 200,000-200,191."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vismech.datasets.bias import BiasFitData, measure_attribute, shares
from vismech.methods.bias_baselines import RandomLatents
from vismech.methods.difflens import DiffLens
from vismech.sampling import sample

TEST_IDS = list(range(200_000, 200_192))


@dataclass
class Steering:
    found: object             # DiffLens's finding (its meta holds the SAE drift and the calibration)
    target: torch.Tensor      # the target shares, then 0 for unlabelled
    base: torch.Tensor        # shares (pixel rule) unedited, DiffLens at the calibrated strength, random latents
    edited: torch.Tensor
    random: torch.Tensor
    base_fid: float
    fid: float
    random_fid: float
    agreement: float          # pixel rule vs judge on DiffLens's images


def calibrated_vs_random(subject, data: BiasFitData, config: dict, real: torch.Tensor) -> Steering:
    """`real`: the FID reference images (judge_world features)."""
    from vismech.zoo import judge_world

    judge = judge_world.load()
    method = DiffLens(config, seed=0)
    found = method.fit(subject, data)

    def measured(edit):
        images = sample(subject, TEST_IDS, data.seeds(TEST_IDS), prompts=data.prompts_for(TEST_IDS), edit=edit,
                        sampling=data.sampling).images
        pixel, judged = measure_attribute(images, data.classes), measure_attribute(images, data.classes, "judge",
                                                                             lambda x: judge.probs(x)["colour"])
        return shares(pixel, 4), judge.fid(real, images), float((pixel == judged).double().mean())

    base, base_fid, _ = measured(None)
    strength = found.meta["calibration"]["strength"]
    edited, fid, agreement = measured(method.edit(subject, found, strength))
    control = RandomLatents({**config, "calibration_strengths": [], "drift_samples": 0}, seed=0)
    random_shares, random_fid, _ = measured(control.edit(subject, control.fit(subject, data), strength))
    return Steering(found, torch.tensor([*data.target, 0.0], dtype=torch.float64), base, edited, random_shares,
                    base_fid, fid, random_fid, agreement)

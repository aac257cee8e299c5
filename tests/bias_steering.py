"""The bias ground truths' shared measurement: DiffLens calibrated to the fit data's target against the random-latent
control of the same SAE at the same strength, on test seeds 200,000-200,191.

Another CPU's float path changes the images a little, so a ground-truth claim is a claim about a sample of 192:
each threshold is a number of binomial standard errors of the shares it compares (`share_se`), never a
difference this machine happened to measure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vismech.datasets.bias import BiasFitData, measure_attribute, shares
from vismech.methods.bias_baselines import RandomLatents
from vismech.methods.difflens import DiffLens
from vismech.methods.edited_sampler import sample

TEST_IDS = list(range(200_000, 200_192))


def share_se(p: float, n: int = len(TEST_IDS)) -> float:
    """Binomial standard error of a colour share p measured on n images (at least that of p = 1/n, so a share of 0
    still has one)."""
    p = min(max(p, 1 / n), 1 - 1 / n)
    return (p * (1 - p) / n) ** 0.5


def largest_gap(shares: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(the largest |share - target| over the colours, that share's standard error)."""
    gaps = (shares - target)[:-1].abs()
    c = int(gaps.argmax())
    return float(gaps[c]), share_se(float(shares[c]))


def nearer_by(edited: torch.Tensor, other: torch.Tensor, target: torch.Tensor) -> float:
    """How many standard errors of the difference the edited shares' largest gap to the target lies below
    `other`'s."""
    (ge, se_e), (go, se_o) = largest_gap(edited, target), largest_gap(other, target)
    return (go - ge) / (se_e ** 2 + se_o ** 2) ** 0.5


@dataclass
class Steering:
    found: object             # DiffLens's finding (its meta holds the SAE drift and the calibration)
    target: torch.Tensor      # the target shares, then 0 for unlabelled
    base: torch.Tensor        # shares (pixel rule) unedited, DiffLens at the calibrated strength, random latents
    edited: torch.Tensor
    random: torch.Tensor
    base_kid: dict            # KID summaries (vismech's KID metric, judge_world features, against `real`)
    kid: dict
    random_kid: dict
    agreement: float          # pixel rule vs judge on DiffLens's images

    def kid_margin(self) -> float:
        """Standard errors (paired, jackknife pseudo-values) by which the random control's KID exceeds DiffLens's."""
        diff = np.subtract(self.random_kid["pseudo_values"], self.kid["pseudo_values"])
        return float(diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size)))


def calibrated_vs_random(subject, data: BiasFitData, config: dict, real: torch.Tensor) -> Steering:
    """`real`: the KID reference images (judge_world features)."""
    from vismech.metrics.generation import KID
    from vismech.zoo import judge_world

    judge = judge_world.load()
    reference = judge.features(real)
    method = DiffLens(config, seed=0)
    found = method.fit(subject, data)

    def measured(edit):
        images = sample(subject, TEST_IDS, data.seeds(TEST_IDS), prompts=data.prompts_for(TEST_IDS), edit=edit,
                        sampling=data.sampling).images
        pixel, judged = measure_attribute(images, data.classes), measure_attribute(images, data.classes, "judge")
        kid = KID(reference=reference)
        kid.update(torch.tensor(TEST_IDS), judge.features(images))
        return shares(pixel, 4), kid.summarize(), float((pixel == judged).double().mean())

    base, base_kid, _ = measured(None)
    strength = found.meta["calibration"]["strength"]
    edited, kid, agreement = measured(method.edit(subject, found, strength))
    control = RandomLatents({**config, "calibration_strengths": [], "drift_samples": 0}, seed=0)
    random_shares, random_kid, _ = measured(control.edit(subject, control.fit(subject, data), strength))
    return Steering(found, torch.tensor([*data.target, 0.0], dtype=torch.float64), base, edited, random_shares,
                    base_kid, kid, random_kid, agreement)

"""Cost of CAD-Erase scoring: vismech's single trajectory against the reference's restarts, side by side.

    .venv/bin/python scripts/cost_cad.py [--tiny] [--steps 50] [--seeds 1] [--pairing reference] [--concept "a sneaker"]

Counts UNet forward and backward passes (they do not drift with the machine) and wall time, on the same model,
prompt, seeds and DDIM schedule, and checks that both procedures give the same scores. By default it runs on the
shipped mini model sd_world; `--tiny` uses a randomly initialised pipeline of the same classes. With the reference
pairing the restarts are exactly the reference's calls (1 + 2 + ... + T CFG steps, then T gradient passes); the
last line shows vismech's default (corrected pairing, where the gradient forward is also the CFG forward).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from vismech.datasets.concepts import ConceptData
from vismech.methods.cad import CADErase
from vismech.methods.findings import SCORE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny random subject is a test fixture
from tiny_sd import tiny_subject  # noqa: E402


def measure(subject, data: ConceptData, procedure: str, pairing: str, fuse: bool = True) -> tuple[dict, dict]:
    method = CADErase({"procedure": procedure, "pairing": pairing, "fuse_cfg": fuse})
    start = time.perf_counter()
    finding = method.fit(subject, data)
    seconds = time.perf_counter() - start
    meta = finding.meta
    row = {"UNet forward passes": meta["forward_passes"], "UNet forward rows": meta["forward_rows"],
           "UNet backward passes": meta["backward_passes"],
           "UNet evaluations (fwd + bwd)": meta["forward_passes"] + meta["backward_passes"],
           "forward-equivalents (fwd + 2 bwd)": meta["forward_equivalents"], "wall s": seconds}
    return row, {name: t for name, t in finding.tensors.items() if name.startswith(SCORE)}


def largest_relative_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a random tiny pipeline instead of sd_world")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps = attribution points (default 50)")
    parser.add_argument("--seeds", type=int, default=1, help="trajectories, sampled as one batch (default 1)")
    parser.add_argument("--pairing", choices=("reference", "corrected"), default="reference",
                        help="latent/timestep pairing of both procedures (default: the reference's)")
    parser.add_argument("--concept", default="a sneaker")
    parser.add_argument("--guidance", type=float, default=3.0, help="CFG scale (the reference's 3)")
    opts = parser.parse_args()
    if opts.tiny:
        subject = tiny_subject(0)
    else:
        from vismech.zoo import sd_world

        subject = sd_world.subject()
    data = ConceptData(opts.concept, seeds=tuple(range(opts.seeds)), steps=opts.steps, guidance_scale=opts.guidance)
    ours, ours_scores = measure(subject, data, "single", opts.pairing)
    ref, ref_scores = measure(subject, data, "reference", opts.pairing)
    print(f"CAD-Erase scores of '{opts.concept}', {subject.id}, DDIM {opts.steps} steps (eta 0), "
          f"CFG {opts.guidance:g}, {opts.seeds} trajectory(ies), pairing '{opts.pairing}', "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'':36}{'single':>12}{'restarts':>12}{'ratio':>8}")
    for key in ours:
        ratio = ref[key] / ours[key] if ours[key] else float("nan")
        print(f"{key:36}{ours[key]:>12.2f}{ref[key]:>12.2f}{ratio:>8.2f}")
    difference = largest_relative_difference(ours_scores, ref_scores)
    same = all(torch.equal(ours_scores[k], ref_scores[k]) for k in ours_scores)
    print(f"same scores: {'bit for bit' if same else f'largest difference {difference:.2e} of the largest |score|'}")
    default, _ = measure(subject, data, "single", "corrected")
    print(f"vismech default (corrected pairing, fused CFG): {default['UNet forward passes']} forward + "
          f"{default['UNet backward passes']} backward passes, {default['wall s']:.2f} s")


if __name__ == "__main__":
    main()

"""Cost of DiffLens's edited sampling against plain sampling, side by side, on the mini models.

    .venv/bin/python scripts/cost_difflens.py [--model ddpm_world|sd_world] [--images 32] [--steps 50]

Plain: DDIM with per-image seeds. Edited: DiffLens's two-pass (Asyrp) step with an SAE-latent edit on every
sample at the edited steps, computed two ways: vismech's split pass (down path and mid block once, the part after
the mid block on [all rows, edited rows]) and the reference's naive pass (two full UNet calls per step). Counts UNet
rows run in full and decoder-only rows per image (they do not drift with the machine), their price in full UNet
passes from the decoder's FLOP share, and wall time per image; checks that split and naive give the same images.
The SAE (d_in = h's channels, x8 latents, k 8) and its 30 latents per class are random: the cost does not depend on
what they are.
"""
from __future__ import annotations

import argparse

import torch

from vismech.datasets.bias import Sampling, world_fit_data
from vismech.methods.difflens import DiffLens, LatentEdit, fixed_class
from vismech.sampling import decoder_fraction, sample
from vismech.methods.sae import TopKSAE
from vismech.zoo import ddpm_world, sd_world

MODELS = {"ddpm_world": ddpm_world.subject, "sd_world": sd_world.subject}


def random_edit(subject, classes: int = 4, features: int = 30) -> LatentEdit:
    gen = torch.Generator().manual_seed(0)
    width = subject.site("h").width
    sae = TopKSAE(width, 8 * width, 8).init_from(torch.randn(64, width, generator=gen), gen)
    chosen = torch.stack([torch.randperm(sae.n_latents, generator=gen)[:features] for _ in range(classes)])
    method = DiffLens({"mode": "add"})
    return LatentEdit(subject, sae, chosen, 2.0, "add", "position", fixed_class(1), method.window(subject))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="ddpm_world")
    parser.add_argument("--images", type=int, default=32, help="images, sampled in one batch (default 32)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the task's, 50 / 25)")
    opts = parser.parse_args()
    subject = MODELS[opts.model]()
    data = world_fit_data(conditional=subject.conditional)
    sampling = Sampling(steps=opts.steps or data.sampling.steps, eta=data.sampling.eta,
                        guidance_scale=data.sampling.guidance_scale, batch_size=opts.images)
    ids = list(range(200_000, 200_000 + opts.images))
    prompts = data.prompts_for(ids)
    seeds = data.seeds(ids)
    fraction = decoder_fraction(subject)
    sample(subject, ids[:2], seeds[:2], prompts=prompts and prompts[:2], sampling=sampling)  # warm-up
    runs = {"plain": sample(subject, ids, seeds, prompts=prompts, sampling=sampling),
            "edited, split (vismech)": sample(subject, ids, seeds, prompts=prompts, edit=random_edit(subject),
                                              sampling=sampling),
            "edited, naive (reference)": sample(subject, ids, seeds, prompts=prompts, edit=random_edit(subject),
                                                sampling=sampling, two_pass="naive")}
    costs = {name: run.cost(fraction) for name, run in runs.items()}
    plain = costs["plain"]
    print(f"{opts.model}: {opts.images} images in one batch, DDIM {sampling.steps} steps, eta {sampling.eta}"
          + (f", guidance {sampling.guidance_scale}" if subject.conditional else "")
          + f"; decoder share of a UNet pass: {fraction:.3f} of FLOPs; {torch.get_num_threads()} CPU threads")
    print(f"{'per image':28}" + "".join(f"{name:>28}" for name in costs))
    for key in plain:
        print(f"{key:28}" + "".join(f"{c[key]:>19.3f} ({c[key] / plain[key] if plain[key] else 0:4.2f}x)"
                                    for c in costs.values()))
    diff = (runs["edited, split (vismech)"].images - runs["edited, naive (reference)"].images).abs().max()
    moved = (runs["edited, split (vismech)"].images - runs["plain"].images).abs().max()
    print(f"split vs naive images: max |difference| {float(diff):.2e} (the edit itself moves pixels by up to "
          f"{float(moved):.2f})")


if __name__ == "__main__":
    main()

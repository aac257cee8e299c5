"""The suite's own overhead: plain sampling through vismech against diffusers' own pipeline call, and the hooks of a
no-op edit, measured side by side in one run.

    .venv/bin/python scripts/cost_overhead.py [--images 8] [--repeats 7] [--threads 1] [--ddpm-steps 50] [--sd-steps 25]

Sampling: on ddpm_world (DDIMPipeline, DDIM 50, eta 1) and sd_world (StableDiffusionPipeline, DDIM 25, eta 0,
guidance 4, the colour-less garment prompts), both built from the same zoo components, with the same scheduler
config, steps, guidance and per-image seeds (one CPU generator per image, as the suite seeds them). Reported: the
largest pixel difference between the two image sets, the UNet passes and rows of each (a forward hook counts them in
a separate, untimed run), and the median wall time of each (repetitions interleaved, so a slower moment of a shared
machine hits both alike). Hooks: the same sampling with a no-op `HookEdit` on `h` (the site every h-space edit
hooks), and vit_world's forward with a no-op hook on every FFN site (what a path edit hooks), against none.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from vismech.datasets.bias import world_prompts
from vismech.datasets.world import WorldItems
from vismech.edit import HookEdit
from vismech.sampling import Sampling, sample
from vismech.subject import DiffusionSubject
from vismech.zoo import ddpm_world, sd_world, vit_world


def diffusers_call(subject: DiffusionSubject, seeds: list[int], prompts: list[str] | None,
                   sampling: Sampling) -> Callable[[], torch.Tensor]:
    """diffusers' own pipeline on the subject's UNet (and VAE and text encoder), DDIM with the subject's schedule."""
    from diffusers import DDIMPipeline, DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler.from_config(subject.scheduler.config)
    if prompts is None:
        pipe = DDIMPipeline(unet=subject.unet, scheduler=scheduler)
    else:
        p = subject.pipeline
        pipe = StableDiffusionPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=p.unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def run() -> torch.Tensor:
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        if prompts is None:
            out = pipe(batch_size=len(seeds), generator=generators, eta=sampling.eta,
                       num_inference_steps=sampling.steps, output_type="np").images
        else:
            out = pipe(prompts, height=subject.image_size, width=subject.image_size, generator=generators,
                       eta=sampling.eta, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance_scale,
                       output_type="np").images
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    return run


def counted(unet: torch.nn.Module, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int, int]:
    """Run once with a forward hook on the UNet: (images, UNet calls, UNet rows)."""
    calls, rows = [0], [0]

    def count(module, args, kwargs, output):
        calls[0] += 1
        rows[0] += (args[0] if args else kwargs["sample"]).shape[0]

    handle = unet.register_forward_hook(count, with_kwargs=True)
    try:
        images = run()
    finally:
        handle.remove()
    return images, calls[0], rows[0]


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns (in rotating order) in every repetition."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@torch.no_grad()
def sampling_rows(name: str, subject: DiffusionSubject, sampling: Sampling, images: int, repeats: int) -> list[str]:
    seeds = list(range(1000, 1000 + images))
    ids = list(range(images))
    prompts = None
    if subject.conditional:
        plain, _ = world_prompts()
        prompts = [plain[i % len(plain)] for i in ids]
    noop = HookEdit(subject, {"h": lambda output: None})

    def suite() -> torch.Tensor:
        return sample(subject, ids, seeds, prompts=prompts, sampling=sampling).images

    def suite_hooked() -> torch.Tensor:
        return sample(subject, ids, seeds, prompts=prompts, sampling=sampling, edit=noop).images

    theirs = diffusers_call(subject, seeds, prompts, sampling)
    ours, our_calls, our_rows = counted(subject.unet, suite)
    hooked = suite_hooked()
    ref, ref_calls, ref_rows = counted(subject.unet, theirs)
    seconds = interleaved({"suite": suite, "diffusers": theirs, "hooked": suite_hooked}, repeats)
    setting = (f"DDIM {sampling.steps}, eta {sampling.eta:g}"
               + (f", guidance {sampling.guidance_scale:g}" if subject.conditional else ""))
    return [
        f"| {name} ({setting}) | max pixel difference suite vs diffusers | {(ours - ref).abs().max().item():.2e} |",
        f"| | UNet calls / rows: suite, diffusers | {our_calls} / {our_rows}, {ref_calls} / {ref_rows} |",
        f"| | wall time per batch of {images}: suite, diffusers | {seconds['suite']:.3f} s, "
        f"{seconds['diffusers']:.3f} s |",
        f"| | wall-time ratio suite / diffusers (goal <= 1.05) | {seconds['suite'] / seconds['diffusers']:.3f} |",
        f"| | no-op hook on `h`: overhead (goal <= 3 %), same images | "
        f"{100 * (seconds['hooked'] / seconds['suite'] - 1):+.1f} %, {torch.equal(hooked, ours)} |",
    ]


@torch.no_grad()
def vit_rows(images: int, repeats: int) -> list[str]:
    subject = vit_world.load()
    batch = WorldItems("test", limit=images).tensors()["image"]
    sites = [s.name for s in subject.sites_of("ffn.") if s.kind == "activation"]
    noop = HookEdit(subject, {site: (lambda output: None) for site in sites})

    def plain() -> torch.Tensor:
        return subject.logits(batch)

    def hooked() -> torch.Tensor:
        with noop:
            return subject.logits(batch)

    same = torch.equal(plain(), hooked())
    seconds = interleaved({"plain": plain, "hooked": hooked}, repeats * 40)  # one forward is short: more turns
    return [f"| vit_world forward, batch of {images} | no-op hooks on {len(sites)} FFN sites: overhead "
            f"(goal <= 3 %), same logits | {100 * (seconds['hooked'] / seconds['plain'] - 1):+.1f} %, {same} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ddpm-steps", type=int, default=50, help="ddpm_world's DDIM steps (its task default: 50)")
    parser.add_argument("--sd-steps", type=int, default=25, help="sd_world's DDIM steps (its task default: 25)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the same for both sides; one thread keeps a shared machine's noise down
    print("| subject | measure | value |\n|---|---|---|")
    for row in (sampling_rows("ddpm_world", ddpm_world.subject(), Sampling(steps=args.ddpm_steps, eta=1.0), args.images,
                              args.repeats)
                + sampling_rows("sd_world", sd_world.subject(), Sampling(steps=args.sd_steps, eta=0.0, guidance_scale=4.0),
                                args.images, args.repeats)
                + vit_rows(256, args.repeats)):
        print(row, flush=True)


if __name__ == "__main__":
    main()

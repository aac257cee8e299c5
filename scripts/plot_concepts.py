"""Every garment concept of sd_world unedited, erased by CAD-Erase and amplified by CAD-Amplify, on shared seeds.

    .venv/bin/python scripts/plot_concepts.py [--seeds 3] [--erase 0.04] [--amplify 0.01] [--attack-steps 30]
                                              [--out docs/img/concepts.png]

For each class: CAD-Erase fitted on 16 DDIM trajectories of its prompt, CAD-Amplify on 64 of its train images
(the concept task's mini settings); one row per class, its prompt on `--seeds` seeds in three column groups. The
judge's accuracy on each group is printed, so the picture's effect can be read in numbers too. With
`--attack-steps` > 0 a fourth group shows the erased model under the token attack (vismech.methods.attacks: 3
tokens in front of the prompt, searched against the erased model towards the unedited image of the same seed).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vismech.datasets.concepts import world_concept
from vismech.datasets.world import CLASSES
from vismech.methods.attacks import TokenAttackConfig, token_attack
from vismech.methods.cad import CADAmplify, CADErase
from vismech.plots import image_grid, save_figure
from vismech.zoo import judge_world, sd_world
from vismech.datasets.world import describe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--erase", type=float, default=0.04, help="CAD-Erase ratio (default 0.04)")
    parser.add_argument("--amplify", type=float, default=0.01, help="CAD-Amplify ratio (default 0.01)")
    parser.add_argument("--attack-steps", type=int, default=30, help="token attack steps on the erased model; 0: none")
    parser.add_argument("--out", type=Path, default=Path("docs/img/concepts.png"))
    args = parser.parse_args()
    subject, judge = sd_world.subject(), judge_world.load()
    seeds = list(range(100, 100 + args.seeds))
    groups = {"unedited": [], f"erased {args.erase:g}": [], f"amplified {args.amplify:g}": []}
    if args.attack_steps:
        groups[f"erased + attack {args.attack_steps}"] = []
    for label, name in enumerate(CLASSES):
        prompts = [describe(name)] * len(seeds)
        run = lambda: sd_world.generate(subject.pipeline, prompts, seeds)  # noqa: E731
        erase, amplify = CADErase(), CADAmplify({"batch_size": 64})
        erased_finding = erase.fit(subject, world_concept(name, seeds=tuple(range(16)), steps=25))
        amplified_finding = amplify.fit(subject, world_concept(name, images=64, steps=50))
        images = [run()]
        with erase.edit(subject, erased_finding, args.erase):
            images.append(run())
        with amplify.edit(subject, amplified_finding, args.amplify):
            images.append(run())
        if args.attack_steps:
            with erase.edit(subject, erased_finding, args.erase):
                attacked = token_attack(subject, prompts, images[0], seeds, TokenAttackConfig(steps=args.attack_steps))
                images.append(sd_world.generate(subject.pipeline, [a.prompt for a in attacked], seeds))
        scores = [float((judge.probs(x)["label"].argmax(-1) == label).double().mean()) for x in images]
        print(f"{name:12s} judge accuracy  " + "  ".join(f"{g.split()[0] if k < 3 else 'attacked'} {v:.2f}"
                                                          for k, (g, v) in enumerate(zip(groups, scores))))
        for group, x in zip(groups.values(), images):
            group.append(x)
    columns = [(f"{group} {k + 1}", torch.stack([row[k] for row in rows]))
               for group, rows in groups.items() for k in range(len(seeds))]
    figure = image_grid(columns, [describe(c) for c in CLASSES],
                        f"sd_world: each prompt unedited, CAD-Erase and CAD-Amplify of its own class"
                        + (", CAD-Erase under the token attack" if args.attack_steps else "") + f", seeds {seeds}")
    save_figure(figure, args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

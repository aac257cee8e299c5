"""Measure which paraphrases the unedited sd_world renders as their class, and keep those it does.

For every candidate of `vismech.datasets.paraphrases.CANDIDATES`: `--seeds` images on the concept task's sampler
(DDIM 15 steps, eta 0, guidance 4), judged top-1 by judge_world; a candidate is kept when at least `--keep` of its
images are judged its class. Writes vismech/datasets/data/paraphrases_sd_world.json (atomically) with every
candidate's accuracy, the kept ones per class and how many remain.

    .venv/bin/python scripts/measure_paraphrases.py            # ~1 min on 2 CPU cores
"""
from __future__ import annotations

import argparse

import torch

from vismech.metrics.judges.world import world_judges
from vismech.datasets.bias import Sampling
from vismech.datasets.paraphrases import CANDIDATES, KEPT_FILE
from vismech.datasets.world import CLASSES
from vismech.io import atomic_write_json
from vismech.methods.attacks import render_accuracy
from vismech.seeding import item_seed
from vismech.zoo import sd_world

SAMPLING = Sampling(steps=15, eta=0.0, guidance_scale=4.0, batch_size=80)  # configs/task/concept.yaml's sampler
SEED_BASE = 19_000  # seeds item_seed(SEED_BASE, k): disjoint from the task's (run seed 0) and from the test's


def measure(seeds: int, keep: float) -> dict:
    torch.set_grad_enabled(False)
    subject, judges = sd_world.subject(), world_judges()
    prompts = [(c, p) for c in CLASSES for p in CANDIDATES[c]]
    accuracy = render_accuracy(subject, [p for _, p in prompts], [CLASSES.index(c) for c, _ in prompts],
                               [item_seed(SEED_BASE, k) for k in range(seeds)], SAMPLING, judges.classify)
    rows = {c: [] for c in CLASSES}
    for (c, p), a in zip(prompts, accuracy.tolist()):
        rows[c].append({"prompt": p, "accuracy": round(a, 4), "hits": round(a * seeds)})
    kept = {c: [r for r in rows[c] if r["accuracy"] >= keep] for c in CLASSES}
    return {"subject": "sd_world", "weights_digest": subject.weights_digest,
            "judge": judges.fingerprints["classifier"],
            "sampling": {"sampler": "ddim", "steps": SAMPLING.steps, "eta": SAMPLING.eta,
                         "guidance": SAMPLING.guidance_scale},
            "seeds": seeds, "seed_scheme": f"item_seed({SEED_BASE}, k), k < {seeds}", "keep_at_least": keep,
            "kept_counts": {c: len(kept[c]) for c in CLASSES}, "kept": kept, "candidates": rows,
            "command": "scripts/measure_paraphrases.py" + f" --seeds {seeds} --keep {keep}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--keep", type=float, default=0.5)
    args = parser.parse_args()
    result = measure(args.seeds, args.keep)
    atomic_write_json(KEPT_FILE, result)
    print({c: n for c, n in result["kept_counts"].items()})


if __name__ == "__main__":
    main()

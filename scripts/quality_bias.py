"""How far each generative-quality metric sits from its truth at the suite's sample sizes, on the mini world.

"Generated" images are real world test images outside the reference (test[:2000], the bias task's KID reference):
the same distribution as the reference, so the population FID, KID and per-class KID are 0 and any mean above 0
is the estimator's bias at that n. Precision's truth, given the reference, is its mean over all 8,000 other test
images; recall has no n-free truth (its k-NN manifold shrinks with n): its mean at each n is shown.
Each cell is the mean over REPS disjoint draws of n images (its standard error in brackets), in judge_world's
192-d features. `.venv/bin/python scripts/quality_bias.py [--reps 20]` prints the Markdown table in the README.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from vismech.metrics.generation import FID, KID, KIDPerClass, Precision, Recall
from vismech.metrics.judges.world import world_colours, world_features

REFERENCE = 2000
SIZES = (64, 192, 1000)


def _summary(metric, ids, features, labels=None) -> dict:
    metric.reset()
    metric.update(ids, features) if labels is None else metric.update(ids, features, labels)
    return metric.summarize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=8)
    reps = parser.parse_args().reps
    pool = world_features("test", 10_000).double()
    colours = world_colours("test", 10_000)
    reference, others = pool[:REFERENCE], pool[REFERENCE:]
    metrics = {"fid": FID(reference=reference), "kid": KID(reference=reference),
               "kid_per_class": KIDPerClass(reference=reference, reference_labels=colours[:REFERENCE]),
               "precision": Precision(reference=reference), "recall": Recall(reference=reference)}
    precision_truth = float(_summary(metrics["precision"], torch.arange(len(others)), others)["value"])
    rows: dict[str, dict[int, list[float]]] = {name: {n: [] for n in SIZES} for name in ("fid (plug-in)", *metrics)}
    rng = np.random.default_rng(0)
    for n in SIZES:
        for _ in range(reps if n * reps <= len(others) else len(others) // n):
            pick = torch.from_numpy(rng.choice(len(others), size=n, replace=False))
            x, ids, labels = others[pick], torch.arange(n), colours[REFERENCE:][pick]
            for name, metric in metrics.items():
                s = _summary(metric, ids, x, labels if name == "kid_per_class" else None)
                rows[name][n].append(s["value"])
                if name == "fid":
                    rows["fid (plug-in)"][n].append(s["plugin_value"])
    print(f"| metric (truth) | " + " | ".join(f"n = {n}" for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    truths = {"precision": f"{precision_truth:.3f}", "recall": "none: a function of n"}
    for name, by_n in rows.items():
        cells = []
        for n in SIZES:
            v = np.asarray(by_n[n])
            cells.append(f"{v.mean():.4g} ({v.std(ddof=1) / np.sqrt(len(v)):.2g})" if len(v) > 1 else f"{v.mean():.4g}")
        print(f"| {name} ({truths.get(name, '0')}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Coverage of the board's nominal 95 % intervals and the tie test's false-difference rate, by simulation against a
known truth (the cases of tests/test_coverage.py, which asserts 0.90-0.98 and 0.02-0.09; recall at least 0.90).
Per-class KID's coverage (two class mixes) is test_per_class_kid_interval_coverage_under_any_class_mix.
`.venv/bin/python scripts/coverage_table.py [--reps 200]` prints the Markdown table in the README."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_coverage as sim  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=sim.REPS)
    sim.REPS = parser.parse_args().reps
    rows = []
    for case, (draw, truth) in sorted(sim.MEANS.items()):
        rows.append((f"mean of {case}", "Wilson" if "bernoulli" in case else "Student-t",
                     [sim._coverage(draw, sim._Mean(), truth, n, seed=n) for n in sim.SIZES]))
    for case, p in sorted(sim.SHARES.items()):
        truth = float(sim.np.linalg.norm(sim.np.subtract(p, sim.TARGET)))
        rows.append((f"FD of 4 shares, true {case}", "score (FD^2 U-statistic)",
                     [sim._coverage(sim._one_hot(p), sim.FairnessDiscrepancy(target=sim.TARGET), truth, n, seed=n + 1)
                      for n in sim.SIZES]))
    draw, metric, truth = sim._gaussian_world()
    rows.append((f"FID, Gaussian d={sim.D}, true {truth:.3f}", "jackknife-t",
                 [sim._coverage(draw, metric, truth, n, seed=n + 2) for n in sim.SIZES]))
    draw, metric, truth = sim._kid_world()
    rows.append((f"KID, Gaussian d={sim.D}, 400 reference", "jackknife-t",
                 [sim._coverage(draw, metric, truth, n, seed=n + 3) for n in sim.SIZES]))
    draw, precision, recall = sim._manifold_world()
    truth = sim.precision_truth(draw, precision)
    rows.append((f"precision, Gaussian d={sim.D}, 500 reference", "Wilson",
                 [sim._coverage(draw, precision, truth, n, seed=n + 4) for n in sim.SIZES]))
    recall_cov = []
    for n in sim.SIZES:
        rng = sim.np.random.default_rng(n + 6)
        truth = float(sim.np.mean([recall.statistic(draw(rng, n)) for _ in range(400)]))
        recall_cov.append(sim._coverage(draw, recall, truth, n, seed=n + 5))
    rows.append((f"recall, Gaussian d={sim.D}, 500 reference (truth: its mean at n)", "jackknife SE around the "
                 "plug-in (conservative)", recall_cov))
    print(f"| case ({sim.REPS} replications) | interval | " + " | ".join(f"n = {n}" for n in sim.SIZES) + " |")
    print("|---|---|" + "---|" * len(sim.SIZES))
    for case, method, cov in rows:
        print(f"| {case} | {method} | " + " | ".join(f"{c:.3f}" for c in cov) + " |")
    null = [sim._false_differences(sim._correlated_shares, sim.FairnessDiscrepancy(target=(0.4, 0.2, 0.2, 0.2)),
                                   n, n, "pseudo_values") for n in (64, 192)]
    print(f"\nTie test under a true null (FD, paired pseudo-values): false-difference rate "
          f"{null[0]:.3f} at n = 64, {null[1]:.3f} at n = 192")


if __name__ == "__main__":
    main()

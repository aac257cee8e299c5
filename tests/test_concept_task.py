"""The concept task: cached, shared unedited generations, the headline rule, goals, FID by hand, and the mini
model's ground truth (CAD-Erase removes the target and beats a random ablation of the same count)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vismech.benchmarks.concept import ConceptBenchmark, ConceptConfig, concept_goal
from vismech.errors import VismechError
from vismech.metrics.generation import FID, FairnessDiscrepancy, Gaussian, frechet_distance

FAST = ["model=sd_world", "task=concept", "task.per_class=2", "task.fit.seeds=2", "task.fit.steps=5",
        "task.fit.images=4", "task.sampling.steps=4", "task.judges.reference_count=200"]


def test_concept_runs_share_unedited_images_and_save_their_pictures(workspace):
    from vismech.generations import GenerationCache

    assert workspace.run(*FAST, "method=cad_erase", "task.strengths=[0.0,0.04]") == 0
    cache = GenerationCache(workspace.root / "cache")
    assert cache.stats().images == 2 * 20  # 10 classes x 2 seeds, unedited and at ratio 0.04
    assert workspace.run(*FAST, "method=noop", "task.strengths=[0.0,1.0]") == 0
    assert cache.stats().images == 40  # the no-op's images are the unedited ones: nothing new was generated

    records = {r["method"]["name"]: r for r in workspace.records()}
    noop, cad = records["noop"]["sweep"], records["cad_erase"]["sweep"]
    for name in ("target_accuracy", "target_prob", "other_accuracy", "clip_t"):
        unedited = noop[0]["metrics"][name]["item_values"]
        assert cad[0]["metrics"][name]["item_values"] == unedited == noop[1]["metrics"][name]["item_values"]
    assert cad[0]["metrics"]["fid"]["value"] == noop[1]["metrics"]["fid"]["value"]
    assert cad[1]["metrics"]["clip_t"]["item_values"] != cad[0]["metrics"]["clip_t"]["item_values"]
    assert len(cad[0]["metrics"]["target_accuracy"]["item_ids"]) == 2  # the target's two seeds
    assert len(cad[0]["metrics"]["other_accuracy"]["item_ids"]) == 18
    assert cad[0]["metrics"]["target_accuracy"]["direction"] == "lower"  # erase wants the target down

    run = next((workspace.root / "runs" / "concept" / "cad_erase").iterdir())
    values = json.loads((run / "concept_tradeoff_values.json").read_text())
    assert values["zeroed_weights"][0] == 0 < values["zeroed_weights"][1]
    assert values["target_accuracy"] == [p["metrics"]["target_accuracy"]["value"] for p in cad]
    assert (run / "concept_grid.png").stat().st_size > 0 and (run / "concept_tradeoff.png").is_file()


def test_controls_follow_the_tasks_goal_and_methods_keep_their_own():
    from vismech.methods.cad import CADAmplify, CADErase
    from vismech.methods.concept_baselines import RandomWeights
    from vismech.methods.controls import NoOp

    assert concept_goal(NoOp(), None) == "erase" and concept_goal(NoOp(), "amplify") == "amplify"
    assert concept_goal(RandomWeights(), "amplify") == "amplify"
    assert concept_goal(CADAmplify(), None) == "amplify"
    with pytest.raises(VismechError, match="'cad_erase' can only erase, but task.goal is 'amplify'"):
        concept_goal(CADErase(), "amplify")


@pytest.mark.parametrize("change, match", [
    ({"target": "hat"}, "unknown task.target 'hat'; known classes: t-shirt, trouser"),
    ({"goal": "forget"}, "task.goal must be one of erase, amplify or null, got 'forget'"),
    ({"per_class": 0}, "task.per_class must be >= 1, got 0"),
    ({"prompt": "an image"}, "task.prompt must hold '{}'"),
    ({"fit": {"seed": 3}}, r"unknown task.fit key\(s\) \['seed'\]"),
    ({"sampling": {"steps": 1}}, r"sampling steps must be an integer in \[2, 1000\], got 1"),
    ({"quality_budget": 2.0}, r"task.quality_budget must be in \[0, 1\], got 2.0"),
])
def test_bad_concept_config_names_the_value(change, match):
    with pytest.raises(VismechError, match=match):
        ConceptConfig(name="concept", **change).validate()


def test_fid_metric_equals_torchmetrics_fid_with_fewer_and_more_items_than_features():
    from vismech.datasets.world import WorldItems
    from vismech.zoo import judge_world

    judge = judge_world.load()
    real = WorldItems("test", limit=400).tensors()["image"]
    fake = WorldItems("train", limit=250).tensors()["image"]
    reference = judge.features(real).double()
    for n in (60, 250):  # the n x n and the d x d route of the trace term (d = 192)
        metric = FID(reference=reference)
        metric.update(torch.arange(n), judge.features(fake[:n]))
        summary = metric.summarize()
        # fewer than 5 items a feature dimension: the plug-in, as torchmetrics computes it, and no interval
        assert summary["plugin_value"] == summary["value"] == pytest.approx(judge.fid(real, fake[:n]), rel=1e-4)
        assert summary["ci_low"] is None and "no honest interval" in summary["ci_note"]


def test_frechet_distance_by_hand_on_diagonal_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 2)) * [1.0, 2.0] + [1.0, 0.0]
    b = rng.normal(size=(4000, 2)) * [2.0, 2.0]
    # |mu|^2 = 1; tr C_a + tr C_b - 2 tr sqrt(C_a C_b) = (1 + 4 + 4 + 4) - 2 (2 + 4) = 1; total 2
    assert frechet_distance(a, Gaussian(b)) == pytest.approx(2.0, abs=0.15)
    assert frechet_distance(b, Gaussian(b)) == pytest.approx(0.0, abs=1e-9)


def test_fairness_discrepancy_is_the_l2_distance_of_the_mean_probabilities_to_the_target():
    metric = FairnessDiscrepancy(target=(0.5, 0.5))
    metric.update(torch.tensor([2, 0, 1]), torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.6, 0.4]]))
    summary = metric.summarize()
    assert summary["plugin_value"] == pytest.approx(((0.8 - 0.5) ** 2 * 2) ** 0.5)  # mean (0.8, 0.2)
    # unbiased: rows minus target (.5,-.5), (.3,-.3), (.1,-.1); sum_{i != j} y_i.y_j / 6 = 2 (.15 + .05 + .03) / 6 x 2
    assert summary["value"] == pytest.approx((2 * 2 * (0.15 + 0.05 + 0.03) / 6) ** 0.5)
    assert summary["direction"] == "lower" and summary["n"] == 3

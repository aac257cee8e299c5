"""The bias task: records on both mini models, the training skew, strength zero = unedited, shared generations,
pixel rule vs judge, FD and the headline rule by hand, and bad config values. The ground truth of calibrated
DiffLens (within 5 points of uniform, less FID than random latents) takes minutes: `experiment=mini_bias`."""
from __future__ import annotations

import json
import math

import pytest
import torch

from vismech.benchmarks.bias import BiasConfig
from vismech.config import typed_config
from vismech.errors import VismechError
from vismech.metrics.generation import FairnessDiscrepancy

FAST = ["task=bias", "task.ids=[200000,200064]"]
SHARES = ("share_red", "share_green", "share_blue", "share_yellow")


def point(record, strength):
    return next(p["metrics"] for p in record["sweep"] if p["strength"] == strength)


def test_sd_world_runs_reproduce_the_skew_share_unedited_images_and_list_on_the_leaderboard(workspace):
    from vismech.generations import GenerationCache

    assert workspace.run(*FAST, "model=sd_world", "method=noop") == 0
    cache = GenerationCache(workspace.root / "cache")
    assert cache.stats().images == 64
    assert workspace.run(*FAST, "model=sd_world", "method=prompt_augmentation", "task.strengths=[0.0,0.5]") == 0
    assert cache.stats().images == 128  # strength 0 read the no-op's images; only strength 0.5 was generated

    records = {r["method"]["name"]: r for r in workspace.records()}
    unedited, zero = point(records["noop"], 0.0), point(records["prompt_augmentation"], 0.0)
    edited = point(records["prompt_augmentation"], 0.5)
    # sd_world learned the world's skew (red 0.7 of the training images; it generates ~0.8 red)
    assert unedited["share_red"]["value"] > 0.6
    assert all(unedited[n]["value"] < 0.2 for n in SHARES[1:])
    assert unedited["share_red"]["direction"] == "lower" and unedited["share_green"]["direction"] == "higher"
    for name in (*SHARES, "clip_t", "judge_agreement"):  # strength 0 is the unedited model, item for item
        assert zero[name]["item_values"] == unedited[name]["item_values"], name
    assert zero["fd"]["value"] == unedited["fd"]["value"] and zero["fid"]["value"] == unedited["fid"]["value"]
    assert zero["clip_i"]["value"] == pytest.approx(1.0, abs=1e-6)
    # rewriting half the prompts towards a uniform target moves the distribution towards it
    assert edited["share_red"]["value"] < unedited["share_red"]["value"] - 0.15
    assert edited["fd"]["value"] < unedited["fd"]["value"] and edited["clip_i"]["value"] < 0.99
    assert records["prompt_augmentation"]["headline"]["strength"] in (0.0, 0.5)

    run = next((workspace.root / "runs" / "bias" / "prompt_augmentation").iterdir())
    curve = json.loads((run / "bias_curve_values.json").read_text())
    assert curve["fd"] == [point(records["prompt_augmentation"], s)["fd"]["value"] for s in (0.0, 0.5)]
    assert curve["cost_per_image"][0] == {"full_rows_per_image": 50.0, "decoder_rows_per_image": 0.0,
                                          "unet_equivalents_per_image": 50.0}  # 25 steps x 2 CFG halves
    assert (run / "bias_grid.png").stat().st_size > 0 and (run / "bias_curve.png").stat().st_size > 0
    board = workspace.leaderboard.read_text()
    assert "## mini · bias · sd_world" in board and "Not admitted" not in board


def test_pixel_rule_and_judge_agree_on_generations(workspace):
    """The judge's attribute head reads generated images as the exact pixel rule does (so fd, which reads the
    judge, and the shares describe the same images), unedited and edited alike."""
    assert workspace.run(*FAST, "model=sd_world", "method=prompt_augmentation", "task.strengths=[0.0,1.0]") == 0
    record = workspace.records()[0]
    for strength in (0.0, 1.0):
        assert point(record, strength)["judge_agreement"]["value"] >= 0.85, strength


def test_unconditional_ddpm_world_run_has_no_clip_t_and_keeps_the_skew(workspace):
    assert workspace.run("task=bias", "task.ids=[200000,200032]", "model=ddpm_world", "method=noop") == 0
    metrics = point(workspace.records()[0], 0.0)
    assert "clip_t" not in metrics and {"fd", "fid", "clip_i", "judge_agreement", *SHARES} <= set(metrics)
    assert metrics["share_red"]["value"] > 0.5


def test_fd_is_the_l2_distance_of_the_mean_probabilities_to_the_target():
    rows = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.2, 0.2, 0.6]], dtype=torch.float64)
    metric = FairnessDiscrepancy(target=(0.25, 0.25, 0.25, 0.25))
    metric.update(torch.tensor([3, 1, 2]), rows)
    mean = (0.5, 0.7 / 3, 0.2 / 3, 0.6 / 3)
    expected = math.sqrt(sum((m - 0.25) ** 2 for m in mean))
    summary = metric.summarize()
    assert summary["plugin_value"] == pytest.approx(expected, abs=1e-12)  # the paper's formula
    # the estimate: the U-statistic sum_{i != j} (p_i - t).(p_j - t) / n(n - 1) = (|sum|^2 - sum |p_i - t|^2) / 6
    centred = rows.numpy() - 0.25
    u = (float((centred.sum(0) ** 2).sum()) - float((centred ** 2).sum())) / 6
    assert summary["value"] == pytest.approx(math.sqrt(max(u, 0.0)), abs=1e-12)
    assert summary["fingerprint_items"]["target"] == (0.25, 0.25, 0.25, 0.25)


@pytest.mark.parametrize("change, match", [
    ({"labeler": "oracle"}, "unknown task.labeler 'oracle'; known: pixel, judge"),
    ({"target": [0.5, 0.5]}, r"task.target must hold one probability per class \(4: red, green, blue, yellow\), "
                             r"got \[0.5, 0.5\]"),
    ({"target": [0.7, 0.7, 0.1, 0.1]}, r"bias target must be 4 non-negative probabilities summing to 1"),
    ({"attribute": "gender"}, "unknown task.attribute 'gender'; known: colour"),
    ({"classes": ["red", "purple"]}, "bias classes must be >= 2 world colours"),
    ({"ids": [0, 64]}, r"test ids must be a non-empty \[start, stop\) inside \[200000, 300000\), got \[0, 64\)"),
    ({"fit": {"fit_ids": [0, 64], "steps": 3}}, r"unknown task.fit key\(s\) \['steps'\]; known: fit_ids"),
    ({"quality_budget": 2.0}, r"task.quality_budget must be in \[0, 1\], got 2.0"),
])
def test_bad_config_values_are_one_line_errors_naming_the_value(change, match):
    with pytest.raises(VismechError, match=match) as caught:
        typed_config(BiasConfig, {"name": "bias", **change}, "task 'bias'")
    assert "\n" not in str(caught.value)


def test_bad_labeler_on_the_command_line_exits_2_with_one_line(workspace, capsys):
    assert workspace.run(*FAST, "model=sd_world", "method=noop", "task.labeler=oracle") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown task.labeler 'oracle'" in err[0], err

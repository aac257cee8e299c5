"""Class paths, class-level statistics and the pruning task: hand-computed values and the mini world's ground truth."""
from __future__ import annotations

import pytest
import torch

from vismech.benchmarks.pruning import pruning_masks
from vismech.methods.neuron_path import class_frequency, class_paths, class_similarity


def test_class_paths_take_the_mode_per_layer_and_rank_with_the_smallest_unit_on_ties():
    # 3 images of class 0, 1 of class 2, none of class 1; L = 2, K = 1, N = 4
    paths = torch.tensor([[1, 3], [1, 2], [0, 2], [3, 0]])
    labels = torch.tensor([0, 0, 0, 2])
    got = class_paths(paths, labels, num_classes=3, width=4)
    assert got.squeeze(-1).tolist() == [[1, 2], [-1, -1], [3, 0]]
    tie = class_paths(torch.tensor([[3], [1]]), torch.tensor([0, 0]), num_classes=1, width=4)
    assert tie.item() == 1  # 1 and 3 both appear once: the smaller unit


def test_class_frequency_and_similarity_by_hand():
    paths = torch.tensor([[[1, 2], [0, 0]], [[1, 3], [2, 0]]])  # (2 images, L = 2, K = 2)
    labels = torch.tensor([0, 1])
    freq = class_frequency(paths, labels, num_classes=2, width=4)
    assert freq[0].tolist() == [[0, 1, 1, 0], [2, 0, 0, 0]]  # layer 1 has unit 0 at both ranks
    assert freq[1].tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]
    sim = class_similarity(freq)
    a, b = freq[0].flatten().double(), freq[1].flatten().double()
    assert sim[0, 1].item() == pytest.approx((a @ b / a.norm() / b.norm()).item())  # (1 + 2) / (sqrt 6 * 2)
    assert sim[0, 0].item() == pytest.approx(1.0)


def test_pruning_masks_keep_path_units_are_nested_and_count_exactly():
    keep = torch.zeros(2, 3, 10, dtype=torch.bool)
    keep[0, :, 4] = True
    keep[1, 1, [0, 9]] = True
    fractions = [0.0, 0.1, 0.5, 1.0]
    masks = pruning_masks(keep, fractions, run_seed=7)
    assert not masks[0].any()  # P = 0 is the unpruned model
    assert not (masks & keep).any()  # path units are never zeroed
    free = (~keep).sum(-1)  # non-path units per (class, layer)
    for p, fraction in enumerate(fractions):
        assert masks[p].sum(-1).tolist() == [[round(fraction * int(n)) for n in row] for row in free]
    assert (masks[1] <= masks[2]).all() and (masks[2] <= masks[3]).all()  # nested
    assert torch.equal(masks, pruning_masks(keep, fractions, run_seed=7))
    assert not torch.equal(masks, pruning_masks(keep, fractions, run_seed=8))
    assert masks[3][~keep].all()  # P = 1 zeroes every non-path unit


def test_pruning_task_end_to_end_keeps_the_class_better_with_its_path(workspace):
    sweep = ["-m", "task=pruning", "method=noop,random_path,neuron_path", "task.fit_per_class=8",
             "task.eval_per_class=10", f"hydra.sweep.dir={workspace.root / 'sweep'}"]
    assert workspace.run(*sweep) == 0
    records = {r["method"]["name"]: r for r in workspace.records()}

    def value(method, fraction, metric="true_class_prob"):
        return next(p["metrics"][metric]["value"] for p in records[method]["sweep"] if p["strength"] == fraction)

    unpruned = value("noop", 0.0)
    for method in records:  # P = 0 is the unedited model for every method
        assert value(method, 0.0) == unpruned and value(method, 0.0, "accuracy") == value("noop", 0.0, "accuracy")
        assert len(records[method]["sweep"][0]["metrics"]["accuracy"]["item_ids"]) == 100  # 10 classes x 10
    # the fit images (each class's first 8) are not evaluated
    from vismech.datasets.world import WorldItems

    fit_ids = set(WorldItems("test", per_class=(0, 8)).ids)
    assert not fit_ids & set(records["noop"]["sweep"][0]["metrics"]["accuracy"]["item_ids"])
    # full pruning hurts; keeping the NeuronPath class path keeps more of the class than keeping nothing
    assert value("neuron_path", 1.0) < unpruned
    assert value("neuron_path", 1.0) > value("noop", 1.0) + 0.02
    assert records["neuron_path"]["headline"]["strength"] == 1.0
    curves = list((workspace.root / "sweep").rglob("pruning_curve.png"))
    assert len(curves) == 3 and all(p.stat().st_size > 1000 for p in curves)


def test_mask_fraction_out_of_range_is_refused(workspace, capsys):
    assert workspace.run("task=pruning", "task.strengths=[0.5,1.5]") == 2
    assert "mask fraction (task.strengths) must be in [0, 1], got 1.5" in capsys.readouterr().err

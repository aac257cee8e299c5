"""Precision, recall and per-class KID: torch-fidelity's definitions, the per-class form's bookkeeping, and records
of recall whose value its own numbers must give."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import calculate_precision_recall_full

from vismech.metrics.generation import KID, KIDPerClass, Precision, Recall
from vismech.stats import fraction_jackknife_estimate


def _features(seed: int, n: int, shift: float = 0.0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 6)) + shift)


@pytest.mark.parametrize("k", (1, 3, 5))
def test_precision_and_recall_are_torch_fidelitys(k):
    """The item-level precision's mean and recall's plug-in equal torch-fidelity's on the same features (the same
    float64 distances; torch-fidelity averages the 0/1 flags in float32, 6e-8 relative at most)."""
    generated, real = _features(0, 150, 0.4), _features(1, 220)
    precision, recall = Precision(reference=real, neighbourhood=k), Recall(reference=real, neighbourhood=k)
    precision.update(torch.arange(150), generated)
    recall.update(torch.arange(150), generated)
    want_precision, want_recall = calculate_precision_recall_full(generated, real, neighborhood=k)
    assert float(precision.compute()[1].mean()) == pytest.approx(want_precision, abs=1e-7)
    assert recall.statistic(recall.compute()[1].numpy()) == pytest.approx(want_recall, abs=1e-7)


def test_recall_reports_its_plugin_with_the_jackknife_standard_error():
    real = _features(2, 300)
    recall = Recall(reference=real)
    recall.update(torch.arange(96), _features(3, 96, 0.3))
    s = recall.summarize()
    again = fraction_jackknife_estimate(s["plugin_value"], s["pseudo_values"])
    assert s["value"] == s["plugin_value"] and s["ci_method"] == "jackknife-se"
    assert (s["ci_low"], s["ci_high"]) == (again.low, again.high)
    assert 0.0 <= s["ci_low"] < s["value"] < s["ci_high"] <= 1.0


def test_a_moved_set_loses_precision_and_a_collapsed_one_loses_recall():
    """Ground truth of the two definitions: images far off the reference are not on its manifold (precision 0);
    images all on one reference point cover only that point's neighbourhood (recall near 0), yet are precise."""
    real = _features(4, 200)
    far, collapsed = _features(5, 64, 50.0), real[:1].repeat(64, 1) + 1e-3 * _features(6, 64)
    precision, recall = Precision(reference=real), Recall(reference=real)
    precision.update(torch.arange(64), far)
    assert float(precision.compute()[1].mean()) == 0.0
    precision.reset()
    precision.update(torch.arange(64), collapsed)
    recall.update(torch.arange(64), collapsed)
    assert float(precision.compute()[1].mean()) == 1.0
    assert recall.statistic(recall.compute()[1].numpy()) <= 2 / 200  # the point itself, at most one other


def test_per_class_kid_is_the_mean_of_each_class_kid_against_its_own_reference():
    """Hand-assembled: KID of each class's images against that class's reference images, averaged with equal
    weights; a class with a single image, and images of no class (-1), are left out."""
    reference = torch.cat([_features(7, 40), _features(8, 40, 3.0), _features(9, 40, -3.0)])
    reference_labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 40)
    images = torch.cat([_features(10, 30, 0.2), _features(11, 10, 2.5), _features(12, 1, -3.0), _features(13, 5)])
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] + [-1] * 5)
    metric = KIDPerClass(reference=reference, reference_labels=reference_labels)
    metric.update(torch.arange(len(labels)), images, labels)
    got = metric.statistic(metric.compute()[1].numpy())
    each = []
    for c, rows in ((0, slice(0, 30)), (1, slice(30, 40))):
        kid = KID(reference=reference[reference_labels == c])
        kid.update(torch.arange(rows.stop - rows.start), images[rows])
        each.append(kid.statistic(kid.compute()[1].numpy()))
    assert got == pytest.approx(np.mean(each), rel=1e-12)


def test_per_class_kid_with_no_usable_class_says_so():
    metric = KIDPerClass(reference=_features(14, 10), reference_labels=torch.zeros(10, dtype=torch.long))
    metric.update(torch.arange(3), _features(15, 3), torch.tensor([0, -1, -1]))
    with pytest.raises(Exception, match="no class with two images"):
        metric.statistic(metric.compute()[1].numpy())


@pytest.mark.parametrize("make", [lambda r: Precision(reference=r), lambda r: Recall(reference=r),
                                  lambda r: KID(reference=r)], ids=["precision", "recall", "kid"])
def test_a_nan_feature_is_refused_naming_the_item(make):
    """A NaN distance compares False: without the check, precision would count the image as off the manifold."""
    features = _features(16, 4)
    features[2, 1] = float("nan")
    with pytest.raises(Exception, match=r"non-finite value \(NaN or inf\) for item\(s\) \[2\]"):
        make(_features(17, 20)).update(torch.arange(4), features)

"""Bootstrap statistics and the per-item metric base, against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vismech.errors import VismechError
from vismech.metrics import Accuracy
from vismech.stats import is_tie, jackknife_groups, mean_estimate, paired_difference, pseudo_values


def test_mean_estimate_against_hand_computed_intervals():
    # t interval: mean 2.5, sd 1.2910 (ddof 1), t(0.975, 3) = 3.1824 -> half-width 3.1824 x 1.2910 / 2 = 2.0543
    e = mean_estimate([1.0, 2.0, 3.0, 4.0])
    assert e.method == "t" and e.value == 2.5
    assert (e.low, e.high) == pytest.approx((2.5 - 2.0543, 2.5 + 2.0543), abs=1e-4)
    # Wilson, 3 of 10, z = 1.96: centre (3 + 1.9208) / 13.8416 = 0.35551,
    # half 1.96 x sqrt(3 x 7 / 10 + 0.9604) / 13.8416 = 0.24772 -> [0.1078, 0.6032]
    e = mean_estimate([1.0] * 3 + [0.0] * 7)
    assert e.method == "wilson" and (e.low, e.high) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    e = mean_estimate([0.25] * 10)
    assert (e.low, e.high) == (0.25, 0.25)  # constant values: no spread
    e = mean_estimate([0.7])
    assert e.low is None and e.high is None and "one item" in e.note


def test_paired_difference():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    mean, low, high = paired_difference(a, a - 0.5)
    assert mean == 0.5 and low == 0.5 and high == 0.5  # constant difference: no spread
    assert is_tie(a, a)
    assert not is_tie(a, a - 0.5)
    with pytest.raises(ValueError, match="same items"):
        paired_difference(a, a[:3])


def test_jackknife_groups_interleave_and_pseudo_values_remove_a_degree_two_bias():
    groups = jackknife_groups(40, max_groups=16)
    assert len(groups) == 16 and groups[0].tolist() == [0, 16, 32] and groups[15].tolist() == [15, 31]
    x = np.arange(6, dtype=float)[:, None]
    # the plug-in variance (ddof 0) is biased by (n - 1) / n; leave-one-out pseudo-values average to the unbiased one
    pseudo = pseudo_values(x, lambda rows: float(rows.var()), max_groups=6)
    assert pseudo.mean() == pytest.approx(np.var(np.arange(6), ddof=1))


def test_item_metric_is_independent_of_batching_and_duplicates():
    values = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    ids = torch.tensor([5, 3, 9, 1, 7, 2])
    one = Accuracy()
    one.update(ids, values)
    split = Accuracy()
    split.update(ids[3:], values[3:])
    split.update(ids[:3], values[:3])
    split.update(ids[:2], values[:2])  # a distributed sampler's padding repeats items
    for metric in (one, split):
        got_ids, got_values = metric.compute()
        assert got_ids.tolist() == [1, 2, 3, 5, 7, 9]
        assert got_values.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    summary = split.summarize()
    assert summary["value"] == pytest.approx(4 / 6) and summary["n"] == 6
    assert summary["direction"] == "higher" and summary["fingerprint"] == Accuracy().fingerprint()


def test_item_metric_rejects_nan_and_empty():
    metric = Accuracy()
    with pytest.raises(VismechError, match=r"metric 'accuracy' got a non-finite value \(NaN or inf\) for item\(s\) \[4\]"):
        metric.update(torch.tensor([3, 4]), torch.tensor([1.0, float("nan")]))
    with pytest.raises(VismechError, match="metric 'accuracy' saw no items"):
        Accuracy().compute()


def test_one_item_summarizes_as_a_set_of_one():
    """torchmetrics squeezes a one-element compute() to a scalar; a class with one test seed must still summarize
    (with no interval, and a note saying why), per-item and set-level alike."""
    from vismech.metrics.generation import FairnessDiscrepancy

    metric = Accuracy()
    metric.update(torch.tensor([7]), torch.tensor([1.0]))
    summary = metric.summarize()
    assert (summary["value"], summary["ci_low"], summary["ci_high"], summary["n"]) == (1.0, None, None, 1)
    assert summary["item_ids"] == [7] and summary["item_values"] == [1.0]
    fd = FairnessDiscrepancy(target=[0.5, 0.5])
    fd.update(torch.tensor([7]), torch.tensor([[1.0, 0.0]]))
    summary = fd.summarize()
    assert summary["value"] == pytest.approx(0.5 ** 0.5) == summary["plugin_value"]
    assert summary["ci_low"] is None and "one item" in summary["ci_note"]

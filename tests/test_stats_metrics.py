"""Bootstrap statistics and the per-item metric base, against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vismech.errors import VismechError
from vismech.metrics import Accuracy
from vismech.stats import bootstrap_ci, is_tie, paired_difference_ci


def test_bootstrap_ci_properties():
    assert bootstrap_ci([0.25] * 10) == (0.25, 0.25)
    x = np.random.default_rng(0).normal(1.0, 1.0, size=400)
    low, high = bootstrap_ci(x)
    assert low < x.mean() < high
    # the normal approximation gives half-width 1.96 * sd / sqrt(n) ~= 0.098
    assert 0.08 < (high - low) / 2 < 0.12
    assert bootstrap_ci(x, seed=1) != bootstrap_ci(x, seed=2)
    assert bootstrap_ci(x, seed=1) == bootstrap_ci(x, seed=1)


def test_paired_difference():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    mean, low, high = paired_difference_ci(a, a - 0.5)
    assert mean == 0.5 and low == 0.5 and high == 0.5  # constant difference: no spread, whatever the resample
    assert is_tie(a, a)
    assert not is_tie(a, a - 0.5)
    with pytest.raises(ValueError, match="same items"):
        paired_difference_ci(a, a[:3])


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
    (its CI has zero width), per-item and set-level alike."""
    from vismech.metrics.generation import FairnessDiscrepancy

    metric = Accuracy()
    metric.update(torch.tensor([7]), torch.tensor([1.0]))
    summary = metric.summarize()
    assert (summary["value"], summary["ci_low"], summary["ci_high"], summary["n"]) == (1.0, 1.0, 1.0, 1)
    assert summary["item_ids"] == [7] and summary["item_values"] == [1.0]
    fd = FairnessDiscrepancy(target=[0.5, 0.5])
    fd.update(torch.tensor([7]), torch.tensor([[1.0, 0.0]]))
    summary = fd.summarize(resamples=10)
    assert summary["value"] == pytest.approx(0.5 ** 0.5) == summary["ci_low"] == summary["ci_high"]

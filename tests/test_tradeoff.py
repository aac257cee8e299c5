"""The matched-quality headline (vismech.tradeoff) against hand-computed sweeps."""
from __future__ import annotations

import pytest

from vismech.tradeoff import NO_POINT, Bound, interpolate, matched_point


def metric(values):
    """A per-item metric summary of these item values (as ItemMetric.summarize gives it)."""
    return {"name": "m", "value": sum(values) / len(values), "item_ids": list(range(len(values))),
            "item_values": list(values), "direction": "lower"}


def sweep(fd_items, kid_items):
    return [{"fd": metric(f), "kid": metric(k)} for f, k in zip(fd_items, kid_items)]


STRENGTHS = [0.0, 0.5, 1.0]
# fd per item (two items each), kid per item: the edit lowers fd and raises kid
POINTS = sweep([[0.6, 0.6], [0.2, 0.4], [0.0, 0.2]], [[1.0, 1.0], [1.5, 1.5], [3.0, 3.0]])
EDITED = [True, False, False]  # strength 0 is the identity


def headline(points=POINTS, limit=2.0, identity=(True, False, False)):
    return matched_point(STRENGTHS, points, "fd", "lower", [Bound("kid", limit, "at most")], list(identity))


def test_the_budget_binds_between_two_points_and_the_headline_is_interpolated_there():
    # kid crosses 2.0 between 0.5 (1.5) and 1.0 (3.0) at weight (2.0 - 1.5) / 1.5 = 1/3: strength 0.5 + 0.5 / 3;
    # fd there: (2/3) x 0.3 + (1/3) x 0.1 = 0.2333, item by item [0.1333, 0.3333]
    h = headline()
    assert h["status"] == "interpolated" and h["between"] == (0.5, 1.0)
    assert h["weight"] == pytest.approx(1 / 3) and h["strength"] == pytest.approx(0.5 + 0.5 / 3)
    assert h["metrics"]["fd"]["value"] == pytest.approx(0.7 / 3)
    assert h["metrics"]["fd"]["item_values"] == pytest.approx([0.4 / 3, 1.0 / 3])
    assert h["metrics"]["kid"]["value"] == pytest.approx(2.0)
    low, high = h["metrics"]["fd"]["ci_low"], h["metrics"]["fd"]["ci_high"]
    assert low < h["metrics"]["fd"]["value"] < high


def test_a_point_inside_the_budget_is_taken_as_measured():
    h = headline(limit=3.0)  # every point within budget: the best fd is the measured point at 1.0
    assert h == {"strength": 1.0, "status": "sweep point"}


def test_the_unedited_point_is_never_an_edit_s_headline():
    # only the identity meets the budget: no point within budget, though its fd would rank
    assert headline(limit=1.0)["status"] == NO_POINT
    # ... unless every point is the identity (the no-op), which is ranked at its unedited point
    same = sweep([[0.6, 0.6]] * 3, [[1.0, 1.0]] * 3)
    assert headline(points=same, limit=1.0, identity=(True, True, True)) == {"strength": 0.0, "status": "sweep point"}


def test_an_edit_inside_the_first_segment_is_interpolated_from_the_identity():
    # kid 1.0 -> 1.5 on the first segment, budget 1.25: the headline sits at weight 0.5 of it (strength 0.25), an
    # edited point, fd (0.6 + 0.3) / 2 = 0.45
    h = headline(limit=1.25)
    assert h["status"] == "interpolated" and h["between"] == (0.0, 0.5) and h["weight"] == pytest.approx(0.5)
    assert h["metrics"]["fd"]["value"] == pytest.approx(0.45)


def test_several_bounds_meet_on_one_interval():
    points = [{"t": metric([1.0, 1.0]), "o": metric([0.8, 0.8]), "c": metric([60.0, 60.0])},
              {"t": metric([0.0, 0.0]), "o": metric([0.6, 0.6]), "c": metric([59.0, 59.0])}]
    bounds = [Bound("o", 0.75, "at least"), Bound("c", 58.0, "at most")]
    # o crosses 0.75 at weight 0.25; c is 59 <= 58? no: c > 58 everywhere -> nothing feasible
    assert matched_point([0.0, 1.0], points, "t", "lower", bounds, [True, False])["status"] == NO_POINT
    bounds = [Bound("o", 0.75, "at least"), Bound("c", 59.5, "at least")]
    # o: weight <= 0.25; c: 60 -> 59 crosses 59.5 at 0.5: feasible [0, 0.25], best target at 0.25 (0.75)
    h = matched_point([0.0, 1.0], points, "t", "lower", bounds, [True, False])
    assert h["weight"] == pytest.approx(0.25) and h["metrics"]["t"]["value"] == pytest.approx(0.75)


def test_interpolating_pseudo_values_keeps_the_transform():
    a = {"value": 0.5, "pseudo_values": [0.25, 0.25, 0.25], "ci_low": 0.5, "ci_high": 0.5, "transform": "sqrt"}
    b = {"value": 0.0, "pseudo_values": [0.0, 0.0, 0.0], "ci_low": 0.0, "ci_high": 0.0, "transform": "sqrt"}
    mid = interpolate(a, b, 0.5)  # FD^2 pseudo-values 0.125 -> FD sqrt(0.125)
    assert mid["value"] == pytest.approx(0.125 ** 0.5) and mid["pseudo_values"] == [0.125] * 3

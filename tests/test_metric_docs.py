"""Every metric documents its formula with a running example, and says which way is better the torchmetrics way;
moving a formula into its metric changes no fingerprint."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import vismech.metrics
from vismech.registry import METRICS

# fingerprints as computed on main before the formulas moved into the metrics (fd and fid at version 2, kid at 1);
# a move is not a formula change: a metric whose number changes bumps its `version`, and this table with it
PINNED = {
    "accuracy": "82fea5565fc4e18c", "class_similarity": "ccc763106d4702b5", "clip_i": "1825da6806b6e5c7",
    "clip_t": "b00333de1b5055fc", "fd": "c8d94212ea091ef9", "fid": "a7192e57a2cc2f33", "kid": "ab33818dbcde92c0", "kid_per_class": "d8c92a4379f67ce7",
    "precision": "fdb01de1075473f6", "recall": "14d86542f8553055", "jas": "70512340ba856ee5",
    "judge_agreement": "37b93a15bfb19621", "no_face_rate": "2049472ff6d7cd01", "other_accuracy": "790e50dd10362ec4",
    "path_consistency": "4cbc77ccece624e4", "prob_ratio": "f336bcf3f800e942", "share_blue": "bcd95a33ac8bf6c4",
    "share_cyan": "7dcb1e034a5a5766", "share_green": "602448c7de0d92f6", "share_magenta": "3927749bf67ba919",
    "share_red": "001d842345c68ae8", "share_yellow": "23c5008617b398e4", "target_accuracy": "2199e662f95ed132",
    "target_prob": "f07ba7e2b0be28fa", "top1_change": "a12c2a3a71959e55", "true_class_prob": "c8ca4e43fbc49741",
    # the concept task's attack and side-effect metrics, as first made
    "asr_paraphrase": "32f2896e2eb837eb", "asr_tokens": "5da8b8273e970efa", "related_accuracy": "e026f10bc0ebb7b5",
    "far_accuracy": "c16ce62ad195ba91",
    # CMMD, as first made (vismech.metrics.distribution)
    "cmmd": "e35b74647c860f79",
}
# with a run's judge, target and direction, which enter the fingerprint too
PINNED_RUN = (
    ("fd", {"judge": {"model": "judge_world", "weights": "abc"}, "target": (0.25, 0.75)}, "639b80bd5bbc9c29"),
    ("clip_t", {"judge": {"model": "clip_world", "scale": "100 x cosine"}}, "4c0462514611776d"),
    ("target_accuracy", {"judge": {"model": "judge_world"}, "direction": "higher"}, "2a3b7399eddb7fab"),
)


def metric_modules():
    return [importlib.import_module(m.name)
            for m in pkgutil.walk_packages(vismech.metrics.__path__, "vismech.metrics.")
            if not m.name.startswith("vismech.metrics.judges")] + [vismech.metrics]


@pytest.mark.parametrize("module", metric_modules(), ids=lambda m: m.__name__)
def test_metric_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_registered_metric_has_a_formula_and_a_running_example():
    names = {e.name for e in METRICS.entries()} | {"share_red"}
    missing = []
    for name in sorted(names):
        cls = METRICS.get(name)
        doc = cls.__doc__ if name != "share_red" else METRICS.get("share_red").__mro__[1].__doc__
        if not all(part in doc for part in ("``", "Args:", ">>>")):  # formula, arguments, example
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("name", sorted(PINNED))
def test_fingerprints_unchanged_by_the_move(name):
    assert METRICS.get(name)().fingerprint() == PINNED[name]


@pytest.mark.parametrize("name,kwargs,expected", PINNED_RUN, ids=[p[0] for p in PINNED_RUN])
def test_run_fingerprints_unchanged_by_the_move(name, kwargs, expected):
    assert METRICS.get(name)(**kwargs).fingerprint() == expected


def test_no_registered_metric_is_unpinned():
    """A new metric joins the table above, so the next move cannot change its fingerprint silently."""
    assert {e.name for e in METRICS.entries()} - set(PINNED) == set()


def test_higher_is_better_is_the_class_direction():
    for entry in METRICS.entries():
        assert entry.obj.higher_is_better is (entry.obj.direction == "higher"), entry.name


def test_share_metrics_resolve_for_any_class_without_the_task():
    """A paper record's `share_female` resolves from the metric family, not from a palette imported here."""
    cls = METRICS.get("share_female")
    assert cls.value == "female" and METRICS.get("share_female") is cls
    assert "share_female" in METRICS and "share_" not in METRICS

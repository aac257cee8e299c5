"""Method construction and input checks: typed configs, strengths, seeded randomness, finding provenance."""
from __future__ import annotations

import math

import pytest
import torch

from vismech.errors import UnknownNameError, VismechError
from vismech.method import build_method


def test_unknown_method_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        build_method("nope")
    assert str(err.value).startswith("unknown method 'nope'; known methods: ")
    assert "noop" in str(err.value) and "random_neurons" in str(err.value) and "neuron_path" in str(err.value)


@pytest.mark.parametrize("config, message", [
    ({"units": 3}, "unknown config key(s) units for method 'random_neurons'; allowed: site_prefix, units_per_layer"),
    ({"units_per_layer": "many"}, "config key 'units_per_layer' of method 'random_neurons' must be int, got 'many'"),
    ({"units_per_layer": 0}, "units_per_layer must be >= 1, got 0"),
])
def test_bad_config_names_key_and_allowed(config, message):
    with pytest.raises(VismechError) as err:
        build_method("random_neurons", config)
    assert str(err.value) == message


@pytest.mark.parametrize("strength, message", [
    (1.5, "strength of method 'random_neurons' must be in [0, 1], got 1.5"),
    (-0.1, "strength of method 'random_neurons' must be in [0, 1], got -0.1"),
    (math.nan, "strength of method 'random_neurons' must be a finite number, got nan"),
])
def test_bad_strength(vit_subject, strength, message):
    method = build_method("random_neurons")
    with pytest.raises(VismechError) as err:
        method.edit(vit_subject, method.fit(vit_subject, None), strength)
    assert str(err.value) == message


def test_method_task_support_is_checked():
    with pytest.raises(VismechError, match="does not support task 'bias'; it supports: classifier_ablation"):
        build_method("random_neurons", task="bias")
    assert build_method("noop", task="anything").name == "noop"


def test_random_control_is_seeded(vit_subject):
    def units(seed):
        return build_method("random_neurons", {"units_per_layer": 5}, seed=seed).fit(vit_subject, None).tensors

    a, b, c = units(1), units(1), units(2)
    assert a.keys() == {f"units.ffn.{i}" for i in range(6)}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert all(v.numel() == 5 and v.unique().numel() == 5 and int(v.max()) < 256 for v in a.values())


def test_finding_from_other_weights_is_refused(vit_subject):
    method = build_method("random_neurons")
    finding = method.fit(vit_subject, None)
    finding.subject_digest = "0" * 64
    with pytest.raises(VismechError, match="fitted on other weights"):
        method.edit(vit_subject, finding, 1.0)

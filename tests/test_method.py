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
    assert "noop" in str(err.value) and "random_path" in str(err.value) and "neuron_path" in str(err.value)


@pytest.mark.parametrize("config, message", [
    ({"units": 3}, "unknown config key(s) units for method 'random_path'; allowed: batch_size, chunk_rows, draws, "
                   "jas_form, m, token_scope, top_k"),
    ({"draws": "many"}, "config key 'draws' of method 'random_path' must be int, got 'many'"),
    ({"draws": 0}, "draws must be >= 1, got 0"),
    ({"token_scope": "all"}, "token_scope must be one of auto, cls, mean_patches; got 'all'"),
])
def test_bad_config_names_key_and_allowed(config, message):
    with pytest.raises(VismechError) as err:
        build_method("random_path", config)
    assert str(err.value) == message


@pytest.mark.parametrize("strength, message", [
    (2.5, "strength of method 'random_path' must be in [0, 2], got 2.5"),
    (-0.1, "strength of method 'random_path' must be in [0, 2], got -0.1"),
    (math.nan, "strength of method 'random_path' must be a finite number, got nan"),
])
def test_bad_strength(vit_subject, few_images, strength, message):
    method = build_method("random_path", {"draws": 1})
    with pytest.raises(VismechError) as err:
        method.edit(vit_subject, method.fit(vit_subject, few_images), strength)
    assert str(err.value) == message


def test_method_task_support_is_checked():
    with pytest.raises(VismechError, match="does not support task 'bias'; it supports: neuron_path, pruning"):
        build_method("random_path", task="bias")
    assert build_method("noop", task="anything").name == "noop"


def test_random_control_is_seeded(vit_subject, few_images):
    def paths(seed):
        return build_method("random_path", {"draws": 2}, seed=seed).fit(vit_subject, few_images).tensors["draw_paths"]

    a, b, c = paths(1), paths(1), paths(2)
    assert a.shape == (4, 2, 6) and int(a.min()) >= 0 and int(a.max()) < 256
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[:, 0], a[:, 1])  # draws differ


def test_finding_from_other_weights_is_refused(vit_subject, few_images):
    method = build_method("random_path", {"draws": 1})
    finding = method.fit(vit_subject, few_images)
    finding.subject_digest = "0" * 64
    with pytest.raises(VismechError, match="fitted on other weights"):
        method.edit(vit_subject, finding, 1.0)

"""The edit contract: identity edits are bit-identical, and every edit comes off exactly, also on exceptions."""
from __future__ import annotations

import pytest
import torch

from vismech.edit import HookEdit, NoEdit, WeightEdit
from vismech.errors import VismechError
from vismech.method import build_method


def _state(subject):
    return {k: v.clone() for k, v in subject.model.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@torch.no_grad()
def test_identity_edits_are_bit_identical(vit_subject, few_images):
    images = few_images["image"]
    base = vit_subject.logits(images)
    random = build_method("random_path", {"draws": 1, "top_k": 16}, seed=3)
    finding = random.fit(vit_subject, few_images)
    with random.edit(vit_subject, finding, 1.0):  # strength 1 scales the path units by 1
        assert torch.equal(vit_subject.logits(images), base)
    noop = build_method("noop")
    with noop.edit(vit_subject, noop.fit(vit_subject, None), 1.0):
        assert torch.equal(vit_subject.logits(images), base)


@torch.no_grad()
def test_hook_edit_changes_outputs_then_comes_off(vit_subject, few_images):
    images = few_images["image"]
    before, base = _state(vit_subject), vit_subject.logits(images)
    random = build_method("random_path", {"draws": 1, "top_k": 128}, seed=0)
    finding = random.fit(vit_subject, few_images)
    with random.edit(vit_subject, finding, 0.0):
        edited = vit_subject.logits(images)
    assert not torch.allclose(edited, base)
    assert torch.equal(vit_subject.logits(images), base)
    assert _same_state(before, _state(vit_subject))
    assert all(not m._forward_hooks for m in vit_subject.model.modules())


@torch.no_grad()
def test_edits_come_off_on_exception(vit_subject, world_batch):
    _, images, _ = world_batch
    before, base = _state(vit_subject), vit_subject.logits(images)
    weight_edit = WeightEdit(vit_subject, {"ffn.1.fc1": lambda w: w * 0, "ffn.2.fc2": lambda w: w + 1})
    hook_edit = HookEdit(vit_subject, {"ffn.0": lambda out: out * 3})
    with pytest.raises(RuntimeError, match="boom"):
        with weight_edit, hook_edit:
            assert not torch.allclose(vit_subject.logits(images), base)
            raise RuntimeError("boom")
    assert _same_state(before, _state(vit_subject))
    assert torch.equal(vit_subject.logits(images), base)
    assert not weight_edit.active and not hook_edit.active


@torch.no_grad()
def test_weight_edit_restores_after_a_failing_update(vit_subject):
    before = _state(vit_subject)

    def explode(w):
        raise ValueError("bad update")

    with pytest.raises(ValueError):
        with WeightEdit(vit_subject, {"ffn.0.fc1": lambda w: w * 2, "ffn.1.fc1": explode}):
            pass
    assert _same_state(before, _state(vit_subject))


def test_edit_misuse_is_refused(vit_subject):
    edit = NoEdit(vit_subject)
    with edit:
        with pytest.raises(VismechError, match="entered twice"):
            edit.__enter__()
    with pytest.raises(VismechError, match="changed its shape"):
        with WeightEdit(vit_subject, {"ffn.0.fc1": lambda w: w[:1]}):
            pass
    with pytest.raises(VismechError, match="subject 'vit_world' has no site 'nope'; known sites: ffn.0, "):
        HookEdit(vit_subject, {"nope": lambda out: out})
    with pytest.raises(VismechError, match="weight site"):
        HookEdit(vit_subject, {"ffn.0.fc1": lambda out: out})

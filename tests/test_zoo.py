"""The mini zoo: shipped weights match the manifest, load bit-exactly through timm, and their quality is reproducible."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vismech.datasets.digits import DigitsItems, split_ids
from vismech.errors import VismechError
from vismech.zoo import vit_digits
from vismech.zoo.manifest import WEIGHTS_DIR, file_sha256, read_manifest


def test_shipped_weights_match_the_manifest():
    manifest = read_manifest()
    assert set(manifest) == {"vit_digits"}
    for name, entry in manifest.items():
        assert file_sha256(WEIGHTS_DIR / entry["file"]) == entry["sha256"]
        assert (WEIGHTS_DIR / entry["file"]).stat().st_size < 5 * 2**20


def test_create_model_loads_the_file_bit_exactly(vit_subject):
    shipped = load_file(str(WEIGHTS_DIR / read_manifest()["vit_digits"]["file"]))
    state = vit_subject.model.state_dict()
    assert state.keys() == shipped.keys()
    assert all(torch.equal(state[k], shipped[k]) for k in shipped)


def test_held_out_accuracy_matches_the_manifest(vit_subject):
    quality = read_manifest()["vit_digits"]["quality"]
    _, images, labels = DigitsItems("test").tensors()
    with torch.no_grad():
        accuracy = (vit_subject.logits(images).argmax(-1) == labels).double().mean().item()
    assert accuracy == pytest.approx(quality["test_accuracy"], abs=2 / quality["test_items"])
    assert accuracy > 0.9


def test_splits_are_disjoint_and_cover_the_data():
    train, test = set(split_ids("train")), set(split_ids("test"))
    assert not train & test and len(train | test) == 1797 and len(test) == 450


def test_recipe_runs_and_its_loss_falls():
    _, measured = vit_digits.train(epochs=8, seed=1)
    losses = measured["epoch_losses"]
    assert measured["recipe"]["epochs"] == 8 and len(losses) == 8
    assert losses[-1] < 0.6 * losses[0]  # measured: 2.32 -> 1.05


def test_wrong_and_broken_weights_fail_clearly(tmp_path):
    other = vit_digits.create()
    state = {k: v for k, v in other.state_dict().items() if k != "head.weight"}
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(VismechError, match="does not fit vit_digits"):
        vit_digits.load(str(path))
    wide = {k: (torch.zeros(v.shape[0] + 1, *v.shape[1:]) if k == "head.weight" else v) for k, v in other.state_dict().items()}
    save_file(wide, str(path))
    with pytest.raises(VismechError, match="does not fit vit_digits"):
        vit_digits.load(str(path))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((WEIGHTS_DIR / "vit_digits.safetensors").read_bytes()[:1000])
    with pytest.raises(VismechError, match="is not a readable safetensors file"):
        vit_digits.load(str(truncated))

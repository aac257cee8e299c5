"""The generation cache: made once, read bit for bit, never stale, never partial."""
from __future__ import annotations

import pytest
import torch

from vismech import cli
from vismech.errors import VismechError
from vismech.generations import GenerationCache, generation_key

PARTS = dict(subject="w", method="m", finding="f", strength=1.0, sampler="ddim", steps=25, guidance=4.0,
             prompt="a sneaker", dtype="float32", producer="1")


def test_images_are_made_once_and_read_back_exactly(tmp_path):
    cache = GenerationCache(tmp_path)
    keys = [generation_key(**PARTS, seed=s) for s in range(5)]
    calls = []

    def make(indices):
        calls.append(list(indices))
        return torch.stack([torch.full((3, 2, 2), i / 7) for i in indices])

    images, made = cache.images(keys[:3], make, batch_size=2)
    assert made == 3 and calls == [[0, 1], [2]]
    again, made = cache.images(keys, make, batch_size=2)  # 3 cached, 2 new
    assert made == 2 and calls[-1] == [3, 4]
    assert torch.equal(again[:3], images) and again[4, 0, 0, 0].item() == pytest.approx(4 / 7)
    assert cache.stats().images == 5


def test_every_input_changes_the_key():
    base = generation_key(**PARTS, seed=0)
    for name, value in [*[(k, f"{v}x") for k, v in PARTS.items()], ("seed", 1)]:
        assert generation_key(**{**PARTS, "seed": 0, name: value}) != base, name
    with pytest.raises(VismechError, match="a generation key needs seed"):
        generation_key(**PARTS)


def test_corrupt_and_partial_files(tmp_path, capsys):
    cache = GenerationCache(tmp_path)
    key = generation_key(**PARTS, seed=0)
    cache.put(key, torch.zeros(3, 2, 2))
    cache.path(key).write_bytes(cache.path(key).read_bytes()[:20])  # a file cut short by hand
    with pytest.raises(VismechError, match="is corrupt"):
        cache.get(key)
    (cache.path(key).parent / ".x.safetensors.123.tmp").write_bytes(b"half")  # a write killed before its rename
    assert cache.stats().partial == 1
    with pytest.raises(VismechError, match="non-finite"):
        cache.put(key, torch.full((3, 2, 2), float("nan")))
    assert cli.main(["cache", "gc", "--dir", str(tmp_path)]) == 0
    assert "removed 1 file(s)" in capsys.readouterr().out and cache.stats().partial == 0
    assert cli.main(["cache", "gc", "--all", "--dir", str(tmp_path)]) == 0
    assert cache.stats().images == 0
    assert cli.main(["cache", "ls", "--dir", str(tmp_path)]) == 0
    assert "0 images" in capsys.readouterr().out

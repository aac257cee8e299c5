"""Findings round-trip through safetensors + JSON, and refuse pickle, truncation and tampering."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from vismech.errors import VismechError
from vismech.finding import META_FILE, TENSORS_FILE, Finding


def _finding() -> Finding:
    return Finding("m", "t", "s", "d" * 64, {"k": 3}, {"units.ffn.0": torch.tensor([3, 1, 2]),
                                                       "scores": torch.linspace(0, 1, 7)}, {"note": "x"})


def test_round_trip_is_exact(tmp_path):
    finding = _finding()
    loaded = Finding.load(finding.save(tmp_path / "f"))
    assert loaded.digest() == finding.digest()
    assert loaded.config == {"k": 3} and loaded.meta == {"note": "x"}
    assert all(torch.equal(loaded.tensors[k], finding.tensors[k]) for k in finding.tensors)
    assert sorted(os.listdir(tmp_path)) == ["f"]  # no temporary folder left behind


def test_digest_depends_on_content():
    a, b = _finding(), _finding()
    assert a.digest() == b.digest()
    b.tensors["scores"][3] += 1e-6
    assert a.digest() != b.digest()


def test_truncated_tensors_are_refused(tmp_path):
    path = _finding().save(tmp_path / "f")
    data = (path / TENSORS_FILE).read_bytes()
    (path / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(VismechError, match="is corrupt"):
        Finding.load(path)


def test_tampered_finding_is_refused(tmp_path):
    path = _finding().save(tmp_path / "f")
    meta = json.loads((path / META_FILE).read_text())
    meta["config"]["k"] = 4
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(VismechError, match="does not match its recorded digest"):
        Finding.load(path)


class _Payload:
    def __reduce__(self):
        return (open, (str(_Payload.marker), "w"))


def test_pickle_is_refused_and_never_executed(tmp_path):
    _Payload.marker = tmp_path / "executed"
    evil = tmp_path / "finding.pt"
    evil.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(VismechError, match="refusing to load .* pickle files can run code"):
        Finding.load(evil)
    assert not _Payload.marker.exists()


def test_folder_without_finding_files(tmp_path):
    with pytest.raises(VismechError, match=f"expected {META_FILE} and {TENSORS_FILE}"):
        Finding.load(tmp_path)

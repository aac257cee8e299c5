"""The CPU-torch torchvision workaround: patches exactly the two registrations, once, and nothing else."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("fix_cpu_torchvision", REPO / "scripts" / "fix_cpu_torchvision.py")
fix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fix)

ORIGINAL = '''import functools

import torch
import torchvision.extension  # noqa: F401


@functools.lru_cache(None)
def get_meta_lib():
    return torch.library.Library("torchvision", "IMPL", "Meta")


@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    return dets


@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    return dets
'''


def test_patch_guards_both_registrations_once(tmp_path):
    path = tmp_path / "_meta_registrations.py"
    path.write_text(ORIGINAL)
    fix.patch(path)
    patched = path.read_text()
    assert patched.count(fix.MARKER) == 1
    assert '@_register_fake_if_ops("torchvision::nms")' in patched
    assert '@_register_fake_if_ops("torchvision::qnms")' in patched
    assert "@torch.library.register_fake(" not in patched
    compile(patched, str(path), "exec")
    fix.patch(path)
    assert path.read_text() == patched  # idempotent


def test_unknown_layout_is_not_patched(tmp_path):
    path = tmp_path / "_meta_registrations.py"
    path.write_text("import torch\n")
    with pytest.raises(SystemExit, match="needs a new workaround"):
        fix.patch(path)
    assert path.read_text() == "import torch\n"


def test_torchvision_imports_in_this_environment():
    assert fix.import_error() is None

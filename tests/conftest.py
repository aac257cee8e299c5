from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vismech import cli

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: one thread per worker (and its subprocesses), N in all
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vit_subject():
    from vismech.zoo import vit_world

    return vit_world.load()


@pytest.fixture()
def world_batch():
    from vismech.datasets.world import WorldItems

    data = WorldItems("test", limit=32).tensors()
    return data["id"], data["image"], data["label"]


@pytest.fixture()
def few_images():
    """Four test images as a mapping of tensors: what the neuron-path methods fit on."""
    from vismech.datasets.world import WorldItems

    return WorldItems("test", limit=4).tensors()


def install_package(src: Path, tmp_path: Path, monkeypatch) -> None:
    """pip-install a method package into a private folder on sys.path, then let the registry see its entry points."""
    import subprocess
    import sys

    from vismech.registry import METHODS

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, timeout=300)
    METHODS.names()  # load the built-ins first, so the copy restored after the test holds them
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(METHODS, "_loaded_plugins", False)


class Workspace:
    """A run folder layout in a temporary directory, and in-process calls of the CLI against it."""

    def __init__(self, root: Path):
        self.root = root
        self.results = root / "results"
        self.leaderboard = root / "leaderboard.md"

    def paths(self) -> list[str]:
        # trial=false: the tests' small item sets are filed like protocol runs, in this workspace's results and board
        return [f"paths.results_dir={self.results}", f"paths.cache_dir={self.root / 'cache'}",
                f"paths.leaderboard={self.leaderboard}", f"paths.runs_dir={self.root / 'runs'}", "trial=false"]

    def run(self, *overrides: str) -> int:
        return cli.main(["run", *overrides, *self.paths()])

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.results.rglob("*.json"))]


@pytest.fixture()
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path)

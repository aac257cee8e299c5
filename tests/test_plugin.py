"""A method in a separately installed distribution is found by name through the `vismech.methods` entry point."""
from __future__ import annotations

import textwrap

import pytest

from vismech import cli
from vismech.registry import METHODS
from vismech.results import load_record

from conftest import install_package

PLUGIN = '''
from dataclasses import dataclass

import torch

from vismech.method import Method, MethodConfig
from vismech.methods.neuron_path import jas_of_paths, path_edit


@dataclass
class Config(MethodConfig):
    top_k: int = 1


class LargestOutputWeights(Method):
    """Per layer, the units whose fc2 output weights have the largest norm, for every image (plugin example)."""

    name = "largest_output_weights"
    tasks = ("neuron_path",)
    Config = Config
    strength_range = (0.0, 2.0)
    identity_strength = 1.0

    def fit(self, subject, data):
        data = data.tensors()
        layers = [s.name for s in subject.sites_of("ffn.") if s.kind == "activation"]
        units = torch.stack([subject.parameter(site + ".fc2").norm(dim=0).topk(self.config.top_k).indices
                             for site in layers])  # (L, K)
        paths = units.expand(len(data["id"]), *units.shape).clone()
        jas = jas_of_paths(subject, data, paths)
        return self.new_finding(subject, "neuron_path", tensors={
            "item_ids": data["id"], "labels": data["label"], "paths": paths, "jas_ref": jas["ref"]})

    def edit(self, subject, finding, strength):
        return path_edit(subject, finding.tensors["paths"], self.check_strength(strength))
'''


def install_plugin(tmp_path, monkeypatch, distribution: str, source: str, entry: str) -> None:
    """pip-install a one-module distribution whose `vismech.methods` entry point is `entry` (name = target)."""
    src, package = tmp_path / "src", distribution.replace("-", "_")
    (src / package).mkdir(parents=True)
    (src / package / "__init__.py").write_text(source)
    (src / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools>=70"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{distribution}"
        version = "0.1.0"
        [project.entry-points."vismech.methods"]
        {entry}
    '''))
    install_package(src, tmp_path, monkeypatch)


@pytest.fixture()
def installed_plugin(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vismech-demo-plugin", PLUGIN,
                   'largest_output_weights = "vismech_demo_plugin:LargestOutputWeights"')
    yield
    METHODS.refresh()


def test_plugin_method_is_found_and_runs(installed_plugin, workspace, capsys):
    entry = METHODS.entry("largest_output_weights")
    assert entry.source == "vismech-demo-plugin"
    assert cli.main(["list", "methods"]) == 0
    assert "largest_output_weights" in capsys.readouterr().out
    # no yaml in configs/method: the run takes the config from the method's typed Config
    assert workspace.run("method=largest_output_weights", "method.config.top_k=16", "task.limit=8") == 0
    [path] = list(workspace.results.rglob("*.json"))
    record = load_record(path)
    assert record.method.source == "vismech-demo-plugin" and record.method.config == {"top_k": 16}
    assert record.headline_point().metrics["prob_ratio"].value != 1.0  # the plugin edit acted
    assert "from `vismech-demo-plugin`" in workspace.leaderboard.read_text()


def test_without_the_plugin_the_name_is_unknown(workspace, capsys):
    assert workspace.run("method=largest_output_weights") == 2
    assert "unknown method 'largest_output_weights'" in capsys.readouterr().err


NOT_METHODS = '''
from vismech.methods.neuron_path import ActivationPath


def top_units(subject, data):
    """A function where a Method subclass belongs."""


class Renamed(ActivationPath):
    """A Method subclass registered under another name than its own."""
'''


@pytest.mark.parametrize("entry, says", [
    ("top_units = \"vismech_bad_plugin:top_units\"",
     "names function top_units, not a subclass of vismech.method.Method; point it at your method class"),
    ("renamed_path = \"vismech_bad_plugin:Renamed\"",
     "names class Renamed whose name is 'activation_path'; the entry point's name and the class's `name` must agree"),
])
def test_an_entry_point_that_is_not_a_method_fails_in_one_line(tmp_path, monkeypatch, capsys, entry, says):
    install_plugin(tmp_path, monkeypatch, "vismech-bad-plugin", NOT_METHODS, entry)
    try:
        assert cli.main(["list", "methods"]) == 2
        err = capsys.readouterr().err
        name, value = (part.strip().strip('"') for part in entry.split("="))
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"vismech: error: entry point '{name} = {value}' of distribution 'vismech-bad-plugin' "
                              f"(group vismech.methods) {says}")
    finally:
        METHODS.refresh()

"""A method in a separately installed distribution is found by name through the `vismech.methods` entry point."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vismech import cli
from vismech.registry import METHODS
from vismech.results import load_record

PLUGIN = '''
from dataclasses import dataclass

import torch

from vismech.method import Method, MethodConfig
from vismech.methods.neurons import PREFIX, scale_units_edit, units_of


@dataclass
class Config(MethodConfig):
    units_per_layer: int = 4


class LargestOutputWeights(Method):
    """Units whose fc2 output weights have the largest norm (plugin example)."""

    name = "largest_output_weights"
    tasks = ("classifier_ablation",)
    Config = Config

    def fit(self, subject, data):
        tensors = {}
        for site in subject.sites_of("ffn."):
            if site.kind == "activation":
                norms = subject.parameter(site.name + ".fc2").norm(dim=0)
                tensors[PREFIX + site.name] = norms.topk(self.config.units_per_layer).indices.sort().values
        return self.new_finding(subject, "classifier_ablation", tensors=tensors)

    def edit(self, subject, finding, strength):
        return scale_units_edit(subject, units_of(finding), 1.0 - self.check_strength(strength))
'''


@pytest.fixture()
def installed_plugin(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "vismech_demo_plugin").mkdir(parents=True)
    (src / "vismech_demo_plugin" / "__init__.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=70"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "vismech-demo-plugin"
        version = "0.1.0"
        [project.entry-points."vismech.methods"]
        largest_output_weights = "vismech_demo_plugin:LargestOutputWeights"
    '''))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, timeout=300)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    METHODS.refresh()
    yield
    METHODS.refresh()


def test_plugin_method_is_found_and_runs(installed_plugin, workspace, capsys):
    entry = METHODS.entry("largest_output_weights")
    assert entry.source == "vismech-demo-plugin"
    assert cli.main(["list", "methods"]) == 0
    assert "largest_output_weights" in capsys.readouterr().out
    # no yaml in configs/method: the run takes the config from the method's typed Config
    assert workspace.run("method=largest_output_weights", "method.config.units_per_layer=16", "task.limit=64") == 0
    [path] = list(workspace.results.rglob("*.json"))
    record = load_record(path)
    assert record.method.source == "vismech-demo-plugin" and record.method.config == {"units_per_layer": 16}
    assert record.headline_point().metrics["true_class_prob_drop"].value != 0.0  # the plugin edit acted
    assert "from `vismech-demo-plugin`" in workspace.leaderboard.read_text()


def test_without_the_plugin_the_name_is_unknown(workspace, capsys):
    assert workspace.run("method=largest_output_weights") == 2
    assert "unknown method 'largest_output_weights'" in capsys.readouterr().err

"""The neuron_path task end to end through the CLI: records whose numbers follow from what the methods do."""
from __future__ import annotations

import pytest


def test_neuron_path_task_records(workspace):
    sweep = ["-m", "task=neuron_path", "method=noop,activation_path,neuron_path", "task.limit=8",
             f"hydra.sweep.dir={workspace.root / 'sweep'}"]
    assert workspace.run(*sweep) == 0
    records = {r["method"]["name"]: r for r in workspace.records()}
    assert set(records) == {"noop", "activation_path", "neuron_path"}

    def point(method, strength):
        return next(p["metrics"] for p in records[method]["sweep"] if p["strength"] == strength)

    # the no-op finds no path (JAS 0) and its edit changes nothing, at any strength
    for strength in (0.0, 2.0):
        assert point("noop", strength)["jas"]["value"] == 0.0
        assert point("noop", strength)["prob_ratio"]["item_values"] == [1.0] * 8
        assert point("noop", strength)["top1_change"]["value"] == 0.0
    found, activation = point("neuron_path", 0.0), point("activation_path", 0.0)
    assert found["jas"]["value"] > max(activation["jas"]["value"], 0.0)
    assert found["prob_ratio"]["value"] < 1 < point("neuron_path", 2.0)["prob_ratio"]["value"]
    assert found["prob_ratio"]["value"] < activation["prob_ratio"]["value"]
    assert records["neuron_path"]["headline"]["strength"] == 0.0
    assert records["neuron_path"]["cost"]["backward_passes"] == 6 + 2  # L + 2 for one batch of 8 images


@pytest.mark.parametrize("method", ["random_neurons"])
def test_methods_of_other_tasks_are_refused(workspace, capsys, method):
    assert workspace.run("task=neuron_path", f"method={method}") == 2
    assert f"method '{method}' does not support task 'neuron_path'" in capsys.readouterr().err


def test_cost_script_counts_passes_and_finds_the_same_paths():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "cost_neuron_path.py"
    out = subprocess.run([sys.executable, str(script), "--images", "2", "--depth", "3"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    rows = {line[:24].strip(): line[24:].split() for line in out.splitlines() if line[:24].strip()}
    assert rows["backward passes"][:2] == ["5.000", "12.000"]  # L + 2 and L(L+1)/2 + 2L for L = 3
    assert rows["forward passes"][:2] == ["6.000", "8.000"]  # 1 + L + 2 and 2L + 2
    assert "same paths: True" in out

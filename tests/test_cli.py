"""The `vismech` command end to end on the mini track: run, sweeps, list, user errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vismech import cli
from vismech.registry import METHODS, METRICS, MODELS, TASKS
from vismech.results import load_record


def test_default_run_produces_a_valid_record_matching_a_direct_computation(workspace, vit_subject):
    assert workspace.run() == 0
    [path] = list(workspace.results.rglob("*.json"))
    record = load_record(path)
    assert (record.task, record.method.name, record.subject.id) == ("neuron_path", "noop", "vit_world")
    from vismech.datasets.world import WorldItems

    ids = WorldItems("test", limit=64).ids
    for point in record.sweep:  # the no-op finds no path and its edit is exact
        assert point.metrics["prob_ratio"].item_values == [1.0] * 64
        assert point.metrics["jas"].value == point.metrics["top1_change"].value == 0.0
        assert point.metrics["prob_ratio"].item_ids == ids
    assert record.cost.forward_passes == 2 * 3  # 2 batches of 32 x (unedited + 2 strengths)
    assert record.provenance.libraries["torch"].startswith("2.13.0")
    assert "`noop` (control)" in workspace.leaderboard.read_text()
    assert (Path(workspace.root) / "runs").is_dir()


def test_multirun_sweep_and_cached_findings(workspace):
    sweep = ["-m", "method=noop,random_path", "task.limit=8", f"hydra.sweep.dir={workspace.root / 'sweep'}"]
    assert workspace.run(*sweep) == 0
    records = {r["method"]["name"]: r for r in workspace.records()}
    assert set(records) == {"noop", "random_path"}
    assert records["random_path"]["sweep"][0]["metrics"]["prob_ratio"]["value"] != 1.0
    findings = sorted((workspace.root / "cache" / "findings").rglob("finding.json"))
    assert len(findings) == 2
    stamps = [p.stat().st_mtime_ns for p in findings]
    assert workspace.run(*sweep) == 0  # the second run loads the findings instead of refitting
    assert [p.stat().st_mtime_ns for p in findings] == stamps
    again = {r["method"]["name"]: r for r in workspace.records()}
    assert again["random_path"]["sweep"] == records["random_path"]["sweep"]
    # a reused finding still reports what it cost to make
    for name in ("noop", "random_path"):
        first, second = records[name]["cost"], again[name]["cost"]
        assert (first["fit_reused"], second["fit_reused"]) == (False, True)
        for key in ("forward_passes", "backward_passes", "fit_forward_passes", "fit_time_s"):
            assert first[key] == second[key], (name, key)


@pytest.mark.parametrize("override, message", [
    ("method=nope", "unknown method 'nope'; known methods: " + ", ".join(METHODS.names())),
    ("task=nope", "unknown task 'nope'; known tasks: neuron_path, pruning"),
    ("model=nope", "unknown model 'nope'; known models: mae_b16, vit_b16, vit_b32, vit_l32, vit_world"),
    ("logger=nope", "unknown logger 'nope'; known loggers: csv, wandb"),
    ("task.strengths=[0.5,2.5]", "strength of method 'random_path' must be in [0, 2], got 2.5"),
    ("task.strengths=[]", "task.strengths is empty"),
    ("method.config.draws=0", "draws must be >= 1, got 0"),
    ("model=vit_b16 model.params.weights=/nowhere/vit.safetensors",
     "weights file '/nowhere/vit.safetensors' does not exist; expected a .safetensors file"),
    ("task=pruning task.fit_per_class=0", "task.fit_per_class must be >= 1, got 0"),
    ("task.foo=3", "bad override: Could not override 'task.foo'. To append to your config use +task.foo=3"),
    ("task.limit=abc", "config key 'limit' of task 'neuron_path' must be int | None, got 'abc'"),
    ("task.batch_size=0", "task.batch_size must be >= 1, got 0"),
    ("task.limit=0", "task.limit must be >= 1 or null, got 0"),
    ("task=neuron_path task.limit=0", "task.limit must be >= 1 or null, got 0"),
    ("task.strengths=[0,0.5", "bad override: no viable alternative at input '[0,0.5'"),
    ("seed=1.5", "seed must be an integer, got 1.5"),
])
def test_user_errors_exit_2_with_one_line(workspace, capsys, override, message):
    extra = ["method=random_path"] if "draws" in override or "strengths=[0.5" in override else []
    assert workspace.run(*extra, *override.split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vismech: error: ") and message in err[-1]
    assert not workspace.results.exists()


def test_missing_and_corrupt_weights(workspace, capsys, tmp_path):
    assert workspace.run(f"model.params.weights={tmp_path / 'none.safetensors'}") == 2
    assert "weights file" in capsys.readouterr().err and "does not exist"
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    assert workspace.run(f"model.params.weights={broken}") == 2
    assert "is not a readable safetensors file" in capsys.readouterr().err
    pickled = tmp_path / "weights.pt"
    pickled.write_bytes(b"not really a pickle")
    assert workspace.run(f"model.params.weights={pickled}") == 2
    assert "must be .safetensors (pickle checkpoints are refused)" in capsys.readouterr().err


def test_list_names_everything_registered(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    sections = dict(zip(("tasks", "methods", "models", "metrics"), out.split(":\n")[1:]))
    for section, registry in zip(sections.values(), (TASKS, METHODS, MODELS, METRICS)):
        for entry in registry.entries():
            line = next(line for line in section.splitlines() if line.strip().startswith(entry.name + " "))
            assert entry.summary in line
    assert "higher is better" in out and "(control)" in out
    assert cli.main(["list", "widgets"]) == 2
    assert "unknown list section 'widgets'; known list sections: methods, metrics, models, tasks" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'; known commands: cache, leaderboard, list, run, validate, verify, zoo" in capsys.readouterr().err


def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "vismech"
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run([str(exe), "run", "method=nope"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vismech: error: unknown method 'nope'; known methods: " + ", ".join(METHODS.names())
    assert "Traceback" not in proc.stderr + proc.stdout

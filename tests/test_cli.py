"""The `vismech` command end to end on the mini track: run, sweeps, list, the console script."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vismech import cli
from vismech.errors import UnknownNameError
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
    shutil.rmtree(workspace.results)  # else an equal record on file is left as it was (tests/test_trials.py)
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


# user errors (bad names, values, files, records, output folders): tests/test_bad_input.py


def _sections(out: str) -> dict[str, str]:
    """`vismech list`'s output cut at its section titles, whitespace collapsed (wrapped cells read as one text)."""
    parts = re.split(r"^(tasks|methods|models|metrics):$", out, flags=re.M)
    return {name: " ".join(text.split()) for name, text in zip(parts[1::2], parts[2::2])}


def test_list_names_everything_registered_with_whole_descriptions(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # narrow: long descriptions must wrap, not be cut
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    sections = _sections(out)
    assert set(sections) == {"tasks", "methods", "models", "metrics"}
    assert max(len(line) for line in out.splitlines()) <= 80
    for name, registry in (("tasks", TASKS), ("methods", METHODS), ("metrics", METRICS)):
        for entry in registry.entries():
            assert f" {entry.name} {' '.join(entry.summary.split())}" in sections[name], entry.name
    cad = METHODS.entry("cad_amplify").summary
    assert len(cad) > 80 and cad.endswith(".")  # a summary longer than a line, whole (not its docstring's line 1)
    assert "higher is better" in sections["metrics"] and "(control)" in sections["methods"]
    assert cli.main(["list", "widgets"]) == 2
    assert "unknown list section 'widgets'; known list sections: methods, metrics, models, tasks" in capsys.readouterr().err


def test_listed_models_are_the_names_run_accepts(capsys):
    """`list models` names exactly the `model=` choices, each composes, and its loader is a registered one."""
    from hydra import compose, initialize_config_dir

    assert cli.main(["list", "models"]) == 0
    listed = cli.model_configs()
    text = _sections(capsys.readouterr().out)["models"]
    assert [name for name, _, _ in listed] == cli.group_options("model")
    with initialize_config_dir(str(cli.config_dir()), version_base="1.3", job_name="names"):
        for name, loader, description in listed:
            assert f" {name} {loader} {' '.join(description.split())}" in text
            assert compose("config", overrides=[f"model={name}"]).model.name == loader
            assert loader in MODELS
    cli.check_overrides([f"model={','.join(name for name, _, _ in listed)}"])  # every listed name is accepted
    for loader in ("timm_vit", "stable_diffusion", "ddpm"):  # loaders are not `model=` choices, and are not listed
        assert loader not in [name for name, _, _ in listed]
        with pytest.raises(UnknownNameError):
            cli.check_overrides([f"model={loader}"])


def test_zoo_ls_is_a_table_of_the_manifest(capsys, monkeypatch):
    from vismech.zoo.manifest import read_manifest

    monkeypatch.setenv("COLUMNS", "120")
    assert cli.main(["zoo", "ls"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120
    assert "{" not in out and "}" not in out  # no Python dicts
    flat = " ".join(out.split())
    for name, entry in read_manifest().items():
        row = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        weights = next(d for rel, d in entry["files"].items() if rel.endswith(".safetensors"))
        assert f" {entry['seed']} " in row and weights[:12] in out
    assert "test_accuracy=0.8182" in flat  # vit_world's measured quality, flattened to key=value


def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "vismech"
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run([str(exe), "run", "method=nope"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 2
    known = ", ".join(cli.group_options("method"))  # what `method=` accepts: the method yamls and plugins
    assert proc.stderr.strip() == f"vismech: error: unknown method 'nope'; known methods: {known}"
    assert "Traceback" not in proc.stderr + proc.stdout

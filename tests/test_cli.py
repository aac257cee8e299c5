"""The `vismech` command end to end on the mini track: run, sweeps, list, the console script."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

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


# user errors (bad names, values, files, records, output folders): tests/test_bad_input.py


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


def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "vismech"
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run([str(exe), "run", "method=nope"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vismech: error: unknown method 'nope'; known methods: " + ", ".join(METHODS.names())
    assert "Traceback" not in proc.stderr + proc.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_for_a_person_at_a_terminal(monkeypatch):
    from vismech.progress import progress_bar, progress_enabled

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file or a pipe
    assert not progress_enabled()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress_enabled()
    with progress_bar(total=3, desc="fit", unit="img") as bar:
        bar.update(1)
        bar.refresh()
        shown = terminal.getvalue().split("\r")[-1]
    assert shown.startswith("fit:") and "1/3" in shown and "img/s]" in shown and "<00:" in shown  # done, rate, ETA
    for value in ("true", "1", "TRUE"):
        monkeypatch.setenv("CI", value)
        assert not progress_enabled()
        assert progress_bar(total=3).disable
    monkeypatch.setenv("CI", "false")
    assert progress_enabled()

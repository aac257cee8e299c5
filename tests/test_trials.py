"""Trial runs stay off the board; a repeated run leaves its record (and the board) untouched, byte for byte."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf
from records import record

from vismech import cli, leaderboard
from vismech.io import atomic_write_text
from vismech.results import load_record, same_result
from vismech.trials import protocol_differences
from vismech.verification_file import Verification, load_verification, sha256_of, verification_path


def _paths(root: Path) -> list[str]:
    return [f"paths.results_dir={root / 'results'}", f"paths.cache_dir={root / 'cache'}",
            f"paths.leaderboard={root / 'leaderboard.md'}", f"paths.runs_dir={root / 'runs'}"]


def test_a_limited_run_is_a_trial_kept_off_the_board_and_reports_off_a_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VISMECH_PROGRESS_INTERVAL")}
    env["COLUMNS"] = "200"  # one line per summary row, whatever the path lengths
    proc = subprocess.run([sys.executable, "-m", "vismech.cli", "run", "method=activation_path", "task.limit=4",
                           *_paths(tmp_path)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = (tmp_path / "runs" / "trials").rglob("*.json")
    assert path.relative_to(tmp_path / "runs" / "trials").parts[:3] == ("mini", "neuron_path", "vit_world")
    assert load_record(path).items.size == 4
    assert not (tmp_path / "results").exists() and not (tmp_path / "leaderboard.md").exists()
    # off a terminal: whole progress lines, no bar redrawn with carriage returns
    assert "\r" not in proc.stderr
    assert "fit: 4/4 img in " in proc.stderr and "test: 1/1 batch in " in proc.stderr
    rows = {line.split()[0]: line.split(None, 1)[1] for line in proc.stdout.splitlines() if len(line.split()) > 1}
    assert rows["jas"].startswith(f"{load_record(path).headline_point().metrics['jas'].value:.4f} [")
    assert rows["record"] == os.path.relpath(path, tmp_path)
    assert rows["trial"] == "task.limit=4 (the protocol's: 64)"
    assert rows["board"] == "not touched: a trial run is never on the board"
    assert rows["pictures"].startswith("runs/neuron_path/activation_path/")
    assert (tmp_path / rows["pictures"] / "paths.png").is_file()


def test_a_repeated_run_leaves_record_verification_and_board_untouched(tmp_path, monkeypatch, capsys):
    """A protocol of 4 items (a copy of the configs whose neuron_path task declares `limit: 4`), run twice on what
    the runs take for a clean checkout (a developer's checkout may have uncommitted code, whose records are always
    rewritten: nothing says what that code was), each run with its own time stamp."""
    from datetime import datetime, timezone

    from vismech import results, runner

    clean = results.provenance().model_copy(update={"git_dirty": False})
    monkeypatch.setattr(runner, "provenance", lambda: clean.model_copy(
        update={"created": datetime.now(timezone.utc).isoformat(timespec="microseconds")}))
    configs = tmp_path / "configs"
    shutil.copytree(cli.config_dir(), configs)
    task = configs / "task" / "neuron_path.yaml"
    task.write_text(task.read_text().replace("limit: 64 ", "limit: 4  "))
    assert OmegaConf.load(task).limit == 4
    monkeypatch.setattr(cli, "config_dir", lambda: configs)
    args = ["run", "method=activation_path", *_paths(tmp_path / "out")]

    assert cli.main(args) == 0
    first = capsys.readouterr().out
    [path] = (tmp_path / "out" / "results").rglob("*.json")
    board = tmp_path / "out" / "leaderboard.md"
    assert "written" in first and "leaderboard.md: changed" in first
    # a verification of these exact bytes, as `vismech verify` leaves beside a record
    atomic_write_text(verification_path(path), Verification(
        record_file=path.name, record_sha256=sha256_of(path), passed=True, items="all", skipped=[], checks=[],
        git_commit="c", device="cpu", created="2026-01-01T00:00:00+00:00").model_dump_json())
    leaderboard.write(path.parents[3], board)  # what `vismech verify` does next: the row shows it verified
    before = [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in (path, board)]

    assert cli.main(args) == 0
    second = capsys.readouterr().out
    assert [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in (path, board)] == before
    assert "unchanged: the file holds this result already" in second
    assert "leaderboard.md: unchanged" in second
    assert load_verification(path) is not None  # still the verification of this record
    assert "yes (all items)" in board.read_text()


def test_same_result_ignores_when_and_how_long_but_not_what_was_measured():
    base = record()
    later = base.model_copy(update={
        "cost": base.cost.model_copy(update={"wall_time_s": 9.0, "fit_time_s": 3.0, "peak_memory_mb": 7.0,
                                             "fit_reused": True, "device": "cpu (16 cores)"}),
        "provenance": base.provenance.model_copy(update={"created": "2027-01-01T00:00:00+00:00",
                                                         "platform": "y"})})
    assert same_result(base, later)
    assert not same_result(base, record(values=(0.1, 0.2, 0.3, 0.5)))  # another measured value
    assert not same_result(base, base.model_copy(update={"config": {"seed": 1}}))
    assert not same_result(base, base.model_copy(update={"cost": base.cost.model_copy(update={"forward_passes": 3})}))
    libraries = base.provenance.model_copy(update={"libraries": {"torch": "9"}})
    assert not same_result(base, base.model_copy(update={"provenance": libraries}))
    dirty = base.provenance.model_copy(update={"git_dirty": True})  # uncommitted code made it: unknown code
    assert not same_result(base.model_copy(update={"provenance": dirty}), base)
    unknown = base.provenance.model_copy(update={"git_commit": "unknown"})
    assert not same_result(base, base.model_copy(update={"provenance": unknown}))


def test_code_of_another_commit_is_compared_file_by_file():
    from vismech.results import _git, same_code

    now = record().provenance.model_copy(update={"git_commit": _git("rev-parse", "HEAD")})
    first = _git("rev-list", "--max-parents=0", "HEAD").split()[0]  # the first commit: its code is long gone
    assert not same_code(now.model_copy(update={"git_commit": first}), now)
    assert not same_code(now.model_copy(update={"git_commit": "0" * 40}), now)  # a commit this clone lacks


def test_protocol_differences_name_the_moved_item_keys():
    declared = OmegaConf.create({"task": {"limit": 64, "fit": {"fit_ids": [0, 192], "steps": 25}}})
    seen = []

    def compose(overrides):
        seen.append(overrides)
        return declared

    def run(task: dict, overrides: list[str]) -> list[str]:
        cfg = OmegaConf.create({"task": task})
        return protocol_differences(cfg, overrides, ("limit", "fit.fit_ids"), compose)

    assert run({"limit": 64}, ["method=noop", "seed=1", "task.batch_size=8"]) == []  # nothing of the items
    assert seen == []
    assert run({"limit": 64}, ["method=noop", "task.limit=64"]) == []  # the protocol's own value
    assert seen[-1] == ["method=noop"]
    assert run({"limit": 16}, ["task.limit=16"]) == ["task.limit=16 (the protocol's: 64)"]
    fit = {"fit_ids": [0, 10], "steps": 25}
    assert run({"limit": 64, "fit": fit}, ["++task.fit.fit_ids=[0,10]"]) == [
        "task.fit.fit_ids=[0, 10] (the protocol's: [0, 192])"]
    assert run({"limit": 64, "fit": fit}, ["task.fit={fit_ids:[0,10],steps:25}"]) == [
        "task.fit.fit_ids=[0, 10] (the protocol's: [0, 192])"]  # a node that holds an item key
    assert run({"limit": 64, "fit": {"fit_ids": [0, 192], "steps": 4}}, ["task.fit.steps=4"]) == []


def test_a_bad_trial_value_is_one_line(tmp_path, capsys):
    assert cli.main(["run", "trial=maybe", *_paths(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("trial must be auto, true or false, got 'maybe'")

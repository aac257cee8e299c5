"""The contributor's path of docs/submitting.md, end to end on the mini track: copy the template, install it as its
own package, run it, verify the record, see it verified on the leaderboard; no file of the suite changes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vismech import cli, leaderboard
from vismech.verification_file import load_verification, verification_path

from conftest import install_package

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def contributed(tmp_path, monkeypatch):
    src = tmp_path / "my-method"
    shutil.copytree(REPO / "templates" / "method", src)  # step 1 of the guide: copy the template
    install_package(src, tmp_path, monkeypatch)
    return src


def test_template_to_verified_leaderboard_row(contributed, workspace, tmp_path, capsys):
    suite_before = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)leaderboard.md"],
                                  cwd=REPO, capture_output=True, text=True).stdout
    # the package's own test passes against the installed suite
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(contributed / "tests")],
                          cwd=contributed, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:]

    assert workspace.run("method=grad_x_activation_path", "task.limit=8") == 0
    [path] = list(workspace.results.rglob("grad_x_activation_path--*.json"))
    assert cli.main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED on all items" in out and "max item diff" in out
    assert load_verification(path).passed
    leaderboard.write(workspace.results, workspace.leaderboard)
    row = next(line for line in workspace.leaderboard.read_text().splitlines() if "grad_x_activation_path" in line)
    assert "from `vismech-method-template`" in row and row.endswith("| yes (all items) |")

    # a subset re-run checks the per-item metrics and says which set-level ones it skipped
    assert cli.main(["verify", "--limit", "3", str(path)]) == 0
    out = capsys.readouterr().out
    assert "skipped (set-level, not reproducible on a subset): path_consistency@0" in out
    assert "VERIFIED on first 3 items" in out
    assert load_verification(path).items == "all"  # the partial check did not replace the full verification

    # an edited claim is no longer the verified file, and its re-run does not match
    data = json.loads(path.read_text())
    jas = data["sweep"][0]["metrics"]["jas"]
    jas["item_values"] = [v + 0.5 for v in jas["item_values"]]
    for key in ("value", "ci_low", "ci_high"):
        jas[key] += 0.5
    path.write_text(json.dumps(data))
    assert load_verification(path) is None
    leaderboard.write(workspace.results, workspace.leaderboard)
    row = next(line for line in workspace.leaderboard.read_text().splitlines() if "grad_x_activation_path" in line)
    assert row.endswith("| no |")
    assert cli.main(["verify", str(path)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert json.loads(verification_path(path).read_text())["passed"] is False
    assert subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)leaderboard.md"],
                          cwd=REPO, capture_output=True, text=True).stdout == suite_before


def test_a_record_that_asks_to_instantiate_something_is_refused(workspace, tmp_path, capsys):
    assert workspace.run("task.limit=2") == 0
    [path] = list(workspace.results.rglob("*.json"))
    data = json.loads(path.read_text())
    data["config"]["model"]["params"]["weights"] = {"_target_": "os.system", "_args_": ["touch pwned"]}
    path.write_text(json.dumps(data))
    assert cli.main(["verify", str(path)]) == 2
    assert "asks to instantiate 'os.system'; records are data and are never executed" in capsys.readouterr().err
    assert not (Path.cwd() / "pwned").exists() and not verification_path(path).exists()

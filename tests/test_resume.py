"""Resume: a run killed (SIGKILL) at any write and started again with the same command finishes with the same record
as an uninterrupted run, without recomputing finished work and without leaving a partial file anywhere."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from records import assert_same_sweep
from safetensors.torch import load_file
from test_determinism import EXACT, RTOL_SMALL_BATCH

from vismech import leaderboard

# 4 batches of 2 items; random_path has a real fit (forward and backward passes) that is cached
ARGS = ["task.limit=8", "task.batch_size=2", "method=random_path", "task.strengths=[0.0,2.0]"]
VOLATILE_COST = ("wall_time_s", "fit_time_s", "peak_memory_mb", "fit_reused", "resumed_batches")  # seconds, RSS, reuse


def _paths(root: Path) -> list[str]:
    return [f"paths.results_dir={root / 'results'}", f"paths.cache_dir={root / 'cache'}",
            f"paths.leaderboard={root / 'leaderboard.md'}", f"paths.runs_dir={root / 'runs'}", "trial=false"]


def _start(root: Path, delay: float | None) -> subprocess.Popen:
    env = {**os.environ, "CI": "true"}
    env.pop("VISMECH_TEST_WRITE_DELAY", None)
    if delay is not None:
        env["VISMECH_TEST_WRITE_DELAY"] = str(delay)  # each atomic write waits before its rename: a kill window
    return subprocess.Popen([sys.executable, "-m", "vismech.cli", "run", *ARGS, *_paths(root)], cwd=root, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"run ended (rc {proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()  # reaped, so its pid no longer counts as a live writer
    assert proc.returncode == -signal.SIGKILL


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")] if folder.exists() else []


def _whole(folder: Path, name: str) -> list[Path]:
    """Files called `name` outside temporaries (what a reader may take for finished)."""
    return [p for p in folder.rglob(name) if not any(part.endswith(".tmp") for part in p.parts)]


def _batch_files(root: Path) -> list[Path]:
    return sorted((root / "cache" / "progress").glob("*/*.safetensors"))


def _stamps(paths: list[Path]) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def _comparable(record: dict) -> dict:
    record = json.loads(json.dumps(record))
    for key in VOLATILE_COST:
        record["cost"].pop(key)
    record["provenance"].pop("created")
    return record


def test_killed_at_every_stage_resumes_to_the_uninterrupted_record(workspace, tmp_path):
    assert workspace.run(*ARGS) == 0
    [reference] = workspace.records()
    root = tmp_path / "killed"
    root.mkdir()
    findings, results = root / "cache" / "findings", root / "results"

    # 1. while the fit's finding folder is being renamed into place: nothing of it may count as done
    proc = _start(root, delay=0.3)
    _kill_when(proc, lambda: bool(_temporaries(findings)), "the finding's temporary folder")
    assert not _whole(findings, "finding.json") and _temporaries(findings)

    # 2. after two of the four batches are on disk
    proc = _start(root, delay=0.3)
    _kill_when(proc, lambda: len(_batch_files(root)) >= 2, "two batch files")
    [finding] = _whole(findings, "finding.json")
    finding_stamp = _stamps([finding.parent])
    done = _batch_files(root)
    assert len(done) == 2 and not _temporaries(findings)

    # 3. while the record is being written (every batch finished)
    proc = _start(root, delay=0.3)
    _kill_when(proc, lambda: bool(_temporaries(results)), "the record's temporary file")
    assert _stamps(done).items() <= _stamps(_batch_files(root)).items()  # finished batches were not redone
    assert len(_batch_files(root)) == 4 and not _whole(results, "*.json")
    done = _batch_files(root)

    # 4. after the record, while leaderboard.md is being written
    proc = _start(root, delay=0.3)
    _kill_when(proc, lambda: any(p.name.startswith(".leaderboard.md.") for p in root.iterdir()),
               "the leaderboard's temporary file")
    assert _stamps(_batch_files(root)) == _stamps(done) and len(list(results.rglob("*.json"))) == 1

    # 5. the same command once more runs to the end
    proc = _start(root, delay=None)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "resumed 4 of 4 batches" in out

    [path] = list(results.rglob("*.json"))
    record = json.loads(path.read_text())
    assert _comparable(record) == _comparable(reference)
    assert record["cost"]["resumed_batches"] == 4 and reference["cost"]["resumed_batches"] == 0
    assert record["cost"]["fit_reused"] is True and reference["cost"]["fit_reused"] is False
    assert _stamps([finding.parent]) == finding_stamp  # the fit was made once, by the run killed in step 2
    # nothing partial anywhere: no temporaries, no progress left, every file reads whole
    assert _temporaries(root) == []
    assert not (root / "cache" / "progress").exists()
    for p in root.rglob("*.json"):
        json.loads(p.read_text())
    for p in root.rglob("*.safetensors"):
        load_file(str(p))
    board = root / "leaderboard.md"
    assert board.read_text() == leaderboard.outputs(leaderboard.collect(results), board)[board]


def test_progress_files_are_loaded_not_recomputed(workspace, monkeypatch):
    """In process: a second run over the same progress folder computes no batch; another batch size recomputes."""
    from vismech import runner
    from vismech.benchmarks import base

    computed = []
    checkpointed = base.Benchmark._checkpointed_step

    def counting(self, step, batch, batch_idx, *args, **kwargs):
        def counted(*a, **k):
            computed.append(batch["id"].tolist())
            return step(*a, **k)

        return checkpointed(self, counted, batch, batch_idx, *args, **kwargs)

    monkeypatch.setattr(base.Benchmark, "_checkpointed_step", counting)
    drop = runner._drop_progress
    monkeypatch.setattr(runner, "_drop_progress", lambda folder: None)  # as if killed just before the end
    assert workspace.run(*ARGS) == 0
    ids = sorted(i for batch in computed for i in batch)
    assert [len(b) for b in computed] == [2, 2, 2, 2] and len(set(ids)) == 8
    [first] = workspace.records()
    assert len(list((workspace.root / "cache" / "progress").glob("*/*.safetensors"))) == 4

    computed.clear()
    shutil.rmtree(workspace.results)  # else the equal record on file is left as it was, resumed_batches 0
    assert workspace.run(*ARGS) == 0
    [second] = workspace.records()
    assert computed == [] and second["cost"]["resumed_batches"] == 4
    assert _comparable(second) == _comparable(first)  # passes included: loaded batches count what they cost

    monkeypatch.setattr(runner, "_drop_progress", drop)
    computed.clear()
    assert workspace.run(*ARGS, "task.batch_size=4") == 0
    [third] = workspace.records()
    assert computed == [ids[:4], ids[4:]] and third["cost"]["resumed_batches"] == 0
    # recomputed in batches of 4: equal up to the small-batch GEMM tolerance of test_determinism
    assert_same_sweep(first, third, EXACT, RTOL_SMALL_BATCH)
    assert not (workspace.root / "cache" / "progress").exists()


def test_a_batch_file_that_does_not_read_is_recomputed(workspace, monkeypatch):
    from vismech import runner

    monkeypatch.setattr(runner, "_drop_progress", lambda folder: None)
    assert workspace.run(*ARGS) == 0
    [first] = workspace.records()
    files = sorted((workspace.root / "cache" / "progress").glob("*/*.safetensors"))
    files[1].write_bytes(files[1].read_bytes()[:100])  # cut short by hand (an atomic write never leaves this)
    shutil.rmtree(workspace.results)  # else the equal record on file is left as it was
    assert workspace.run(*ARGS) == 0
    [second] = workspace.records()
    assert second["cost"]["resumed_batches"] == 3
    assert _comparable(second) == _comparable(first)


def test_benchmarks_whose_state_cannot_be_restored_keep_no_progress(tmp_path):
    import torch
    from torchmetrics import Metric

    from vismech.benchmarks.base import Benchmark

    class Total(Metric):  # a summed state: per-batch additions are not kept as list entries
        def __init__(self):
            super().__init__()
            self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

        def update(self, x):
            self.total += x

        def compute(self):
            return self.total

    class Toy(Benchmark):
        name, version, protocol, metric_names, primary_metric, headline_rule = "toy", "1", "p", ("jas",), "jas", "r"

        def test_step(self, batch, batch_idx):
            pass

    class Subject:
        model = torch.nn.Linear(1, 1)

    assert Toy.test_step.__wrapped__ is not None  # the subclass's step is wrapped at class creation
    toy = Toy(Subject(), None, None, [1.0], 0)
    assert toy.resume_in(tmp_path) and toy.progress_dir == tmp_path
    toy.point_metrics[0]["jas"] = Total()
    assert not toy.resume_in(tmp_path) and toy.progress_dir is None

    class Opaque(Toy):
        resumable = False

    assert not Opaque(Subject(), None, None, [1.0], 0).resume_in(tmp_path)

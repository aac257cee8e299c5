"""Multi-device: the same run under Lightning DDP on 2 CPU processes (gloo) gives the record of 1 process, also
when the 2-process run was killed half way and resumed from the batch files each rank wrote.

`vismech run ... trainer.devices=2 trainer.strategy=ddp` runs in a subprocess: Lightning's launcher starts rank 1
by re-executing the command line, which must not happen inside pytest.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

# 15 items in batches of 4: each rank gets every other item, two batches each; the sampler pads rank 1 with the
# first item again, which the per-item metrics drop by id
ARGS = ["task.limit=15", "task.batch_size=4", "method=random_path", "task.strengths=[0.0,2.0]"]
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def _start(workspace, delay: float | None) -> subprocess.Popen:
    env = {**os.environ, "CI": "true"}
    env.pop("VISMECH_TEST_WRITE_DELAY", None)
    if delay is not None:
        env["VISMECH_TEST_WRITE_DELAY"] = str(delay)  # test-only: each atomic write waits before its rename
    # a session of its own: killing it kills both ranks and nothing else
    return subprocess.Popen([sys.executable, "-m", "vismech.cli", "run", *ARGS, *workspace.paths(), *DDP],
                            cwd=workspace.root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@functools.cache
def _positions() -> dict[int, int]:
    from vismech.datasets.world import WorldItems

    return {item: k for k, item in enumerate(WorldItems("test", limit=15).ids)}


def _ranks_done(progress) -> set[int]:
    """Which ranks have a finished batch on disk: Lightning's sampler gives rank r the items at positions r, r+2, ..."""
    position = _positions()
    ranks = set()
    for path in progress.glob("*/*.safetensors"):
        ranks.add(position[int(load_file(str(path))["0/jas/ids/0"][0])] % 2)
    return ranks


def test_two_processes_give_the_record_of_one_also_after_a_kill(workspace):
    progress = workspace.root / "cache" / "progress"
    proc = _start(workspace, delay=0.3)
    deadline = time.monotonic() + 180
    while _ranks_done(progress) != {0, 1}:  # kill once each rank has finished a batch
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no batch files"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    written = sorted(progress.glob("*/*.safetensors"))
    assert 2 <= len(written) < 4 and _ranks_done(progress) == {0, 1}  # side by side, no file lost to the other

    proc = _start(workspace, delay=None)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out + err  # two processes did run
    assert f"resumed {len(written)} of 4 batches" in out
    [two] = workspace.records()
    finding_stamps = [p.stat().st_mtime_ns for p in (workspace.root / "cache").rglob("finding.json")]
    assert len(finding_stamps) == 1  # rank 0 fitted and stored; rank 1 and the second run loaded it

    assert workspace.run(*ARGS) == 0  # one process, in this one
    [one] = workspace.records()
    assert (two["cost"]["world_size"], one["cost"]["world_size"]) == (2, 1)
    assert (two["cost"]["resumed_batches"], one["cost"]["resumed_batches"]) == (len(written), 0)
    assert two["sweep"] == one["sweep"]  # bit for bit: every item value, mean and CI
    for key in ("task", "method", "subject", "items", "seeds", "headline", "primary_metric", "protocol"):
        assert two[key] == one[key], key
    # 4 batches either way: the same passes, summed over ranks, loaded batches at what they cost; the padded
    # item is one more row in each of its batch's 3 passes (unedited and 2 strengths)
    for key in ("forward_passes", "backward_passes", "fit_forward_passes"):
        assert two["cost"][key] == one["cost"][key], key
    assert two["cost"]["forward_rows"] == one["cost"]["forward_rows"] + 3
    assert one["items"]["size"] == 15 and all(len(m["item_ids"]) == 15 for p in two["sweep"]
                                               for m in p["metrics"].values())
    assert {k: v for k, v in two["config"].items() if k != "trainer"} == \
           {k: v for k, v in one["config"].items() if k != "trainer"}
    assert two["config"]["trainer"]["devices"] == 2
    assert len(list(workspace.results.rglob("*.json"))) == 1  # rank 0 alone writes records
    assert not progress.exists()
    assert [p.stat().st_mtime_ns for p in (workspace.root / "cache").rglob("finding.json")] == finding_stamps
    assert not [p for p in workspace.root.rglob("*") if p.name.endswith(".tmp")]
    assert "`random_path`" in workspace.leaderboard.read_text()

"""Loggers: CSV by default (everything on disk), W&B offline on request."""
from __future__ import annotations

import csv
import json

import pytest


def test_csv_logger_writes_the_metrics(workspace):
    assert workspace.run("method=random_path", "task.limit=8", f"hydra.run.dir={workspace.root / 'run'}") == 0
    [metrics_csv] = list((workspace.root / "run" / "csv").rglob("metrics.csv"))
    rows = list(csv.DictReader(metrics_csv.open()))
    record = workspace.records()[0]
    logged = float(next(r["prob_ratio@0"] for r in rows if r.get("prob_ratio@0")))
    assert logged == pytest.approx(record["sweep"][0]["metrics"]["prob_ratio"]["value"])
    hparams = (workspace.root / "run" / "csv").rglob("hparams.yaml")
    assert "random_path" in next(hparams).read_text()
    # the run's pictures and tables lie beside its logs
    for name in ("paths.png", "class_similarity.png", "class_paths.json"):
        assert (workspace.root / "run" / name).stat().st_size > 100


def test_wandb_offline(workspace, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = workspace.root / "run"
    assert workspace.run("logger=wandb", "method=activation_path", "task.limit=8", f"hydra.run.dir={run_dir}") == 0
    [offline] = list(run_dir.rglob("offline-run-*"))
    [stream] = list(offline.glob("run-*.wandb"))
    data = stream.read_bytes()  # wandb's own binary log; the metric keys are stored as plain strings in it
    for key in ("prob_ratio@0", "jas@2", "neuron_path-activation_path-vit_world", "paths", "class_similarity"):
        assert key.encode() in data
    assert list((offline / "files" / "media" / "images").glob("paths_*.png"))  # the path picture was logged
    [saved] = list((offline / "files").glob("activation_path--*.json"))
    assert json.loads(saved.read_text()) == workspace.records()[0]  # the result record travels with the run
    assert list((run_dir / "csv").rglob("metrics.csv"))  # CSV stays on beside W&B


class _Broken(RuntimeError):
    pass


@pytest.mark.parametrize("stage", ["fit", "edit"])
def test_a_failed_run_leaves_no_open_wandb_run(workspace, monkeypatch, stage):
    """The fit fails before W&B has started a run; the edit fails inside Trainer.test, after the run has logged
    its hyperparameters. Either way the runner's `finally` leaves no run open in this process."""
    import wandb

    from vismech.methods.controls import NoOp
    from vismech.registry import METHODS

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)

    class FailingMethod(NoOp):
        """A method that raises in one stage (test only)."""

        name = f"fails_in_{stage}"

        def fit(self, subject, data):
            if stage == "fit":
                raise _Broken("fit failed")
            return super().fit(subject, data)

        def edit(self, subject, finding, strength):
            raise _Broken("edit failed")

    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # the registration ends with the test
    METHODS.add(FailingMethod.name, FailingMethod)
    run_dir = workspace.root / "run"
    code = workspace.run("logger=wandb", f"method={FailingMethod.name}", "task.limit=4", "task.batch_size=4",
                         f"hydra.run.dir={run_dir}")
    assert code != 0 and not workspace.records()
    assert wandb.run is None
    started = list(run_dir.rglob("offline-run-*"))
    assert len(started) == (1 if stage == "edit" else 0)  # the edit's failure came after the run had started

"""Loggers: CSV by default (everything on disk), W&B offline on request."""
from __future__ import annotations

import csv
import json

import pytest


def test_csv_logger_writes_the_metrics(workspace):
    assert workspace.run("method=random_neurons", "task.limit=16", f"hydra.run.dir={workspace.root / 'run'}") == 0
    [metrics_csv] = list((workspace.root / "run" / "csv").rglob("metrics.csv"))
    rows = list(csv.DictReader(metrics_csv.open()))
    record = workspace.records()[0]
    logged = float(next(r["accuracy@1"] for r in rows if r.get("accuracy@1")))
    assert logged == pytest.approx(record["sweep"][-1]["metrics"]["accuracy"]["value"])
    hparams = (workspace.root / "run" / "csv").rglob("hparams.yaml")
    assert "random_neurons" in next(hparams).read_text()


def test_wandb_offline(workspace, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = workspace.root / "run"
    assert workspace.run("logger=wandb", "task.limit=16", f"hydra.run.dir={run_dir}") == 0
    [offline] = list(run_dir.rglob("offline-run-*"))
    [stream] = list(offline.glob("run-*.wandb"))
    data = stream.read_bytes()  # wandb's own binary log; the metric keys are stored as plain strings in it
    for key in ("true_class_prob_drop@1", "accuracy@0.5", "classifier_ablation-noop-vit_world"):
        assert key.encode() in data
    [saved] = list((offline / "files").glob("noop--*.json"))
    assert json.loads(saved.read_text()) == workspace.records()[0]  # the result record travels with the run
    assert list((run_dir / "csv").rglob("metrics.csv"))  # CSV stays on beside W&B

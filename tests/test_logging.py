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

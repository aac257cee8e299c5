"""One run: config -> subject -> method.fit (cached) -> benchmark under Lightning -> result record -> leaderboard."""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from . import leaderboard
from .cost import Stopwatch, peak_memory_mb
from .config import typed_config
from .errors import VismechError
from .loggers import close as close_loggers, save_artifacts
from .method import build_method
from .registry import METHODS, MODELS, TASKS
from .results import (Cost, Headline, ItemSet, MethodInfo, MetricResult, ResultRecord, Seeds,
                      SubjectInfo, SweepPoint, provenance, write_record)
from .seeding import SCHEME
from .store import Store, finding_key


def progress_enabled() -> bool:
    """Progress bars for people at a terminal; quiet in CI and in logs."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


@dataclass
class RunOutcome:
    record: ResultRecord
    path: Path


def _plain(node: Any) -> dict:
    return {} if node is None else OmegaConf.to_container(node, resolve=True)


def _loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def execute(cfg: DictConfig) -> RunOutcome | None:
    """Run the configured benchmark; returns the record on rank zero (None on other ranks)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # device banners and tips
    task, load_subject = TASKS.get(cfg.task.name), MODELS.get(cfg.model.name)
    started = time.perf_counter()  # after the registries' one-time imports, which are not the run's cost
    seed = cfg.seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise VismechError(f"seed must be an integer, got {seed!r}")
    task_cfg = typed_config(task.Config, _plain(cfg.task), f"task '{task.name}'")
    method = build_method(cfg.method.name, _plain(cfg.method.get("config")), seed=seed, task=task.name)
    strengths = [task.check_strength(method, s) for s in task_cfg.strengths]
    subject = load_subject(**_plain(cfg.model.get("params")))
    items, fit_data = task.make_items(task_cfg, subject), task.make_fit_data(task_cfg, subject)

    subject.model.to(_fit_device(cfg))  # fitting runs before Lightning places the model, on the run's accelerator
    store = Store(cfg.paths.cache_dir)
    key = finding_key(subject.weights_digest, method.name, getattr(method, "version", "1"), method.config_dict(),
                      method.seed, fit_data.digest())

    def fit() -> tuple:
        before = subject.cost.snapshot()
        with Stopwatch() as clock:
            finding = method.fit(subject, fit_data)
        after = subject.cost.snapshot()
        return finding, {**{k: after[k] - before[k] for k in after}, "seconds": clock.seconds}

    finding, fit_cost, fit_reused = store.finding(key, fit)
    eval_start = subject.cost.snapshot()

    bench = task(subject, method, finding, strengths, run_seed=seed, task_cfg=task_cfg)
    loader = DataLoader(items, batch_size=task_cfg.batch_size, shuffle=False)
    loggers = _loggers(cfg)
    trainer = L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), logger=loggers or False,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress_enabled())
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(resolved)
    trainer.test(bench, dataloaders=loader, verbose=False)
    if trainer.global_rank != 0:
        close_loggers(loggers)
        return None

    entry = METHODS.entry(method.name)
    record = ResultRecord(
        task=task.name, benchmark_version=task.version, primary_metric=task.primary_metric, protocol=task.protocol,
        method=MethodInfo(name=method.name, source=entry.source, control=method.control, config=method.config_dict(),
                          config_digest=method.config_digest(), finding_digest=finding.digest()),
        subject=SubjectInfo(id=subject.id, track=subject.track, weights_digest=subject.weights_digest,
                            source=subject.source),
        items=ItemSet(name=items.name, size=len(items), digest=items.digest()),
        seeds=Seeds(run_seed=seed, scheme=SCHEME),
        sweep=[SweepPoint(strength=s, metrics={n: MetricResult(**m) for n, m in summary.items()})
               for s, summary in zip(strengths, bench.summaries)],
        headline=Headline(strength=bench.headline_strength(), rule=task.headline_rule),
        cost=_cost(time.perf_counter() - started, fit_cost, fit_reused, eval_start, subject.cost.snapshot(),
                   bench.device, trainer.world_size),
        provenance=provenance(),
        config={k: v for k, v in resolved.items() if k not in ("paths", "logger")},
    )
    path = write_record(record, cfg.paths.results_dir)
    save_artifacts(bench.artifacts(), _run_dir(cfg), loggers)
    close_loggers(loggers, path)
    if cfg.paths.get("leaderboard"):
        leaderboard.write(cfg.paths.results_dir, cfg.paths.leaderboard)
    return RunOutcome(record, path)


def _fit_device(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _run_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.paths.runs_dir)


def _cost(wall: float, fit: dict, fit_reused: bool, eval_start: dict, eval_end: dict, device: torch.device,
          world_size: int) -> Cost:
    """Passes this result needed: the evaluation's, plus the fit's as recorded when the finding was made."""
    passes = {k: eval_end[k] - eval_start[k] + fit[k] for k in eval_end}
    return Cost(wall_time_s=wall, fit_time_s=fit["seconds"], fit_reused=fit_reused,
                fit_forward_passes=fit["forward_passes"], fit_backward_passes=fit["backward_passes"], **passes,
                peak_memory_mb=peak_memory_mb(device), device=_device_name(device), world_size=world_size)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({os.cpu_count()} cores)"

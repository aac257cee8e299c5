"""One run: config -> subject -> method.fit (cached) -> benchmark under Lightning -> result record -> leaderboard."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from . import leaderboard
from .cost import Stopwatch, peak_memory_mb
from .code_digest import code_digest
from .config import typed_config
from .errors import VismechError
from .loggers import close as close_loggers, save_artifacts
from .method import build_method
from .registry import METHODS, MODELS, TASKS
from .results import (Cost, Headline, ItemSet, MethodInfo, MetricResult, ResultRecord, Seeds,
                      SubjectInfo, SweepPoint, provenance, write_record)
from .seeding import SCHEME
from .store import Store, content_key, finding_key

log = logging.getLogger("vismech")


def progress_enabled() -> bool:
    """Progress bars for people at a terminal; quiet in CI and in logs."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it"):
    """A bar with items done, rate and ETA on stderr for a loop a person waits for outside the trainer (fits,
    samplers, training); silent under CI=true or when stderr is not a terminal. Use as `with progress_bar(total=n)
    as bar: ... bar.update(k)`, or wrap an iterable."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not progress_enabled(), leave=False,
                dynamic_ncols=True)


def check_output_folder(key: str, folder: str | os.PathLike) -> Path:
    """Fail before any work when `folder` could not be created or written (nothing is created here)."""
    folder = Path(folder)
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise VismechError(f"{key}='{folder}' cannot be a folder: '{probe}' is a file; give a writable folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise VismechError(f"{key}='{folder}' is not writable ('{probe}' is read-only); give a writable folder")
    return folder


@dataclass
class RunOutcome:
    record: ResultRecord
    path: Path


def _plain(node: Any) -> dict:
    if node is None:
        return {}
    # an interpolation such as ${oc.select:key,{}} resolves to a plain dict, not a config node
    return dict(node) if isinstance(node, dict) else OmegaConf.to_container(node, resolve=True)


def _loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


MAX_SEED = 2**63 - 1


@dataclass
class Plan:
    """What a run will do, checked before any work: the task, its typed config, the method and the sweep."""
    task: Any
    task_cfg: Any
    method: Any
    strengths: list[float]
    seed: int
    board: Path | None


def board_path(cfg: DictConfig) -> Path | None:
    """Where the run's leaderboard goes: a relative `paths.leaderboard` lies beside the results folder, so the board
    of another results folder never replaces this checkout's leaderboard.md."""
    board = cfg.paths.get("leaderboard")
    if not board:
        return None
    board = Path(board)
    return board if board.is_absolute() else Path(cfg.paths.results_dir).parent / board


def preflight(cfg: DictConfig, check_results: bool = True) -> Plan:
    """Every check that needs no model: names, values, output folders and (`check_results`) the results folder's
    records. The CLI calls it before Hydra makes a run folder; `execute` calls it again for in-process callers."""
    task = TASKS.get(cfg.task.name)
    MODELS.get(cfg.model.name)
    seed = cfg.seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise VismechError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise VismechError(f"seed must be in [0, 2**63-1], got {seed}")
    for key, value in _plain(cfg.model.get("params")).items():
        if isinstance(value, str) and not value.strip():
            raise VismechError(f"model.params.{key} is an empty string; give a path or null for the default")
    task_cfg = typed_config(task.Config, _plain(cfg.task), f"task '{task.name}'")
    method = build_method(cfg.method.name, _plain(cfg.method.get("config")), seed=seed, task=task.name)
    strengths = [task.check_strength(method, s) for s in task_cfg.strengths]
    board = board_path(cfg)
    check_output_folder("paths.results_dir", cfg.paths.results_dir)
    check_output_folder("paths.cache_dir", cfg.paths.cache_dir)
    check_output_folder("paths.runs_dir", cfg.paths.runs_dir)
    if board is not None:
        check_output_folder("paths.leaderboard", board.parent)
    # a record the board cannot read stops the run before it writes one
    if check_results and Path(cfg.paths.results_dir).is_dir():
        leaderboard.collect(cfg.paths.results_dir)
    return Plan(task, task_cfg, method, strengths, seed, board)


def _finite_finding(finding, method_name: str) -> None:
    """A fit that gives NaN or inf is the method's failure, named; the finding is never stored."""
    import math

    bad = [k for k, t in finding.tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]

    def walk(node, where):
        if isinstance(node, float) and not math.isfinite(node):
            bad.append(where)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(finding.meta, "meta")
    if bad:
        raise VismechError(f"method '{method_name}' produced a finding with non-finite values (NaN or inf) in "
                           f"{', '.join(sorted(bad)[:3])}; it was not stored")


def execute(cfg: DictConfig, results_checked: bool = False) -> RunOutcome | None:
    """Run the configured benchmark; returns the record on rank zero (None on other ranks). `results_checked`: the
    caller has just read every record of the results folder (the CLI, before Hydra started)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # device banners and tips
    # under DDP: padded samples are dropped by item id, and the logged values are already synced summaries
    warnings.filterwarnings("ignore", message=r".*Using `DistributedSampler` with the dataloaders.*")
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")  # torch 2.13
    plan = preflight(cfg, check_results=not results_checked)
    started = time.perf_counter()  # after the registries' one-time imports, which are not the run's cost
    task, task_cfg, method, strengths, seed = plan.task, plan.task_cfg, plan.method, plan.strengths, plan.seed
    load_subject = MODELS.get(cfg.model.name)
    if hasattr(method, "progress"):  # methods with bars of their own (DiffLens' trajectories and samples)
        method.progress = progress_enabled()
    loggers = _loggers(cfg)
    outcome, progress, failed = None, None, True
    try:
        outcome, progress = _evaluate(cfg, task, task_cfg, method, strengths, seed, started, loggers)
        failed = False
    finally:
        # every exit path, a failed fit or test included: a W&B run left unfinished would stay "running"
        close_loggers(loggers, outcome.path if outcome is not None else None, failed=failed)
    if outcome is None:  # ranks other than zero write nothing
        return None
    if cfg.paths.get("leaderboard"):
        leaderboard.write(cfg.paths.results_dir, cfg.paths.leaderboard)
    # only now: a run killed before this point restarts from the finished batches, record and artifacts included
    _drop_progress(progress)
    return outcome


def _evaluate(cfg: DictConfig, task, task_cfg, method, strengths: list[float], seed: int, started: float,
              loggers: list) -> tuple[RunOutcome | None, Path]:
    """Fit (or load the finding), test under Lightning, write the record and artifacts; (None, progress folder)
    on ranks other than zero."""
    trainer = _trainer(cfg, loggers)  # before any work: a bad trainer option must not cost a fit
    subject = load_subject(**_plain(cfg.model.get("params")))
    task.check_subject(task_cfg, subject)
    method.check_subject(subject, task.name)
    items, fit_data = task.make_items(task_cfg, subject), task.make_fit_data(task_cfg, subject)
    if task_cfg.limit is not None and len(items) > task_cfg.limit:
        raise VismechError(f"task '{task.name}' does not honour task.limit={task_cfg.limit} ({len(items)} items)")

    subject.model.to(_fit_device(cfg))  # fitting runs before Lightning places the model, on the run's accelerator
    store = Store(cfg.paths.cache_dir)
    code = method.code_identity()
    key = finding_key(subject.weights_digest, method.name, getattr(method, "version", "1"), method.config_dict(),
                      method.seed, fit_data.digest(), code)

    def fit() -> tuple:
        before = subject.cost.snapshot()
        with Stopwatch() as clock:
            finding = method.fit(subject, fit_data)
        _finite_finding(finding, method.name)
        after = subject.cost.snapshot()
        return finding, {**{k: after[k] - before[k] for k in after}, "seconds": clock.seconds}

    finding, fit_cost, fit_reused = store.finding(key, fit)
    eval_start = subject.cost.snapshot()

    bench = task(subject, method, finding, strengths, run_seed=seed, task_cfg=task_cfg)
    bench.cache_dir = Path(cfg.paths.cache_dir)  # generative tasks keep every image there (vismech.generations)
    progress = Path(cfg.paths.cache_dir) / "progress" / _run_key(task, task_cfg, method, finding, subject, seed, items,
                                                                  strengths, bench, code)
    bench.resume_in(progress)
    loader = DataLoader(items, batch_size=task_cfg.batch_size, shuffle=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(resolved)
    trainer.test(bench, dataloaders=loader, verbose=False)
    if trainer.global_rank != 0:
        return None, progress
    if bench.batches_all.get("resumed"):
        log.info("resumed %d of %d batches from %s", bench.batches_all["resumed"],
                 bench.batches_all["resumed"] + bench.batches_all["computed"], progress)

    entry = METHODS.entry(method.name)
    record = ResultRecord(
        task=task.name, benchmark_version=task.version, primary_metric=task.primary_metric, protocol=task.protocol,
        method=MethodInfo(name=method.name, source=entry.source, control=method.control, config=method.config_dict(),
                          config_digest=method.config_digest(), finding_digest=finding.digest(),
                          code_digest=code["code"], distribution=code["distribution"],
                          distribution_version=code["distribution_version"]),
        subject=SubjectInfo(id=subject.id, track=subject.track, weights_digest=subject.weights_digest,
                            source=subject.source),
        items=ItemSet(name=items.name, size=len(items), digest=items.digest()),
        seeds=Seeds(run_seed=seed, scheme=SCHEME),
        sweep=[SweepPoint(strength=s, metrics={n: MetricResult(**m) for n, m in summary.items()})
               for s, summary in zip(strengths, bench.summaries)],
        headline=Headline(**bench.headline(), rule=task.headline_rule),
        cost=_cost(time.perf_counter() - started, fit_cost, fit_reused, _eval_passes(eval_start, subject, bench),
                   bench.batches_all.get("resumed", 0), bench.device, trainer.world_size),
        provenance=provenance(),
        config={k: v for k, v in resolved.items() if k not in ("paths", "logger")},
    )
    path = write_record(record, cfg.paths.results_dir)
    save_artifacts(bench.artifacts(), _run_dir(cfg), loggers)
    close_loggers(loggers, path)
    if plan.board is not None:
        leaderboard.write(cfg.paths.results_dir, plan.board)
    # only now: a run killed before this point restarts from the finished batches, record and artifacts included
    _drop_progress(progress)
    return RunOutcome(record, path)


def _drop_progress(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # when no other run's progress is there


def _trainer(cfg: DictConfig, loggers: list) -> L.Trainer:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    options = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return L.Trainer(**options, logger=loggers or False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=progress_enabled())
    except (MisconfigurationException, ValueError, TypeError, ImportError) as exc:  # e.g. tpu without torch_xla
        first = " ".join(str(exc).split())
        raise VismechError(f"trainer options {options} rejected by Lightning: {first}") from None


def _run_key(task, task_cfg, method, finding, subject, seed, items, strengths, bench, code: dict) -> str:
    """Everything that decides a run's item values, the code of the method and the benchmark included; the batch
    size does not (values are per item)."""
    config = {k: v for k, v in asdict(task_cfg).items() if k != "batch_size"}
    fingerprints = {name: m.fingerprint() for _, name, m in bench._all_metrics() if hasattr(m, "fingerprint")}
    return content_key(kind="progress", task=task.name, version=task.version, task_config=config, method=method.name,
                       method_config=method.config_dict(), finding=finding.digest(), subject=subject.weights_digest,
                       seed=seed, items=items.digest(), strengths=strengths, metrics=fingerprints,
                       vismech=_vismech_version(), method_code=code, benchmark_code=code_digest(type(bench)))


def _vismech_version() -> str:
    from . import __version__

    return __version__


def _eval_passes(start: dict, subject, bench) -> dict:
    """Passes of the evaluation: this process's outside the test batches, plus every rank's batches, those loaded
    from a killed run's progress counted at what they cost then, so a resumed or multi-device run reports the
    passes its result needed."""
    end = subject.cost.snapshot()
    local = bench.batch_passes["computed"]
    every = bench.batch_passes_all or {"computed": dict(local), "resumed": dict(bench.batch_passes["resumed"])}
    return {k: end[k] - start[k] - local.get(k, 0) + every["computed"].get(k, 0) + every["resumed"].get(k, 0)
            for k in end}


def _fit_device(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _run_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.paths.runs_dir)


def _cost(wall: float, fit: dict, fit_reused: bool, eval_passes: dict, resumed: int, device: torch.device,
          world_size: int) -> Cost:
    """Passes this result needed: the evaluation's, plus the fit's as recorded when the finding was made."""
    passes = {k: eval_passes[k] + fit[k] for k in eval_passes}
    return Cost(wall_time_s=wall, fit_time_s=fit["seconds"], fit_reused=fit_reused,
                fit_forward_passes=fit["forward_passes"], fit_backward_passes=fit["backward_passes"], **passes,
                peak_memory_mb=peak_memory_mb(device), device=_device_name(device), world_size=world_size,
                resumed_batches=resumed)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({os.cpu_count()} cores)"

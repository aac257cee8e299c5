"""Benchmark base: one LightningModule per task, driven by `Trainer.test` over items with stable ids.

Resume. When the runner gives the benchmark a progress folder (`resume_in`), every finished batch leaves one
atomically written file there, named by a hash of the batch's item ids and holding what the batch appended to
each metric's list states (per-item ids and values at every sweep point) and the model passes it cost. A restarted
run that meets the same batch loads that file into the metrics instead of calling the subclass's `test_step`.
This is done by wrapping each subclass's `test_step` when the class is defined, so subclasses keep their
contract: implement `test_step(batch, batch_idx)` and feed `self.metric(point, name).update(ids, values)`.
Anything a subclass keeps outside its metrics is not restored: such a subclass sets `resumable = False` (or
keeps that state in a metric). Batches are matched by their ids, so a restart with another batch size or device
count recomputes instead of mixing; under DDP every rank writes the files of its own batches (two ranks that
share a padded batch write the same bytes).
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors, save as save_tensors
from torch import nn
from torch.utils.data import Dataset

from ..errors import VismechError
from ..finding import Finding
from ..io import atomic_write_bytes
from ..method import Method
from ..metrics.base import ItemMetric
from ..registry import METRICS
from ..subject import Subject


@dataclass
class TaskConfig:
    """Keys every task config has; a task's own Config adds its keys."""

    name: str
    batch_size: int = 64
    strengths: list[float] = field(default_factory=lambda: [1.0])
    limit: int | None = None  # keep the first N items by id; tasks set their own default

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise VismechError(f"task.limit must be >= 1 or null, got {self.limit}")
        if self.batch_size < 1:
            raise VismechError(f"task.batch_size must be >= 1, got {self.batch_size}")
        if not self.strengths:
            raise VismechError("task.strengths is empty; give at least one strength, e.g. task.strengths=[1.0]")
        repeated = sorted({s for s in self.strengths if self.strengths.count(s) > 1})
        if repeated:
            raise VismechError(f"task.strengths repeats {', '.join(f'{s:g}' for s in repeated)} in "
                               f"{list(self.strengths)}; give each strength once")


PROGRESS_FORMAT = "2"  # 2: set-level metric rows stored flat
PASSES = ("forward_passes", "forward_rows", "backward_passes")


def _resumable_step(step):
    """Wrap a subclass's `test_step`: load a finished batch from the progress folder, or run it and save it."""

    @functools.wraps(step)
    def test_step(self, batch, batch_idx, *args, **kwargs):
        if self._in_step:  # a subclass's step calling its parent's: the outermost call checkpoints
            return step(self, batch, batch_idx, *args, **kwargs)
        self._in_step = True
        try:
            return self._checkpointed_step(step, batch, batch_idx, *args, **kwargs)
        finally:
            self._in_step = False

    test_step._vismech_resumable = True
    return test_step


class Benchmark(L.LightningModule):
    """Subclasses set the class attributes, build items, and implement `test_step` with `self.metric(i, name)`."""

    name: ClassVar[str]
    version: ClassVar[str]
    protocol: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    headline_rule: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    # False when a subclass keeps per-item state outside its metrics that a restart could not rebuild
    resumable: ClassVar[bool] = True
    cache_dir: Path | None = None  # the run's cache folder; the runner sets it
    progress_dir: Path | None = None  # set by `resume_in`; None: no per-batch files
    _in_step = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("test_step")
        if step is not None and not getattr(step, "_vismech_resumable", False):
            cls.test_step = _resumable_step(step)

    def __init__(self, subject: Subject, method: Method, finding: Finding, strengths: list[float], run_seed: int,
                 task_cfg: TaskConfig | None = None):
        super().__init__()
        self.task_cfg = task_cfg
        self.subject, self.method, self.finding = subject, method, finding
        self.model = subject.model  # registered so that Lightning moves it to the run's device
        self.strengths, self.run_seed = list(strengths), run_seed
        self.point_metrics = nn.ModuleList(
            nn.ModuleDict({n: self.make_metric(n) for n in self.metric_names}) for _ in self.strengths)
        self.summaries: list[dict[str, dict[str, Any]]] = []
        # model passes of the test batches: computed here, or loaded with a finished batch (what it cost then)
        self.batch_passes = {"computed": Counter(), "resumed": Counter()}
        self.batches = Counter()  # computed / resumed, this rank; `on_test_end` sums them over ranks
        self.batch_passes_all: dict[str, dict[str, int]] = {}
        self.batches_all: dict[str, int] = {}

    def make_metric(self, name: str) -> ItemMetric:
        return METRICS.get(name)()

    def metric(self, point: int, name: str) -> ItemMetric:
        return self.point_metrics[point][name]

    def on_test_epoch_end(self) -> None:
        self.summaries = [{n: m.summarize() for n, m in metrics.items()} for metrics in self.point_metrics]
        self.log_dict({f"{n}@{s:g}": summary[n]["value"] for s, summary in zip(self.strengths, self.summaries)
                       for n in summary}, rank_zero_only=True)

    def headline_strength(self) -> float:
        """The sweep point shown on the leaderboard; the rule is stated in `headline_rule`."""
        return max(self.strengths)

    def headline(self) -> dict[str, Any]:
        """The fields of the record's `Headline` but its rule: a sweep point unless a task interpolates."""
        return {"strength": self.headline_strength()}

    # --- resume ----------------------------------------------------------------------------------------------------

    def resume_in(self, folder: str | Path) -> bool:
        """Keep finished batches in `folder` and load them from there; False (nothing kept) when this benchmark's
        metrics or state cannot be restored from per-batch files."""
        if not self.resumable or not all(self._list_states(m) is not None for _, _, m in self._all_metrics()):
            self.progress_dir = None
            return False
        self.progress_dir = Path(folder)
        return True

    def batch_key(self, batch: Any, batch_idx: int) -> str | None:
        """Names a batch by its item ids (order included); None: the batch is not checkpointed. A subclass whose
        batches carry their ids elsewhere than `batch["id"]` overrides this."""
        ids = batch.get("id") if isinstance(batch, dict) else None
        if ids is None:
            return None
        ids = torch.as_tensor(ids).detach().to("cpu", torch.int64).reshape(-1).contiguous()
        return hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:32]

    def reference_metrics(self) -> dict[str, ItemMetric]:
        """Metrics kept beside the sweep (e.g. the unedited model's, for a headline rule); saved with each batch."""
        return {}

    def _all_metrics(self):
        found = [(str(i), name, m) for i, metrics in enumerate(self.point_metrics) for name, m in metrics.items()]
        return found + [("reference", name, m) for name, m in self.reference_metrics().items()]

    @staticmethod
    def _list_states(metric) -> list[str] | None:
        names = list(getattr(metric, "_defaults", {}))
        return names if all(isinstance(metric._defaults[n], list) for n in names) else None

    def _checkpointed_step(self, step, batch, batch_idx, *args, **kwargs):
        key = None if self.progress_dir is None else self.batch_key(batch, batch_idx)
        path = None if key is None else self.progress_dir / f"{key}.safetensors"
        if path is not None and path.is_file() and self._load_batch(path):
            self.batches["resumed"] += 1
            return None
        marks = {(i, name, state): len(getattr(m, state)) for i, name, m in self._all_metrics()
                 for state in self._list_states(m) or ()}
        before = self.subject.cost.snapshot()
        out = step(self, batch, batch_idx, *args, **kwargs)
        after = self.subject.cost.snapshot()
        passes = {k: after[k] - before[k] for k in PASSES}
        self.batch_passes["computed"].update(passes)
        self.batches["computed"] += 1
        if path is not None:
            self._save_batch(path, marks, passes)
        return out

    def _save_batch(self, path: Path, marks: dict, passes: dict) -> None:
        tensors, counts = {}, {}
        metrics = {(i, name): m for i, name, m in self._all_metrics()}
        for (i, name, state), start in marks.items():
            new = getattr(metrics[(i, name)], state)[start:]
            counts[f"{i}/{name}/{state}"] = len(new)
            for k, t in enumerate(new):
                tensors[f"{i}/{name}/{state}/{k}"] = t.detach().cpu().clone()  # metrics share id tensors
        meta = {"format": PROGRESS_FORMAT, "counts": json.dumps(counts), "passes": json.dumps(passes)}
        atomic_write_bytes(path, save_tensors(tensors, metadata=meta))

    def _load_batch(self, path: Path) -> bool:
        """Append a finished batch's saved entries to the metrics; False (recompute it) if the file does not fit."""
        try:
            data = path.read_bytes()
            tensors = load_tensors(data)
            header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # safetensors: u64 size, JSON
            meta = header.get("__metadata__") or {}
            counts, passes = json.loads(meta["counts"]), json.loads(meta["passes"])
        except (OSError, SafetensorError, KeyError, ValueError, TypeError):
            return False
        metrics = {(i, name): m for i, name, m in self._all_metrics()}
        if meta.get("format") != PROGRESS_FORMAT or any(
                len(k.split("/")) != 3 or tuple(k.split("/")[:2]) not in metrics
                or not hasattr(metrics[tuple(k.split("/")[:2])], k.split("/")[2])
                or any(f"{k}/{j}" not in tensors for j in range(n)) for k, n in counts.items()):
            return False  # checked before anything is appended: a file that does not fit changes nothing
        touched = set()
        for k, n in counts.items():
            i, name, state = k.split("/")
            metric = metrics[(i, name)]
            getattr(metric, state).extend(tensors[f"{k}/{j}"].to(self.device) for j in range(n))
            touched.add(id(metric))
        for _, _, metric in self._all_metrics():
            if id(metric) in touched:
                metric._update_count += 1  # as an `update` call would: compute() must not take it for unused
                metric._computed = None
        self.batch_passes["resumed"].update(passes)
        return True

    def on_test_end(self) -> None:
        """Sum the batches and their passes over ranks, for the record's cost."""
        kinds = ("computed", "resumed")
        local = [float(self.batches[k]) for k in kinds] + [float(self.batch_passes[k][p]) for k in kinds
                                                           for p in PASSES]
        total = self.trainer.strategy.reduce(torch.tensor(local, dtype=torch.float64, device=self.device),
                                             reduce_op="sum") if self.trainer.world_size > 1 else torch.tensor(local)
        total = [int(round(v)) for v in total.tolist()]
        self.batches_all = dict(zip(kinds, total[:2]))
        self.batch_passes_all = {k: dict(zip(PASSES, total[2 + j * len(PASSES): 2 + (j + 1) * len(PASSES)]))
                                 for j, k in enumerate(kinds)}

    @classmethod
    def check_strength(cls, method: Method, strength: float) -> float:
        """A sweep point is the method's edit strength unless the task gives the sweep its own meaning."""
        return method.check_strength(strength)

    @classmethod
    def check_subject(cls, task_cfg: TaskConfig, subject: Subject) -> None:
        """Refuse, before the fit, a task config the subject cannot take (a depth beyond its layers); the default
        accepts every subject."""

    @classmethod
    def make_items(cls, task_cfg: TaskConfig, subject: Subject) -> Dataset:
        raise NotImplementedError

    @classmethod
    def make_fit_data(cls, task_cfg: TaskConfig, subject: Subject) -> Any:
        raise NotImplementedError

    def artifacts(self) -> dict[str, Any]:
        """Pictures (matplotlib figures) and tables (JSON-able dicts) saved with the run, by file stem; called on
        rank zero after the test epoch."""
        return {}

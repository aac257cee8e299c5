"""Benchmark base: one LightningModule per task, driven by `Trainer.test` over items with stable ids."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
from torch import nn
from torch.utils.data import Dataset

from ..errors import VismechError
from ..finding import Finding
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


class Benchmark(L.LightningModule):
    """Subclasses set the class attributes, build items, and implement `test_step` with `self.metric(i, name)`."""

    name: ClassVar[str]
    version: ClassVar[str]
    protocol: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    headline_rule: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig

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

    def make_metric(self, name: str) -> ItemMetric:
        return METRICS.get(name)()

    def metric(self, point: int, name: str) -> ItemMetric:
        return self.point_metrics[point][name]

    def on_test_epoch_end(self) -> None:
        self.summaries = [{n: m.summarize(seed=self.run_seed) for n, m in metrics.items()} for metrics in self.point_metrics]
        self.log_dict({f"{n}@{s:g}": summary[n]["value"] for s, summary in zip(self.strengths, self.summaries)
                       for n in summary}, rank_zero_only=True)

    def headline_strength(self) -> float:
        """The sweep point shown on the leaderboard; the rule is stated in `headline_rule`."""
        return max(self.strengths)

    @classmethod
    def check_strength(cls, method: Method, strength: float) -> float:
        """A sweep point is the method's edit strength unless the task gives the sweep its own meaning."""
        return method.check_strength(strength)

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

"""Metric base: a torchmetrics Metric that keeps per-item values with their item ids and states what it means.

Keeping (id, value) pairs, synced across ranks by concatenation, makes every summary independent of batch size,
device count and the padding a distributed sampler adds (duplicates are dropped by id), and gives the
bootstrap its items.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

import torch
from torchmetrics import Metric

from ..errors import VismechError
from ..stats import bootstrap_ci

Direction = Literal["higher", "lower"]


def fingerprint_of(items: dict[str, Any]) -> str:
    """Short hash of the items that define a metric's computation (weights, preprocessing, scale, version)."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ItemMetric(Metric):
    """A per-item metric: `update(ids, ...)` computes each item's value from its inputs (or, in this base, takes
    finished values); `compute()` returns (ids, values) sorted by id, duplicates removed.

    Example:
        >>> import torch
        >>> class Halved(ItemMetric):
        ...     name, direction, units = "halved", "higher", "half of the input"
        ...     def update(self, ids, x):
        ...         self.add_values(ids, x / 2)
        >>> metric = Halved()
        >>> metric.update(torch.tensor([3, 1]), torch.tensor([4.0, 2.0]))
        >>> metric.update(torch.tensor([1]), torch.tensor([2.0]))  # a padded duplicate: dropped by id
        >>> metric.compute()
        (tensor([1, 3]), tensor([1., 2.], dtype=torch.float64))
        >>> Halved.higher_is_better
        True
    """

    name: ClassVar[str]
    direction: ClassVar[Direction]
    units: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    # a set-level value (e.g. a class statistic) depends on which other items were run: a re-run on a subset of
    # items cannot reproduce it, so `vismech verify --limit` skips it
    set_level: ClassVar[bool] = False
    row_values: ClassVar[bool] = False  # compute() gives (n, d) rows instead of n values
    full_state_update = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # torchmetrics' constant, from the class's nominal direction (a run may set `direction` per goal, e.g.
        # erasing wants a concept's accuracy down; the record carries the run's direction)
        if "direction" in cls.__dict__:
            cls.higher_is_better = cls.direction == "higher"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("ids", default=[], dist_reduce_fx="cat")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def fingerprint_items(self) -> dict[str, Any]:
        """What the number depends on; subclasses with weights or preprocessing add theirs."""
        return {"metric": self.name, "version": self.version, "units": self.units}

    def fingerprint(self) -> str:
        return fingerprint_of(self.fingerprint_items())

    def update(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        """Finished per-item values (a metric that owns a formula overrides this to take its inputs)."""
        self.add_values(ids, values)

    def add_values(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        ids, values = torch.as_tensor(ids).reshape(-1), torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if ids.shape != values.shape:
            raise VismechError(f"metric '{self.name}' got {ids.numel()} ids but {values.numel()} values")
        if not torch.isfinite(values).all():
            bad = ids[~torch.isfinite(values)].tolist()
            raise VismechError(f"metric '{self.name}' got a non-finite value (NaN or inf) for item(s) {bad[:5]}")
        self.ids.append(ids.to(torch.int64))
        self.values.append(values)

    def sync(self, *args, **kwargs) -> None:
        # torchmetrics gathers a list state only where it is not empty; a rank that saw none of this metric's items
        # (a class whose few seeds all fell on the other rank) would skip a collective the others wait in
        if isinstance(self.ids, list) and not self.ids:
            self.ids.append(torch.empty(0, dtype=torch.int64, device=self.device))
            self.values.append(torch.empty(0, dtype=torch.float64, device=self.device))
        super().sync(*args, **kwargs)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.ids if isinstance(self.ids, torch.Tensor) else (torch.cat(self.ids) if self.ids else torch.empty(0, dtype=torch.int64))
        values = self.values if isinstance(self.values, torch.Tensor) else (torch.cat(self.values) if self.values else torch.empty(0, dtype=torch.float64))
        if ids.numel() == 0:
            raise VismechError(f"metric '{self.name}' saw no items")
        rows = values.reshape(ids.numel(), -1)  # rows are stored flat (see SetMetric.update)
        order = torch.argsort(ids, stable=True)
        ids, rows = ids[order].cpu(), rows[order].cpu()
        keep = torch.ones_like(ids, dtype=torch.bool)
        keep[1:] = ids[1:] != ids[:-1]
        return ids[keep], rows[keep] if self.row_values else rows[keep].reshape(-1)

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """compute(), synced, with one item kept a set of one: torchmetrics squeezes a one-element result to a
        scalar."""
        ids, values = self.compute()
        ids = ids.reshape(-1)
        return ids, values.reshape(ids.numel(), -1) if self.row_values else values.reshape(-1)

    def summarize(self, *, seed: int = 0, resamples: int = 1000) -> dict[str, Any]:
        """Mean, bootstrap CI over items, and the metadata a result record needs."""
        ids, values = self.items()
        low, high = bootstrap_ci(values.numpy(), resamples=resamples, seed=seed)
        return {"name": self.name, "value": float(values.mean()), "ci_low": low, "ci_high": high, "ci_level": 0.95,
                "n": int(ids.numel()), "direction": self.direction, "units": self.units,
                "fingerprint": self.fingerprint(), "fingerprint_items": self.fingerprint_items(),
                "item_ids": ids.tolist(), "item_values": values.tolist()}


class SetMetric(ItemMetric):
    """A statistic of the whole item set (FID, a distribution's distance to a target) from per-item vectors.

    `update(ids, vectors)` keeps one row per item; `statistic(rows)` maps the (n, d) rows, sorted by id, to one
    number. Its CI resamples items with replacement and recomputes the statistic. There are no per-item values,
    so records carry no item list for it and paired comparisons use the per-item metrics.
    """

    set_level = True
    row_values = True
    resamples: ClassVar[int] = 200  # a statistic costs more than a mean; 200 resamples keep the CI's ends stable

    def update(self, ids: torch.Tensor, vectors: torch.Tensor) -> None:
        ids = torch.as_tensor(ids).reshape(-1)
        vectors = torch.as_tensor(vectors, dtype=torch.float64).reshape(ids.numel(), -1)
        if not torch.isfinite(vectors).all():
            bad = ids[~torch.isfinite(vectors).all(1)].tolist()
            raise VismechError(f"metric '{self.name}' got a non-finite value (NaN or inf) for item(s) {bad[:5]}")
        self.ids.append(ids.to(torch.int64))
        # flat, so every rank's state is 1-D: a rank without items gathers an empty (0,) beside the others' rows
        self.values.append(vectors.reshape(-1))

    def statistic(self, rows: torch.Tensor) -> float:
        raise NotImplementedError

    def summarize(self, *, seed: int = 0, resamples: int | None = None) -> dict[str, Any]:
        import numpy as np

        ids, rows = self.items()
        value = self.statistic(rows)
        draws = np.random.default_rng(seed).integers(0, len(ids), size=(resamples or self.resamples, len(ids)))
        stats = np.array([self.statistic(rows[torch.from_numpy(d)]) for d in draws])
        low, high = float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))
        # a biased statistic (FID grows on resamples with repeated items) can put its full-set value outside the
        # percentile interval; the interval is widened to contain it, as the record schema requires
        return {"name": self.name, "value": value, "ci_low": min(low, value), "ci_high": max(high, value),
                "ci_level": 0.95, "n": int(ids.numel()), "direction": self.direction, "units": self.units,
                "fingerprint": self.fingerprint(), "fingerprint_items": self.fingerprint_items()}

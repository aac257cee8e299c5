"""Metric base: a torchmetrics Metric that keeps per-item values with their item ids and states what it means.

Keeping (id, value) pairs, synced across ranks by concatenation, makes every summary independent of batch size,
device count and the padding a distributed sampler adds (duplicates are dropped by id), and gives the
bootstrap its items.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torchmetrics import Metric

from ..errors import VismechError
from ..stats import TRANSFORMS, Estimate, mean_estimate, pseudo_estimate, pseudo_values

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
        self.check_finite(ids, values.reshape(-1, 1))
        self.ids.append(ids.to(torch.int64))
        self.values.append(values)

    def check_finite(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """One line naming the items whose (n, d) rows hold a NaN or an infinity."""
        finite = torch.isfinite(rows).all(1)
        if not finite.all():
            bad = ids[~finite].tolist()
            raise VismechError(f"metric '{self.name}' got a non-finite value (NaN or inf) for item(s) {bad[:5]}")

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

    def summarize(self) -> dict[str, Any]:
        """Mean over items, its interval (vismech.stats.mean_estimate), and the metadata a result record needs."""
        ids, values = self.items()
        return {**self.describe(mean_estimate(values.numpy()), int(ids.numel())),
                "item_ids": ids.tolist(), "item_values": values.tolist()}

    def describe(self, estimate: Estimate, n: int) -> dict[str, Any]:
        return {"name": self.name, "value": estimate.value, "ci_low": estimate.low, "ci_high": estimate.high,
                "ci_level": 0.95, "ci_method": estimate.method, "ci_note": estimate.note, "n": n,
                "direction": self.direction, "units": self.units, "fingerprint": self.fingerprint(),
                "fingerprint_items": self.fingerprint_items()}


class SetMetric(ItemMetric):
    """A statistic of the whole item set (FID, FD, KID) from per-item vectors.

    `update(ids, vectors)` keeps one row per item; `statistic(rows)` maps the (n, d) rows, sorted by id, to one
    number on a smooth scale (FD^2 rather than FD), and `transform` names the monotone map to the reported scale.
    The estimate is the jackknife's (vismech.stats): its pseudo-values remove the plug-in's 1/n bias, give the
    interval, and are stored in the record, so two records on the same items compare pseudo-value by
    pseudo-value. `plugin_value` keeps the statistic as the papers compute it on the whole set.
    """

    set_level = True
    row_values = True
    transform: ClassVar[str] = "identity"

    def update(self, ids: torch.Tensor, vectors: torch.Tensor) -> None:
        ids = torch.as_tensor(ids).reshape(-1)
        vectors = torch.as_tensor(vectors, dtype=torch.float64).reshape(ids.numel(), -1)
        self.check_finite(ids, vectors)
        self.ids.append(ids.to(torch.int64))
        # flat, so every rank's state is 1-D: a rank without items gathers an empty (0,) beside the others' rows
        self.values.append(vectors.reshape(-1))

    def statistic(self, rows: np.ndarray) -> float:
        raise NotImplementedError

    def interval_note(self, n: int, rows: np.ndarray) -> str | None:
        """Why no honest interval exists for these rows (the jackknife's coverage fails there), or None."""
        return None

    def estimate(self, rows: np.ndarray, pseudo: np.ndarray) -> Estimate:
        """The estimate and interval; by default the jackknife's."""
        return pseudo_estimate(pseudo, TRANSFORMS[self.transform])

    def summarize(self) -> dict[str, Any]:
        ids, rows = self.items()
        rows = rows.numpy()
        n, transform = len(rows), TRANSFORMS[self.transform]
        plugin = transform(self.statistic(rows))
        note = "one item: no interval" if n < 2 else self.interval_note(n, rows)
        if note is not None:  # the plug-in as the papers report it, and no interval or tie test
            return {**self.describe(Estimate(plugin, None, None, "none", note), n), "plugin_value": plugin,
                    "item_ids": ids.tolist()}
        pseudo = pseudo_values(rows, self.statistic)
        return {**self.describe(self.estimate(rows, pseudo), n), "plugin_value": plugin, "transform": self.transform,
                "item_ids": ids.tolist(), "pseudo_values": pseudo.tolist()}

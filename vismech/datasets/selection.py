"""Item selections shared by every item set: per-class slices in id order (the pruning protocol's fit / eval split)."""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import VismechError


def check_per_class(per_class) -> tuple[int, int | None] | None:
    """(lo, hi) with 0 <= lo < hi, hi None for 'to the end' (lo None means 0); None keeps everything."""
    if per_class is None:
        return None
    if isinstance(per_class, (str, bytes)) or len(per_class) != 2:
        raise VismechError(f"per_class must be a pair [lo, hi], got {per_class!r}")
    lo, hi = per_class
    lo = 0 if lo is None else lo
    if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi <= lo)):
        raise VismechError(f"per_class must be [lo, hi] with 0 <= lo < hi (hi null: to the end), got {per_class!r}")
    return lo, hi


def per_class_slice(ids: Sequence[int], labels: Sequence[int], per_class) -> list[int]:
    """The ids whose rank among the ids of their class (in the given order) lies in [lo, hi)."""
    bounds = check_per_class(per_class)
    if bounds is None:
        return list(ids)
    lo, hi = bounds
    seen: dict[int, int] = {}
    kept = []
    for i, label in zip(ids, labels):
        rank = seen[int(label)] = seen.get(int(label), -1) + 1
        if rank >= lo and (hi is None or rank < hi):
            kept.append(int(i))
    return kept


def describe_per_class(per_class) -> str:
    bounds = check_per_class(per_class)
    return "" if bounds is None else f"[per class {bounds[0]}:{'' if bounds[1] is None else bounds[1]}]"

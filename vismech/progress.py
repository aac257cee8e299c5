"""Progress bars for loops a person waits for outside the trainer: fits, samplers, training."""
from __future__ import annotations

import os
import sys


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

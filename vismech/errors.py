"""User-facing errors: the CLI prints them as one line and exits with code 2, never with a traceback."""
from __future__ import annotations

import math
from collections.abc import Iterable


class VismechError(Exception):
    """A problem with what the user asked for (a name, a value, a file), not a bug in vismech."""

    exit_code = 2


class UnknownNameError(VismechError):
    def __init__(self, kind: str, name: object, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        listed = ", ".join(self.known) if self.known else "(none registered)"
        super().__init__(f"unknown {kind} '{name}'; known {kind}s: {listed}")


def from_os_error(exc: OSError) -> VismechError | None:
    """A full disk or a folder that cannot be written, as one line naming the path; None for other OS errors
    (those are bugs or states the user cannot fix by another value, and keep their traceback)."""
    import errno

    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    where = exc.filename if exc.filename is not None else "an output file"
    fix = "free space there" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "give a writable folder"
    return VismechError(f"cannot write '{where}': {exc.strerror}; {fix}")


def check_finite(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise VismechError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_range(name: str, value: float, low: float, high: float) -> float:
    """Validate low <= value <= high; the message names the value and the allowed interval."""
    value = check_finite(name, value)
    if not low <= value <= high:
        raise VismechError(f"{name} must be in [{low:g}, {high:g}], got {value:g}")
    return value

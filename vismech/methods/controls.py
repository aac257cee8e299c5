"""The no-op control every task carries; each task's random control lives beside its methods."""
from __future__ import annotations

import math

from ..edit import Edit, NoEdit
from ..finding import Finding
from ..method import Method
from ..registry import METHODS
from ..subject import Subject

ALL_TASKS = "*"


@METHODS.register()
class NoOp(Method):
    """Control: finds nothing and edits nothing; every metric must equal the unedited model's."""

    name = "noop"
    tasks = (ALL_TASKS,)
    control = True
    strength_range = (-math.inf, math.inf)  # any finite strength: it runs beside every method's sweep

    def fit(self, subject: Subject, data) -> Finding:
        return self.new_finding(subject, task="*")

    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        self.check_strength(strength)
        return NoEdit(subject)

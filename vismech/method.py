"""The method interface: `fit(subject, data) -> Finding`, `edit(subject, finding, strength) -> Edit`."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from .code_digest import code_digest, distribution_of
from .config import typed_config
from .edit import Edit
from .errors import VismechError, check_range
from .finding import Finding
from .registry import METHODS
from .subject import Subject


@dataclasses.dataclass
class MethodConfig:
    """Base of every method's typed config; subclasses add their hyperparameters as dataclass fields."""


class Method(ABC):
    """A method: found by `name` in the registry, usable on `tasks`, configured by a `Config` dataclass."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    strength_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    identity_strength: ClassVar[float] = 0.0  # the strength whose edit reproduces the unedited model exactly
    control: ClassVar[bool] = False  # no-op and random controls, listed as such on the leaderboard

    def __init__(self, config: MethodConfig | Mapping[str, Any] | None = None, *, seed: int = 0):
        self.config = config if isinstance(config, self.Config) else typed_config(self.Config, config or {}, f"method '{self.name}'")
        self.seed = int(seed)

    def generator(self, salt: str = "") -> torch.Generator:
        """A generator seeded from (run seed, method, salt): every random draw of a method goes through one."""
        digest = hashlib.sha256(f"{self.seed}|{self.name}|{salt}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def config_digest(self) -> str:
        return hashlib.sha256(json.dumps(self.config_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def code_identity(cls) -> dict[str, str | None]:
        """What identifies the code of this method's fit and edit: a digest of its modules' source, and for a
        plugin its distribution and version. Part of every cache key of its findings, images and progress."""
        try:
            source = METHODS.entry(cls.name).source
        except VismechError:  # a method class used without the registry (a test, a script): its code still counts
            source = "vismech"
        dist, dist_version = distribution_of(source)
        return {"code": code_digest(cls), "distribution": dist, "distribution_version": dist_version}

    def check_subject(self, subject: Subject, task: str) -> None:
        """Refuse, before the fit, a config the subject cannot take (a top_k beyond a layer's width); the default
        accepts every subject."""

    def check_strength(self, strength: float) -> float:
        low, high = self.strength_range
        return check_range(f"strength of method '{self.name}'", strength, low, high)

    def new_finding(self, subject: Subject, task: str, **parts: Any) -> Finding:
        return Finding(self.name, task, subject.id, subject.weights_digest, self.config_dict(), **parts)

    def check_finding(self, subject: Subject, finding: Finding) -> None:
        if finding.method != self.name:
            raise VismechError(f"finding was made by method '{finding.method}', not '{self.name}'")
        if finding.subject_digest != subject.weights_digest:
            raise VismechError(f"finding was fitted on other weights of '{finding.subject_id}' "
                               f"(digest {finding.subject_digest[:12]}, subject has {subject.weights_digest[:12]})")

    @abstractmethod
    def fit(self, subject: Subject, data: Any) -> Finding:
        """Discover the mechanism; expensive work belongs here, and its result is cached by the runner."""

    @abstractmethod
    def edit(self, subject: Subject, finding: Finding, strength: float) -> Edit:
        """A reversible edit of `subject` at `strength`; `identity_strength` must reproduce the unedited outputs exactly."""


def build_method(name: str, config: Mapping[str, Any] | None = None, *, seed: int = 0, task: str | None = None) -> Method:
    cls = METHODS.get(name)
    if task is not None and task not in cls.tasks and "*" not in cls.tasks:
        raise VismechError(f"method '{name}' does not support task '{task}'; it supports: {', '.join(cls.tasks)}")
    return cls(config or {}, seed=seed)

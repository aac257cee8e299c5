"""The method's typed config: every field is a `method.config.<field>=...` override, checked before any work."""
from __future__ import annotations

from dataclasses import dataclass

from vismech.errors import VismechError
from vismech.method import MethodConfig


@dataclass
class Config(MethodConfig):
    top_k: int = 1  # units per layer (the pruning task keeps K per class)
    batch_size: int = 32  # images per forward/backward pass

    def validate(self) -> None:
        for name in ("top_k", "batch_size"):
            if getattr(self, name) < 1:
                raise VismechError(f"{name} must be >= 1, got {getattr(self, name)}")

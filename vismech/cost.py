"""Cost accounting: model forward/backward passes (they do not drift with the machine), wall time, peak memory."""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class CostMeter:
    """Counts calls of a root module: each forward call and each backward sweep through it, and rows seen."""

    forward_passes: int = 0
    forward_rows: int = 0
    backward_passes: int = 0
    _handles: list = field(default_factory=list, repr=False)

    def attach(self, model: nn.Module) -> "CostMeter":
        def on_forward(module, args):
            self.forward_passes += 1
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and first.dim() > 0:
                self.forward_rows += first.shape[0]

        def on_backward(module, grad_output):
            self.backward_passes += 1

        self._handles = [model.register_forward_pre_hook(on_forward), model.register_full_backward_pre_hook(on_backward)]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def snapshot(self) -> dict[str, int]:
        return {"forward_passes": self.forward_passes, "forward_rows": self.forward_rows,
                "backward_passes": self.backward_passes}


def peak_memory_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory of this process: the accelerator's allocator peak on CUDA, else the resident-set peak."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start

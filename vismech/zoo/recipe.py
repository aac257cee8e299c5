"""What every mini-zoo recipe module provides, and the training loop they share.

A recipe module defines:
- `NAME` (str) and `SUMMARY` (one line), `NEEDS` (names of zoo models it is built from, possibly empty);
- `build(out: Path, progress: bool) -> dict`: train with fixed seeds and write the model's files into `out`
  (safetensors and JSON only); return what was measured: {"recipe": {...}, "seed": int, "train_time_s": float,
  "quality": {...}, ...}. `vismech zoo build` hashes the files and writes the manifest;
- `load(weights: str | None = None)`: the model from a folder (default: the shipped, hash-checked one).
"""
from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from ..progress import trainer_progress


class EpochLosses(L.Callback):
    """Mean training loss per epoch, read from the `train_loss` the module logs."""

    def __init__(self):
        self.losses: list[float] = []
        self._batch: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._batch.append(float(loss))

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(round(sum(self._batch) / max(len(self._batch), 1), 5))
        self._batch = []


def fit(module: L.LightningModule, loader, *, epochs: int | None = None, max_steps: int = -1, seed: int,
        progress: bool = False) -> dict[str, Any]:
    """Train on one CPU (or the accelerator Lightning finds) with a fixed seed; returns time and loss curve."""
    L.seed_everything(seed, workers=True, verbose=False)
    losses = EpochLosses()
    shown = trainer_progress(progress)
    trainer = L.Trainer(max_epochs=epochs, max_steps=max_steps, accelerator="auto", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=shown["enable_progress_bar"],
                        enable_model_summary=False, callbacks=[losses, *shown["callbacks"]])
    start = time.perf_counter()
    trainer.fit(module, loader)
    return {"train_time_s": round(time.perf_counter() - start, 1), "epoch_losses": losses.losses}


def seeded_loader(dataset, batch_size: int, seed: int, shuffle: bool = True) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       generator=torch.Generator().manual_seed(seed))


def adamw_one_cycle(module: torch.nn.Module, lr: float, weight_decay: float, steps: int, warmup: float = 0.3):
    """`configure_optimizers` value shared by the zoo's recipes: AdamW under a one-cycle schedule per step.

    The anneal to ~0 does the smoothing an EMA of the weights would, without a second copy to ship."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    return [opt], [{"scheduler": sched, "interval": "step"}]

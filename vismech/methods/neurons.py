"""Shared pieces of neuron-level methods: a Finding of unit indices per activation site, and its scaling edit."""
from __future__ import annotations

import torch

from ..edit import HookEdit
from ..finding import Finding
from ..subject import Subject

PREFIX = "units."


def units_of(finding: Finding) -> dict[str, torch.Tensor]:
    """{site name: unit indices} stored in a finding under `units.<site>`."""
    return {k[len(PREFIX):]: v for k, v in finding.tensors.items() if k.startswith(PREFIX)}


def scale_units_edit(subject: Subject, units: dict[str, torch.Tensor], factor: float) -> HookEdit:
    """Multiply the chosen units of each site's output by `factor` (0 removes them, 1 is exactly the identity)."""

    def make(index: torch.Tensor):
        def hook(output: torch.Tensor) -> torch.Tensor:
            scale = torch.ones(output.shape[-1], dtype=output.dtype, device=output.device)
            scale[index.to(output.device)] = factor
            return output * scale

        return hook

    return HookEdit(subject, {site: make(index) for site, index in units.items() if index.numel()})

"""Edits: reversible changes to a subject, as context managers.

On exit, normal or by exception, the model is restored exactly: hooks removed, weights copied back bit for bit.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from .errors import VismechError
from .subject import Subject


class Edit(contextlib.AbstractContextManager):
    """Base edit. Subclasses implement `_apply` and `_restore`; `_restore` must undo a partial `_apply`."""

    def __init__(self, subject: Subject):
        self.subject = subject
        self.active = False

    def __enter__(self) -> "Edit":
        if self.active:
            raise VismechError("this edit is already applied; an edit cannot be entered twice")
        try:
            self._apply()
        except BaseException:
            self._restore()
            raise
        self.active = True
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self._restore()
        finally:
            self.active = False
        return False

    def _apply(self) -> None:
        pass

    def _restore(self) -> None:
        pass


class NoEdit(Edit):
    """The identity edit: changes nothing."""


class HookEdit(Edit):
    """Forward hooks on activation sites: `{site: fn(output) -> new output}`."""

    def __init__(self, subject: Subject, hooks: dict[str, Callable[[torch.Tensor], torch.Tensor | None]]):
        super().__init__(subject)
        for site in hooks:
            if subject.site(site).kind != "activation":
                raise VismechError(f"site '{site}' is a weight site; hooks need an activation site")
        self.hooks = hooks
        self._handles: list = []

    def _apply(self) -> None:
        for site, fn in self.hooks.items():
            self._handles.append(self.subject.hook(site, fn))

    def _restore(self) -> None:
        while self._handles:
            self._handles.pop().remove()


class WeightEdit(Edit):
    """In-place weight changes on weight sites: `{site: fn(weight) -> new weight}`; originals kept and copied back."""

    def __init__(self, subject: Subject, updates: dict[str, Callable[[torch.Tensor], torch.Tensor]]):
        super().__init__(subject)
        for site in updates:
            subject.parameter(site)
        self.updates = updates
        self._saved: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _apply(self) -> None:
        for site, fn in self.updates.items():
            param = self.subject.parameter(site)
            self._saved[site] = param.detach().clone()
            new = fn(param.detach().clone())
            if new.shape != param.shape:
                raise VismechError(f"edit of site '{site}' changed its shape {tuple(param.shape)} -> {tuple(new.shape)}")
            param.copy_(new)

    @torch.no_grad()
    def _restore(self) -> None:
        for site, original in self._saved.items():
            self.subject.parameter(site).copy_(original)
        self._saved.clear()

"""Name -> object registries for tasks, methods, models and metrics, in the style of timm's model registry.

Built-in entries register themselves when their module is imported; methods in other distributions register
through the `vismech.methods` entry-point group, so submitting a method never requires editing the suite.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError, VismechError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str
    source: str  # "vismech" for built-ins, else the distribution that registered it


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return f"{type(obj).__name__} {getattr(obj, '__qualname__', None) or repr(obj)[:60]}"


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_modules: tuple[str, ...], entry_point_group: str | None = None,
                 plugin_base: str | None = None):
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._group = entry_point_group
        self._plugin_base = plugin_base  # "module:Class" every plugin entry must subclass (imported on first use)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded_builtins = False
        self._loaded_plugins = False

    def register(self, name: str | None = None, *, summary: str | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name or getattr(obj, "name"), obj, summary=summary)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, summary: str | None = None, source: str = "vismech") -> None:
        existing = self._entries.get(name)
        if existing is not None and existing.obj is not obj:
            raise VismechError(
                f"{self.kind} '{name}' is registered twice ({existing.source} and {source}); rename one of them"
            )
        self._entries[name] = Entry(name, obj, summary if summary is not None else _summary(obj), source)

    def _load(self, plugins: bool) -> None:
        if not self._loaded_builtins:
            self._loaded_builtins = True
            for module in self._builtin_modules:
                importlib.import_module(module)
        if plugins and self._group and not self._loaded_plugins:
            self._loaded_plugins = True
            self.load_plugins()

    def load_plugins(self) -> None:
        """Import every entry point of the group; each one names an object to register under its entry name."""
        for ep in entry_points(group=self._group):
            if ep.name in self._entries and self._entries[ep.name].source != "vismech":
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the suite down, but must be visible
                raise VismechError(
                    f"plugin {self.kind} '{ep.name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            dist = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
            self.check_plugin(ep.name, ep.value, dist, obj)
            self.add(ep.name, obj, source=dist)

    def check_plugin(self, name: str, value: str, dist: str, obj: Any) -> None:
        """An entry point must name a subclass of the plugin base whose `name` is the entry point's: anything else
        would fail later, deep inside a run, far from the package that is wrong."""
        if self._plugin_base is None:
            return
        module, _, attr = self._plugin_base.partition(":")
        base = getattr(importlib.import_module(module), attr)
        where = f"entry point '{name} = {value}' of distribution '{dist}' (group {self._group})"
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise VismechError(f"{where} names {_describe(obj)}, not a subclass of {module}.{attr}; point it at "
                               f"your {self.kind} class")
        if getattr(obj, "name", None) != name:
            raise VismechError(f"{where} names class {obj.__qualname__} whose name is {getattr(obj, 'name', None)!r}; "
                               f"the entry point's name and the class's `name` must agree")

    def refresh(self) -> None:
        """Look for entry points again (after a plugin was installed into the running interpreter)."""
        self._loaded_plugins = False

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._load(plugins=False)
        if name not in self._entries:
            self._load(plugins=True)
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        return self._entries[name]

    def entries(self) -> list[Entry[T]]:
        self._load(plugins=True)
        return [self._entries[n] for n in sorted(self._entries)]

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def __contains__(self, name: str) -> bool:
        try:
            self.entry(name)
        except UnknownNameError:
            return False
        return True


TASKS: Registry = Registry("task", ("vismech.benchmarks",))
METHODS: Registry = Registry("method", ("vismech.methods",), entry_point_group="vismech.methods",
                             plugin_base="vismech.method:Method")
MODELS: Registry = Registry("model", ("vismech.zoo", "vismech.models"))
METRICS: Registry = Registry("metric", ("vismech.metrics",))

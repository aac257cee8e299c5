"""Digests of the code that produced an artifact, so that cached findings, images and progress follow the code.

A cache key that names only a fixed producer string reuses old findings after the fit changed. `code_digest(obj)`
hashes the source of the modules that define `obj` (a class: every module of its class hierarchy within the same
top-level package) and of the modules those import directly from that package (a method's SAE, its sampler, a
benchmark's metrics and judges). Modules are named by their dotted name, not by path, so two checkouts of the same
commit give the same digest. A plugin method also names its distribution and version (`distribution_of`).

Imports made inside functions are not seen; a caller whose artifact depends on such a module passes it as
another object (e.g. the sampler function).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _module_named(name: Any) -> ModuleType | None:
    return sys.modules.get(name) if isinstance(name, str) else None


def modules_of(obj: Any) -> list[ModuleType]:
    """The modules `obj`'s code lives in, and their direct imports from the same top-level package."""
    own_name = obj.__name__ if inspect.ismodule(obj) else obj.__module__
    top = _top(own_name)
    if inspect.ismodule(obj):
        roots = [obj]
    elif inspect.isclass(obj):
        roots = [sys.modules[c.__module__] for c in inspect.getmro(obj)
                 if _top(c.__module__) == top and c.__module__ in sys.modules]
    else:
        roots = [sys.modules[own_name]]
    found = {m.__name__: m for m in roots}
    for module in roots:
        for value in vars(module).values():
            name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            imported = _module_named(name)
            if imported is not None and _top(imported.__name__) == top:
                found.setdefault(imported.__name__, imported)
    return [found[n] for n in sorted(found)]


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _source_digest(module: ModuleType) -> str:
    try:
        path = inspect.getsourcefile(module)
    except TypeError:  # a built-in module has no source
        path = None
    if not path or not os.path.isfile(path):
        return "no-source"
    st = os.stat(path)
    return _file_digest(path, st.st_mtime_ns, st.st_size)


def code_digest(*objects: Any) -> str:
    """One hash of the source of every module `objects` are defined in (see the module docstring)."""
    modules: dict[str, ModuleType] = {}
    for obj in objects:
        modules.update((m.__name__, m) for m in modules_of(obj))
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(f"{name}:{_source_digest(modules[name])}\n".encode())
    return h.hexdigest()


def distribution_of(source: str) -> tuple[str | None, str | None]:
    """(distribution, version) of a registry entry's source: (None, None) for the suite's own entries."""
    if source == "vismech":
        return None, None
    try:
        return source, version(source)
    except PackageNotFoundError:
        return source, None

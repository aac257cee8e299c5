"""Typed configs: a dataclass per method or task, built from Hydra's mapping with one-line errors."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import VismechError

C = TypeVar("C")
_SCALARS = (bool, int, float, str)


def _coerce(hint: Any, value: Any) -> Any:
    """Return `value` as type `hint` (int -> float allowed), or raise TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(option, value)
            except TypeError:
                continue
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        inner = args[0] if args else Any
        return [_coerce(inner, v) for v in value]
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _SCALARS and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise TypeError
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def typed_config(cls: type[C], values: Mapping[str, Any], owner: str) -> C:
    """Build `cls` from `values`; unknown keys and wrong types fail naming the key, the owner and what is allowed."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise VismechError(f"unknown config key(s) {', '.join(unknown)} for {owner}; allowed: "
                           f"{', '.join(sorted(fields)) or '(none)'}")
    coerced = {}
    for key, value in values.items():
        try:
            coerced[key] = _coerce(hints.get(key, Any), value)
        except TypeError:
            raise VismechError(f"config key '{key}' of {owner} must be {_type_name(hints[key])}, got {value!r}") from None
    config = cls(**coerced)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config

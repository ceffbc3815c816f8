"""Turns a nested ``ml_collections.ConfigDict`` into frozen, typed dataclasses, once.

Every section of the run configuration is a frozen dataclass whose fields carry type
hints and defaults. :func:`from_mapping` walks the ConfigDict against those hints:

* a key the dataclass does not declare is rejected (``config.model.dtyp: unknown key;
  known keys: ...``); a key it lists in its ``RENAMED`` class attribute (old name ->
  what to write instead) is rejected with that hint;
* a value of the wrong type is rejected (``config.sampling.top_k: expected int, got
  str 'x'``); ints are accepted where floats are expected, lists where tuples are;
* ``__post_init__`` checks of each dataclass (impossible values) are re-raised with the
  full key path.

Missing keys take the dataclass defaults. Code below this layer reads attributes only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{path}: {value!r} matches no type in {tp}"
        )
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: must be one of {list(args)}, got {value!r}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping) and not hasattr(value, "items"):
            raise ConfigError(f"{path}: expected a section (dict), got {type(value).__name__}")
        return from_mapping(tp, value, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a tuple, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected bool, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected str, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported field type {tp}")


def from_mapping(cls: type, mapping: Any, path: str = "config"):
    """Builds dataclass ``cls`` from a (nested) mapping, validating keys and types."""
    items = dict(mapping.items())
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(items) - set(fields))
    renamed = getattr(cls, "RENAMED", {})
    for key in unknown:
        if key in renamed:
            raise ConfigError(f"{path}.{key}: renamed: {renamed[key]}")
    if unknown:
        raise ConfigError(
            f"{path}.{unknown[0]}: unknown key; known keys of {path}: {sorted(fields)}"
        )
    kwargs = {name: _convert(items[name], hints[name], f"{path}.{name}") for name in items}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from None

"""Typed config sections: each run-config section is a frozen dataclass whose fields carry their
default and their bounds, so defaults, checks and error messages live in one place.

`field(default, ge=..., gt=..., le=..., lt=..., choices=...)` declares a bounded field;
`check(obj, "train")` (called from a dataclass's `__post_init__`) refuses a value of the wrong
type or outside its bounds with one line naming the field, the value and what is allowed;
`section(cls)` makes the ml_collections section of a dataclass (typed placeholders for optional
fields, so `--config.x.y=v` overrides parse), and `build(cls, values, "x")` turns a section back
into the dataclass, refusing unknown fields by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


def field(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, choices=None,
          in_section: bool = True):
    """A dataclass field with bounds checked by `check`; `in_section=False` leaves it out of the
    run-config section (it is set from another section)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("choices", choices))
              if v is not None}
    if not in_section:
        bounds["in_section"] = False
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults: use a tuple")
    return dataclasses.field(default=default, metadata=bounds)


_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_TEST = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def _types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _accepts(hint, value) -> bool:
    """Whether `value` fits the annotation (ints for floats; never bools for numbers)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, origin or hint)


def _kind(hint) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    args = [h for h in typing.get_args(hint) if h is not type(None)] or [hint]
    text = " or ".join(names.get(typing.get_origin(a) or a, "a tuple" if typing.get_origin(a) is tuple
                                 else getattr(a, "__name__", str(a))) for a in args)
    return text + (" (or None)" if type(None) in typing.get_args(hint) else "")


def check(obj, section: str) -> None:
    """Raises ConfigError naming the first field of `obj` with a wrong type or out of bounds."""
    hints = _types(type(obj))
    for f in dataclasses.fields(obj):
        value, name = getattr(obj, f.name), f"{section}.{f.name}" if section else f.name
        if not _accepts(hints[f.name], value):
            raise ConfigError(f"{name} must be {_kind(hints[f.name])}; got {value!r}")
        if value is None:
            continue
        m = f.metadata
        if "choices" in m and value not in m["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, m['choices']))}; got {value!r}")
        for key in ("ge", "gt", "le", "lt"):
            if key in m and not _TEST[key](value, m[key]):
                allowed = " and ".join(f"{_TEXT[k]} {m[k]}" for k in ("ge", "gt", "le", "lt") if k in m)
                raise ConfigError(f"{name} must be {allowed}; got {value!r}")


def _placeholder(hint):
    args = [h for h in typing.get_args(hint) if h is not type(None)]
    base = typing.get_origin(args[0]) or args[0] if args else str
    return config_dict.placeholder(base if base in (int, float, str, bool) else object)


def section(obj_or_cls, exclude: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """The ml_collections section of a dataclass (its defaults, or an instance's values)."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    hints = _types(cls)
    out = ml_collections.ConfigDict()
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.metadata.get("in_section") is False:
            continue
        if isinstance(obj_or_cls, type):
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        else:
            value = getattr(obj_or_cls, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = section(value)
        elif value is None:
            out[f.name] = _placeholder(hints[f.name])
        else:
            out[f.name] = value
    return out


def _plain(value):
    """ConfigDict / list values as dataclass inputs: dicts stay dicts, lists become tuples."""
    if isinstance(value, ml_collections.ConfigDict):
        return value.to_dict()
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


def build(cls, values: Mapping[str, Any] | ml_collections.ConfigDict, name: str, **extra):
    """`cls(**values, **extra)`, nested dataclasses built likewise, unknown fields refused by name."""
    values = dict(values.to_dict() if isinstance(values, ml_collections.ConfigDict) else values)
    hints = _types(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints_text = []
        for u in unknown:
            close = difflib.get_close_matches(u, sorted(known), n=1)
            hints_text.append(f"{name}.{u}" + (f" (did you mean {name}.{close[0]}?)" if close else ""))
        raise ConfigError(f"unknown config field(s): {', '.join(hints_text)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        nested = [h for h in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(h)]
        if nested and isinstance(value, Mapping):
            kwargs[key] = build(nested[0], value, f"{name}.{key}")
        elif typing.get_origin(hint) is tuple or tuple in (typing.get_origin(h) for h in typing.get_args(hint)):
            kwargs[key] = tuple(_plain(v) for v in value) if isinstance(value, list | tuple) else value
        else:
            kwargs[key] = _plain(value)
    return cls(**kwargs, **extra)

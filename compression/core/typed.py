"""Strict conversion of plain data (YAML/JSON) into typed dataclasses: every error names the field path.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


def _check(ok: bool, where: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{where}: invalid value {value!r} (allowed: {allowed})")


def _type_name(tp) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, where: str):
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except ValueError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ValueError(f"{where}: invalid value {value!r} (allowed: {_type_name(tp)})")
    if origin is Literal:
        _check(value in get_args(tp), where, value, _type_name(tp))
        return value
    if origin is list:
        _check(isinstance(value, list), where, value, _type_name(tp))
        return [_convert(v, get_args(tp)[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        _check(isinstance(value, bool), where, value, "true or false")
    elif tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), where, value, "an integer")
    elif tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), where, value, "a number")
        value = float(value)
    elif tp is str:
        _check(isinstance(value, str), where, value, "a string")
    return value


def from_dict(cls, data: Any, where: str = "recipe"):
    """Build dataclass ``cls`` from plain data; every error names the field path, the bad value and what is allowed."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    open_field = getattr(cls, "OPTIONS_FIELD", None)  # a step whose method brings keys of its own
    if unknown and open_field:
        nested = data.get(open_field) or {}
        if not isinstance(nested, dict):
            raise ValueError(f"{where}.{open_field}: expected a mapping of keys to values")
        twice = next((k for k in unknown if k in nested), None)
        if twice is not None:
            raise ValueError(f"{where}: key {twice!r} given twice (beside the step and in {open_field})")
        data = {**{k: v for k, v in data.items() if k not in unknown},
                open_field: {**nested, **{k: data[k] for k in unknown}}}
    elif unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(fields)})")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: missing required key {missing[0]!r}")
    prefix = "" if where == "recipe" else f"{where}."
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:  # __post_init__ names the field; we add where it sits in the recipe
        whole = str(err).startswith(("unknown key", "missing required key"))  # about the mapping, not a field
        raise ValueError(f"{where}: {err}" if whole and prefix else f"{prefix}{err}") from None

"""Typed configuration: YAML files parsed into dataclasses, with `key=value` overrides.

- Every field is typed; a wrong type fails naming the field, the value and the type wanted.
- An unknown or misspelt key fails naming the key, the closest valid one, and all valid keys
  (TRL's parser ignores unknown keys silently; we don't).
- Overrides on the command line are `key=value`, dotted for nested sections
  (`model.hidden_size=128`), with values read as YAML (`lr=1e-4`, `ops=[+,-]`).
- YAML is read with `yaml.safe_load`: no object construction from files.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recipes.io import UserError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert: int -> float, list -> tuple) `value` against the annotation `tp`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping for {_type_name(tp)}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        if args:
            return {_coerce(k, args[0], f"{where} key"): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-4 as a string (YAML 1.1 quirk)
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(tp, type) and not isinstance(value, tp) or (tp in (int, float) and isinstance(value, bool)):
        raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from a dict, failing loudly on unknown keys and wrong types.

    >>> @dataclasses.dataclass
    ... class C:
    ...     learning_rate: float = 1e-4
    ...     steps: int = 10
    >>> from_dict(C, {"steps": 3})
    C(learning_rate=0.0001, steps=3)
    >>> from_dict(C, {"lerning_rate": 3e-4})
    Traceback (most recent call last):
    ...
    recipes.io.UserError: config: unknown key 'lerning_rate'; did you mean 'learning_rate'? (valid: learning_rate, steps)
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise UserError(f"{where}: unknown key {key!r}{hint} (valid: {', '.join(fields)})")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where != "config" else key)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own validation
        raise UserError(f"{where}: {e}") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key=value` overrides (dotted keys for nested sections) to a raw config dict.

    >>> apply_overrides({"model": {"hidden_size": 64}}, ["model.hidden_size=128", "seed=3"])
    {'model': {'hidden_size': 128}, 'seed': 3}
    """
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    return data


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Read YAML `path`, apply overrides, and build `cls`; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides or [])
    try:
        return from_dict(cls, data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """Plain dict of a (nested) dataclass config, tuples as lists: ready for YAML/JSON."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(cfg))))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x

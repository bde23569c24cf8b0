"""YAML I/O of config dataclasses: strict loading, dotted `--set key=value` overrides (the only YAML code)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config classes."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain dicts and lists (a `OneOf` section as its type and one mapping per choice)."""
    return _plain(cfg)


def _plain(value: Any) -> Any:
    from nas.sections import OneOf

    if isinstance(value, OneOf):
        out: dict[str, Any] = {"type": value.type}
        for name, section in value.sections.items():
            out[name] = {k: v for k, v in _plain(section).items() if k not in value.excluded}
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_yaml(cfg: Any) -> str:
    """The YAML of a config dataclass (fields in declaration order)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, hint: Any, path: str) -> Any:
    from nas.sections import OneOf

    if isinstance(hint, type) and issubclass(hint, OneOf):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {hint.__name__}, got {value!r}")
        return _one_of_from_dict(hint, value, path)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {hint.__name__}, got {value!r}")
        return from_dict(hint, value, path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {value!r} does not fit {hint}")
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin in (tuple, Sequence) else items
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e9 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _one_of_from_dict(cls: type, d: Mapping[str, Any], path: str) -> Any:
    """A `OneOf` section from {'type': name, name: {settings}, ...}, strictly."""
    choices = cls.choices()
    with_settings = [n for n, c in choices.items() if c is not None]
    type_ = d.get("type", cls.default_type())
    if not isinstance(type_, str) or type_ not in choices:
        raise ConfigError(f"{path}.type: unknown {cls.kind} {type_!r}; expected one of {', '.join(choices)}")
    sections = {}
    for key, value in d.items():
        if key == "type":
            continue
        if key not in with_settings:
            raise ConfigError(f"unknown key {path + '.' + key!r} for the {cls.kind} section; expected one of "
                              f"{', '.join(['type', *with_settings])}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}.{key}: expected a mapping of {choices[key].__name__} settings, got {value!r}")
        for field, home in cls.excluded.items():
            if field in value:
                raise ConfigError(f"{path}.{key}.{field}: set {home} instead (it belongs to the search, not to one "
                                  f"{cls.kind})")
        sections[key] = from_dict(choices[key], value, f"{path}.{key}")
    try:
        return cls(type=type_, sections=sections)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def from_dict(cls: type[T], d: Mapping[str, Any], path: str = "") -> T:
    """Builds a config dataclass from a dict, strictly.

    Raises:
      ConfigError: for an unknown key (naming the key and the class), a value of the wrong type, or a value the
        class's own validation rejects.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {d!r}")
    migrate = getattr(cls, "migrate_dict", None)
    if migrate is not None:  # a layout written by an earlier version
        d = migrate(d)
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in d if k not in names]
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"unknown key {where!r} for {cls.__name__}; expected one of {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(f"{path + ': ' if path else ''}{e}") from None


def from_yaml(cls: type[T], text: str) -> T:
    """Inverse of `to_yaml` (strict: see `from_dict`)."""
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {str(e).splitlines()[0]}") from None
    return from_dict(cls, d or {})


def parse_override(item: str) -> tuple[list[str], Any]:
    """'proxy.train_steps=300' -> (['proxy', 'train_steps'], 300); values are parsed as YAML scalars."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects a dotted key such as proxy.train_steps, got {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(d: dict[str, Any], overrides: Sequence[str], cls: type | None = None) -> dict[str, Any]:
    """Applies dotted overrides to a config dict (in place) and returns it.

    Raises:
      ConfigError: for a key that names no field (checked against `cls` when given).
    """
    for item in overrides:
        parts, value = parse_override(item)
        node: Any = d
        hint_cls = cls
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(node) if isinstance(node, dict) else ""
                raise ConfigError(f"--set {item}: no config section {'.'.join(parts[: i + 1])!r}"
                                  + (f"; expected one of {known}" if known else ""))
            node = node[part]
            if hint_cls is not None:
                hint_cls = _field_types(hint_cls).get(part)
        last = parts[-1]
        if not isinstance(node, dict) or last not in node:
            known = ", ".join(node) if isinstance(node, dict) else ""
            raise ConfigError(f"--set {item}: unknown key {'.'.join(parts)!r}; expected one of {known}")
        node[last] = value
    return d


def resolve(cls: type[T], base: T, overrides: Sequence[str]) -> T:
    """`base` with dotted overrides applied, validated again."""
    d = apply_overrides(to_dict(base), overrides, cls)
    return from_dict(cls, d)

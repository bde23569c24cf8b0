"""YAML I/O of config dataclasses: strict loading, dotted `--set key=value` overrides (the only YAML code).

Every YAML text is read within bounds (`load_yaml`): its size, how deep it nests and how many aliases it uses,
counted while the parser's events are composed, before anything is built. Without them, a config nested 50,000
deep would end in a RecursionError, and a 422-byte file of nested aliases (a "billion laughs") would expand past
1.6 GB.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from proxy_task.config import excerpt

T = TypeVar("T")

# A config file is a few KB (a preset's YAML is about 2 KB).
MAX_YAML_BYTES = 1 << 20
# Nesting levels of a YAML document: a config nests 4 deep (proxy.data.kind), a stored study 6.
MAX_YAML_DEPTH = 32
# Aliases (*name) in one document: a config has no need of more. Each alias also counts the nodes it repeats
# (`load_yaml`'s node bound), so nested aliases cannot multiply a small text into a huge document.
MAX_YAML_ALIASES = 32
# A `--set` value is one scalar or a short list.
MAX_OVERRIDE_BYTES = 64 << 10
# A config or calibration study as the database stores it (a study with `MAX_CANDIDATES` 1,000 specs is ~2 MB).
MAX_STORED_YAML_BYTES = 16 << 20


class ConfigError(ValueError):
    """A config file or override that does not fit the config classes."""


class _MalformedYAMLError(ConfigError):
    """A text that is not YAML (as opposed to YAML past a bound)."""


class _Bounded:
    """A safe loader's composer, counting: nesting depth, nodes (an alias counts the nodes it repeats) and aliases;
    a limit passed is a `ConfigError` before the composer recurses deeper or anything is built. An alias inside the
    node it names (a recursive structure) is refused too. Mixed into the loaders below."""

    def _bound(self, *, what: str, max_depth: int, max_nodes: int, max_aliases: int) -> None:
        self._what = what
        self._limits = (max_depth, max_nodes, max_aliases)
        self._depth = self._nodes = self._aliases = 0
        self._open: set[str] = set()
        self._sizes: dict[str, int] = {}

    def _refuse(self, event: Any, problem: str) -> ConfigError:
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        return ConfigError(f"{self._what}: {problem} (line {line})")

    def compose_node(self, parent: Any, index: Any) -> Any:
        max_depth, max_nodes, max_aliases = self._limits
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > max_aliases:
                raise self._refuse(event, f"more than {max_aliases} aliases (*name); a config needs few or none")
            if event.anchor in self._open:
                raise self._refuse(event, f"alias *{excerpt(event.anchor, 40)[1:-1]} inside the node it names "
                                          "(a recursive structure)")
            self._nodes += self._sizes.get(event.anchor, 1)
            if self._nodes > max_nodes:
                raise self._refuse(event, f"its aliases expand it past {max_nodes:,} values")
            return super().compose_node(parent, index)
        start = self._nodes
        self._nodes += 1
        if self._nodes > max_nodes:
            raise self._refuse(event, f"more than {max_nodes:,} values")
        collection = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if collection:
            self._depth += 1
            if self._depth > max_depth:
                raise self._refuse(event, f"nested deeper than {max_depth} levels")
            if event.anchor:
                self._open.add(event.anchor)
        node = super().compose_node(parent, index)
        if collection:
            self._depth -= 1
            self._open.discard(event.anchor)
        if event.anchor:
            self._sizes[event.anchor] = self._nodes - start
        return node


class _PurePythonLoader(_Bounded, yaml.SafeLoader):
    """PyYAML's own scanner and parser (for a PyYAML built without libyaml)."""

    def __init__(self, text: str, **limits: Any) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._bound(**limits)


_LOADER: type = _PurePythonLoader
if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _LibyamlLoader(_Bounded, yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver,
                         CParser):
        """libyaml's scanner and parser (4x faster than PyYAML's) under PyYAML's composer and safe constructor:
        libyaml's own composer, `CSafeLoader`'s, cannot be counted."""

        def __init__(self, text: str, **limits: Any) -> None:
            CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._bound(**limits)

    _LOADER = _LibyamlLoader


def load_yaml(text: str, *, what: str = "the YAML", max_bytes: int = MAX_YAML_BYTES, max_depth: int = MAX_YAML_DEPTH,
              max_aliases: int = MAX_YAML_ALIASES) -> Any:
    """`yaml.safe_load` within bounds: at most `max_bytes` (UTF-8), `max_depth` levels of nesting, `max_aliases`
    aliases, and as many values (aliases expanded) as a document of `max_bytes` could hold unaliased.

    Args:
      what: what the text is, for messages ('config file my.yaml').

    Raises:
      ConfigError: one line naming the limit, or the YAML's own error with its line and column.
    """
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ConfigError(f"{what}: larger than {max_bytes:,} bytes")
    loader = None
    try:
        loader = _LOADER(text, what=what, max_depth=max_depth, max_nodes=max(1000, max_bytes // 4),
                         max_aliases=max_aliases)  # the reader checks the characters here
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if "maximum nesting depth" in str(getattr(e, "problem", "")) and mark is not None:  # libyaml's own limit
            raise ConfigError(f"{what}: nested deeper than {max_depth} levels (line {mark.line + 1})") from None
        raise _MalformedYAMLError(f"{what}: malformed YAML{_yaml_problem(e)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(e: yaml.YAMLError) -> str:
    """' at line 3, column 7: while parsing a flow sequence, expected ',' or ']'' from a PyYAML error: one short
    line (its own text spans several, with the document's name)."""
    if isinstance(e, yaml.reader.ReaderError):
        return f" at character {e.position + 1}: {e.reason} (#x{e.character:04x})"
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    parts = [getattr(e, "context", None), getattr(e, "problem", None)]
    text = ", ".join(str(p) for p in parts if p) or str(e).splitlines()[0]
    text = " ".join(text.split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {text if len(text) <= 120 else text[:117] + '...'}"


def read_yaml_file(path: str, *, what: str = "config file") -> Any:
    """A YAML file's data, its size checked before it is read (`load_yaml`'s bounds).

    Raises:
      FileNotFoundError: no such file. ConfigError: too large, unreadable, not UTF-8, or `load_yaml`'s errors.
    """
    label = f"{what} {path}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        size = os.path.getsize(path)
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{label}: larger than {MAX_YAML_BYTES:,} bytes ({size:,}); a config is a few KB")
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_YAML_BYTES + 1)  # a file that grew since it was measured is cut, and refused
    except OSError as e:
        raise ConfigError(f"{label}: cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: not UTF-8 text (byte {e.start})") from None
    return load_yaml(text, what=label)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain dicts and lists (a `OneOf` section as its type and one mapping per choice)."""
    return _plain(cfg)


def _plain(value: Any) -> Any:
    from nas.config.sections import OneOf

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
    from nas.config.sections import OneOf

    if isinstance(hint, type) and issubclass(hint, OneOf):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {hint.__name__}, got {excerpt(value)}")
        return _one_of_from_dict(hint, value, path)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {hint.__name__}, got {excerpt(value)}")
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
        raise ConfigError(f"{path}: {excerpt(value)} does not fit {hint}")
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {excerpt(value)}")
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
                raise ConfigError(f"{path}: expected a number, got {excerpt(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {excerpt(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {excerpt(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {excerpt(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {excerpt(value)}")
        return value
    return value


def _one_of_from_dict(cls: type, d: Mapping[str, Any], path: str) -> Any:
    """A `OneOf` section from {'type': name, name: {settings}, ...}, strictly."""
    choices = cls.choices()
    with_settings = [n for n, c in choices.items() if c is not None]
    type_ = d.get("type", cls.default_type())
    if not isinstance(type_, str) or type_ not in choices:
        raise ConfigError(f"{path}.type: unknown {cls.kind} {excerpt(type_)}; expected one of {', '.join(choices)}")
    sections = {}
    for key, value in d.items():
        if key == "type":
            continue
        if key not in with_settings:
            raise ConfigError(f"unknown key {excerpt(path + '.' + str(key))} for the {cls.kind} section; expected one "
                              f"of {', '.join(['type', *with_settings])}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}.{key}: expected a mapping of {choices[key].__name__} settings, got "
                              f"{excerpt(value)}")
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
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {excerpt(d)}")
    migrate = getattr(cls, "migrate_dict", None)
    if migrate is not None:  # a layout written by an earlier version
        d = migrate(d)
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in d if k not in names]
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"unknown key {excerpt(where)} for {cls.__name__}; expected one of {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(_at(path, str(e), names)) from None


def _at(path: str, message: str, names: Sequence[str]) -> str:
    """A config class's own message under its place in the config: 'trials must be ...' in section 'search' reads
    'search.trials must be ...' (a message naming its field with its section, 'data.seed must', too)."""
    if not path:
        return message
    word = message.split(" ", 1)[0]
    if word in names:
        return f"{path}.{message}"
    section = path.rsplit(".", 1)[-1]
    if word.startswith(section + ".") and word[len(section) + 1:] in names:
        return f"{path}{message[len(section):]}"
    if word.startswith(path + ".") and word[len(path) + 1:] in names:
        return message
    return f"{path}: {message}"


def from_yaml(cls: type[T], text: str, *, what: str = "the config") -> T:
    """Inverse of `to_yaml` (strict: see `from_dict`; bounded: see `load_yaml`)."""
    return from_dict(cls, load_yaml(text, what=what) or {})


def parse_override(item: str) -> tuple[list[str], Any]:
    """'proxy.train_steps=300' -> (['proxy', 'train_steps'], 300); values are parsed as YAML scalars."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {excerpt(item)}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects a dotted key such as proxy.train_steps, got {excerpt(key)}")
    try:
        value = load_yaml(raw, what=f"--set {_clip(key)}", max_bytes=MAX_OVERRIDE_BYTES) if raw.strip() else ""
    except _MalformedYAMLError:
        value = raw  # not YAML: the text itself (a path with ': ' in it)
    return key.split("."), value


#: One override: ``'key=value'`` text as ``--set`` gives it (the value parsed as YAML), or a ``(dotted_key, value)``
#: pair whose value is already typed (a CLI flag's: it reaches the config as argparse made it, not through text).
Override = str | tuple[str, Any]


def apply_overrides(d: dict[str, Any], overrides: Sequence[Override], cls: type | None = None) -> dict[str, Any]:
    """Applies dotted overrides to a config dict (in place) and returns it.

    Raises:
      ConfigError: for a key that names no field (checked against `cls` when given).
    """
    for override in overrides:
        if isinstance(override, str):
            item = override
            parts, value = parse_override(override)
        else:
            key, value = override
            item, parts = f"{key}={value}", key.split(".")
            value = list(value) if isinstance(value, tuple) else value
        node: Any = d
        hint_cls = cls
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(node) if isinstance(node, dict) else ""
                raise ConfigError(f"--set {_clip(item)}: no config section {excerpt('.'.join(parts[: i + 1]))}"
                                  + (f"; expected one of {known}" if known else ""))
            node = node[part]
            if hint_cls is not None:
                hint_cls = _field_types(hint_cls).get(part)
        last = parts[-1]
        if not isinstance(node, dict) or last not in node:
            known = ", ".join(node) if isinstance(node, dict) else ""
            raise ConfigError(f"--set {_clip(item)}: unknown key {excerpt('.'.join(parts))}; expected one of {known}")
        node[last] = value
    return d


def _clip(text: str, limit: int = 80) -> str:
    """Text for a message, on one line and cut to `limit` characters (ending in '...')."""
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve(cls: type[T], base: T, overrides: Sequence[Override]) -> T:
    """`base` with dotted overrides applied, validated again."""
    d = apply_overrides(to_dict(base), overrides, cls)
    return from_dict(cls, d)

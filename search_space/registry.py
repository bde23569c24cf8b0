"""One registry shape for every seam: controllers, evaluators, runners, schedulers and search-space families.

A registry maps a name to an `Entry`: its target, a ``'module:attribute'`` string imported only when the entry is
loaded (Ray Tune's ``SEARCH_ALG_IMPORT``; the CLI's read-only commands import neither TensorFlow nor Ray), the
dataclass of its settings section, and facts a caller needs without importing it. Names are registered once
(`KeyError` on a second time, as Model Garden's ``official/core/registry.py``), and a lookup of an unknown name
lists the known ones. Because a target is plain text, it travels in a trial's plain-data spec, and a worker process
imports it itself.

It lives here, in the lowest package, because every other package may import `search_space` (DESIGN.md).

Example::

  SCHEDULERS = Registry('scheduler')
  SCHEDULERS.register('hyperband', 'my_pkg.hyperband:HyperbandScheduler', config_cls=HyperbandConfig)

  @SCHEDULERS.register('threshold', config_cls=ThresholdConfig)   # on the class: its own module and name
  class ThresholdScheduler(Scheduler): ...

  SCHEDULERS.load('hyperband')   # imports my_pkg.hyperband, returns the class
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginError(ImportError):
    """An entry's target that cannot be imported (the message says which and why)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered implementation.

    Attributes:
      kind: what the registry holds ('controller', 'evaluator', ...), for messages.
      name: its registered name (the config's ``type``).
      target: ``'module:attribute'`` of what `load` returns (a class or a factory); '' for a plain value.
      config_cls: the dataclass of its settings section, or None when it has none.
      meta: facts known without importing it (e.g. an evaluator's ``uses_tensorflow``).
      value: a plain value registered as it is (a search-space `Family`), else None.
    """

    kind: str
    name: str
    target: str
    config_cls: type | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    value: Any = None

    def load(self) -> Any:
        """Imports the target's module and returns the attribute (or the plain value).

        Raises:
          PluginError: the module cannot be imported or has no such attribute.
        """
        if not self.target:
            return self.value
        return load_target(self.target, what=f"{self.kind} {self.name!r}")


class Registry:
    """Name -> `Entry` for one kind of implementation.

    Args:
      kind: what it holds, for messages ('controller', 'evaluator', 'runner', 'scheduler', 'family').
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str | None = None, *, config_cls: type | None = None,
                 value: Any = None, **meta: Any) -> Any:
        """Registers `name`: with a `target` string now, with a plain `value` (data such as a `Family`), or,
        with neither, as a decorator of the class or function it names (its own module and qualified name become
        the target).

        Args:
          name: the name a config's ``type`` selects.
          target: ``'module:attribute'``, imported lazily.
          config_cls: the dataclass of its settings section, or None.
          value: a value to hold as it is (no import).
          **meta: facts callers read without importing it.

        Returns:
          The `Entry` (with a target), or the decorator.

        Raises:
          KeyError: the name is taken. ValueError: a malformed name or target, or a config class that is not a
          dataclass.
        """
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][\w.-]*$", name):
            raise ValueError(f"{self.kind} name must be letters, digits, '_', '.' or '-', got {name!r}")
        if config_cls is not None and not dataclasses.is_dataclass(config_cls):
            raise ValueError(f"{self.kind} {name!r}: config_cls must be a dataclass, got {config_cls!r}")
        if value is not None:
            if target is not None:
                raise ValueError(f"{self.kind} {name!r}: give a target or a value, not both")
            return self._add(Entry(self.kind, name, "", config_cls, dict(meta), value))
        if target is None:
            def decorate(obj: Any) -> Any:
                self._add(Entry(self.kind, name, f"{obj.__module__}:{obj.__qualname__}", config_cls, dict(meta)))
                return obj

            return decorate
        return self._add(Entry(self.kind, name, target, config_cls, dict(meta)))

    def _add(self, entry: Entry) -> Entry:
        if entry.value is None and (not isinstance(entry.target, str) or not _TARGET.match(entry.target)):
            raise ValueError(f"{self.kind} {entry.name!r}: target must be 'module:attribute', got {entry.target!r}")
        if entry.name in self._entries:
            raise KeyError(f"{self.kind} {entry.name!r} is already registered (as {self._entries[entry.name].target})")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Removes `name` (tests that register an entry of their own take it out again)."""
        self._entries.pop(name, None)

    def lookup(self, name: str) -> Entry:
        """The entry of `name`.

        Raises:
          LookupError: for an unknown name, listing the known ones.
        """
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise LookupError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self._entries)}")
        return entry

    def load(self, name: str) -> Any:
        """What `name`'s target names (its module imported)."""
        return self.lookup(name).load()

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (the first is the default where a section has one)."""
        return tuple(self._entries)

    def config_classes(self) -> dict[str, type | None]:
        """Name -> its settings dataclass (None: no settings)."""
        return {name: e.config_cls for name, e in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def load_target(target: str, *, what: str = "target") -> Any:
    """The attribute a ``'module:attribute'`` string names, its module imported.

    Raises:
      PluginError: in one line, naming `what` and why.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise PluginError(f"{what}: target must be 'module:attribute', got {target!r}")
    module, attr = target.split(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise PluginError(f"{what}: cannot import {module!r} ({_first_line(e)})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{what}: module {module!r} has no {attr!r}") from None
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


__all__ = ["Entry", "PluginError", "Registry", "load_target"]

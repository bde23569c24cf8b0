"""One registry shape for every seam: controllers, evaluators, runners, schedulers and search-space families.

A registry maps a name to an `Entry`: its target, a ``'module:attribute'`` string imported only when the entry is
loaded (Ray Tune's ``SEARCH_ALG_IMPORT``; the CLI's read-only commands import neither TensorFlow nor Ray), the
dataclass of its settings section, and facts a caller needs without importing it. Names are registered once
(`KeyError` on a second time, as Model Garden's ``official/core/registry.py``), and a lookup of an unknown name
lists the known ones. Because a target is plain text, it travels in a trial's plain-data spec, and a worker process
imports it itself. A user's own entries live in plug-in modules (``--plugin MODULE``) whose import registers them:
`import_plugins` imports them in the driver and again in every worker, where `plugin_roots` tells it the
``sys.path`` entries the driver found them under.

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
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PluginError(ImportError):
    """A plug-in module or an entry's target that cannot be imported (the message says which and why)."""


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


def check_plugins(names: Iterable[str]) -> tuple[str, ...]:
    """Plug-in module names, checked for their form (dotted Python names), in order, without repeats.

    Raises:
      PluginError: one that is not a module name (a path, a ``module:attribute`` target).
    """
    if isinstance(names, str):
        names = (names,)
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not _MODULE.match(name):
            raise PluginError(f"a plug-in is an importable Python module name such as my_pkg.my_evaluator, got "
                              f"{_excerpt(name)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def import_plugins(names: Iterable[str], paths: Iterable[str] = ()) -> tuple[str, ...]:
    """Imports a user's plug-in modules (the `register` calls they make run on import). A module imported before is
    not imported again, so calling this twice, or in a worker that ran a trial before, is a no-op.

    Args:
      names: dotted module names.
      paths: ``sys.path`` entries to put first, those missing (what `plugin_roots` gave where the names were found
        before: a worker process imports them from where the driver did).

    Returns:
      The names, checked (`check_plugins`).

    Raises:
      PluginError: one line naming the module: it is not a module name, is not found, or raised when imported.

    Example::

      import_plugins(['my_pkg.latency'])                         # the driver: registers its evaluator
      spec_paths = plugin_roots(['my_pkg.latency'])                # ('/home/me/src',), sent with the trial
      import_plugins(['my_pkg.latency'], paths=spec_paths)       # a worker, wherever it was started
    """
    checked = check_plugins(names)
    missing = [p for p in dict.fromkeys(paths) if isinstance(p, str) and p and p not in sys.path]
    sys.path[:0] = missing
    if missing:
        importlib.invalidate_caches()
    for name in checked:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
                raise PluginError(f"plug-in {name!r} cannot be imported: no module named {e.name!r} (the directory "
                                  "that holds it must be on PYTHONPATH)") from None
            raise PluginError(f"plug-in {name!r} raised when imported: {type(e).__name__}: {_first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - any failure of a user's module is one line naming it
            raise PluginError(f"plug-in {name!r} raised when imported: {type(e).__name__}: {_first_line(e)}") from None
    return checked


def plugin_roots(names: Iterable[str]) -> tuple[str, ...]:
    """The ``sys.path`` entries the imported modules `names` were found under: each module's file, up as many
    directories as its dotted name is deep (``/src/my_pkg/latency.py`` of ``my_pkg.latency`` gives ``/src``).

    A module that is not imported, has no file (a namespace package) or whose file does not sit where its name says
    gives none.
    """
    roots: list[str] = []
    for name in check_plugins(names):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        path = os.path.abspath(file)
        parts = name.split(".")
        # A package's file is NAME/__init__.py, a module's NAME.py (or NAME.cpython-311-...so).
        package = os.path.basename(path).split(".")[0] == "__init__"
        root = os.path.dirname(os.path.dirname(path) if package else path)
        for _ in parts[1:]:
            root = os.path.dirname(root)
        where = os.path.join(root, *parts) if package else os.path.join(root, *parts[:-1])
        named = package or os.path.basename(path).split(".")[0] == parts[-1]
        if not named or os.path.normcase(where) != os.path.normcase(os.path.dirname(path)):
            continue  # not where its name says (a module put into sys.modules under another name)
        if root not in roots:
            roots.append(root)
    return tuple(roots)


def _excerpt(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


__all__ = ["Entry", "PluginError", "Registry", "check_plugins", "import_plugins", "load_target", "plugin_roots"]

"""Plug-ins on the command line: ``--plugin MODULE`` and a config's ``plugins:``, imported before a config is read.

A plug-in module registers controllers, evaluators, runners or schedulers when it is imported
(`search_space.registry.import_plugins`), and with them their settings sections (``evaluator.NAME.*``), so it is
imported before anything parses a config that may name them: the ``--plugin`` flags and a preset file's ``plugins:``
before the file is parsed (`load_config`), a stored search's ``plugins:`` before its stored config is
(`stored_plugins`, on ``--resume``). `preimport` does the flags' part before the command line itself is parsed, so
``--evaluator NAME`` already knows a plug-in's evaluator. The config keeps the names (``plugins``), the search stores
them, and every trial imports them again in its worker (`nas.engine.trial.build_trial_evaluator`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nas.cli.ui import UserError

PLUGIN_HELP = ("import a Python module before the config is read, here and in every trial's worker: its "
               "register_controller / register_evaluator / register_runner calls add choices and their settings "
               "sections (evaluator.NAME.KEY). A dotted module name whose root is on PYTHONPATH (the search "
               "records where it was found, so workers import it too). Repeatable; added to the config's "
               "plugins: list and stored with the search, so --resume imports them again")


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--plugin MODULE`` (repeatable) to a command's parser."""
    parser.add_argument("--plugin", action="append", metavar="MODULE", help=PLUGIN_HELP)


def import_or_exit(names: Iterable[str], *, where: str = "") -> tuple[str, ...]:
    """Imports plug-in modules (`search_space.registry.import_plugins`) or raises a one-line `UserError`.

    Args:
      names: module names, in order (repeats dropped).
      where: what named them, to begin the message ('search demo-1', 'preset file my.yaml'); '' for the flags.
    """
    from search_space.registry import PluginError, import_plugins

    try:
        return import_plugins(names)
    except PluginError as e:
        raise UserError(f"{where}: {e}" if where else str(e)) from None


def with_plugins(cfg: Any, names: Sequence[str]) -> Any:
    """`cfg` (a `NasConfig`) with `names` after its own plug-ins (repeats dropped)."""
    merged = tuple(dict.fromkeys([*cfg.plugins, *names]))
    return cfg if merged == cfg.plugins else dataclasses.replace(cfg, plugins=merged)


def plugins_of(doc: Any, *, what: str) -> tuple[str, ...]:
    """The ``plugins:`` of a config as a plain dict (a calibration study's: of both its fidelities' configs).

    Raises:
      UserError: a ``plugins`` that is not a list of strings.
    """
    if not isinstance(doc, Mapping):
        return ()
    if "proxy_config" in doc or "reference_config" in doc:  # a stored calibration study
        return tuple(dict.fromkeys([*plugins_of(doc.get("proxy_config"), what=what),
                                    *plugins_of(doc.get("reference_config"), what=what)]))
    names = doc.get("plugins")
    if names is None:
        return ()
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        from proxy_task.config import excerpt

        raise UserError(f"{what}: plugins must be a list of Python module names, got {excerpt(names)}")
    return tuple(names)


def preset_plugins(preset: str) -> tuple[str, ...]:
    """The ``plugins:`` of a preset file, read from its YAML before the file is parsed as a config; () for a
    registered preset (its factory's config has them already).

    Raises:
      FileNotFoundError, nas.config.codec.ConfigError: as `nas.config.presets.get_preset` would.
    """
    from nas.config.codec import read_yaml_file
    from nas.config.presets import preset_names

    # As `get_preset` tells a file from a name.
    if preset in preset_names() or not (preset.endswith((".yaml", ".yml")) or os.sep in preset):
        return ()

    return plugins_of(read_yaml_file(preset, what="preset file"), what=f"preset file {preset}")


def override_plugins(overrides: Iterable[Any]) -> tuple[str, ...]:
    """The modules a ``--set plugins=[...]`` names (imported before the config is read, as the flags are).

    Args:
      overrides: ``'key=value'`` texts or ``(key, value)`` pairs (`nas.config.codec.apply_overrides`).
    """
    from nas.config.codec import parse_override

    out: list[str] = []
    for item in overrides:
        if isinstance(item, str):
            if item.split("=", 1)[0].strip() != "plugins":
                continue
            _, value = parse_override(item)
        else:
            key, value = item
            if key != "plugins":
                continue
        out += plugins_of({"plugins": value}, what="--set plugins")
    return tuple(out)


def stored_plugins(text: str, *, what: str) -> tuple[str, ...]:
    """The ``plugins:`` of a stored config's YAML (a search's, or a calibration study's two), read before the
    config is parsed; () when the text does not read (the parse that follows says why)."""
    from nas.config.codec import MAX_STORED_YAML_BYTES, ConfigError, load_yaml

    try:
        doc = load_yaml(text, what=what, max_bytes=MAX_STORED_YAML_BYTES)
    except ConfigError:
        return ()
    return plugins_of(doc, what=what)


class _PreParseError(Exception):
    pass


class _PreParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _PreParseError(message)


def preimport(argv: Sequence[str] | None) -> None:
    """Imports the ``--plugin`` modules of a command line, and those of its ``--preset`` file, before the command
    line is parsed: a flag such as ``--evaluator NAME`` checks its value against the registry then. A command line
    that does not parse here is left to the real parser to report.

    Raises:
      UserError: a plug-in that cannot be imported (one line, naming it).
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith(("--plugin", "--preset")) for a in argv):
        return  # most commands: nothing to read
    pre = _PreParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--plugin", action="append", default=[])
    pre.add_argument("--preset")
    try:
        known, _ = pre.parse_known_args(argv)
    except _PreParseError:
        return
    if known.preset and os.path.isfile(known.preset):
        try:
            names = preset_plugins(known.preset)
        except (OSError, ValueError):
            names = ()  # the command reports a preset file that does not read
        if names:
            import_or_exit(names, where=f"preset file {known.preset}")
    if known.plugin:
        import_or_exit(known.plugin)


__all__ = ["PLUGIN_HELP", "add_plugin_argument", "import_or_exit", "override_plugins", "plugins_of", "preimport",
           "preset_plugins", "stored_plugins", "with_plugins"]

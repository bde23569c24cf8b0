"""Runners: where a search's trials run. The driver talks to trials only through the `Runner` interface.

- ``ray`` (`nas.runners.ray_runner`): Ray tasks on this machine or a cluster; warm worker processes, dead workers
  retried, reports by an actor.
- ``local`` (`nas.runners.local`): child processes of the driver (or, with ``in_process``, the driver itself), no Ray.

The registry names modules, imported when a runner is built, so choosing ``local`` never imports Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

from nas.runners.base import Runner, TrialOutcome, TrialSpec, TrialTask
from nas.runners.config import LocalRunnerConfig, RayRunnerConfig

# name -> ('module:Class', settings class)
_RUNNERS: dict[str, tuple[str, type]] = {
    "ray": ("nas.runners.ray_runner:RayRunner", RayRunnerConfig),
    "local": ("nas.runners.local:LocalRunner", LocalRunnerConfig),
}


def runner_names() -> tuple[str, ...]:
    """The registered runner names (the first is the default)."""
    return tuple(_RUNNERS)


def runner_config_classes() -> dict[str, type | None]:
    """Runner name -> its settings class."""
    return {name: cls for name, (_, cls) in _RUNNERS.items()}


def get_runner_class(name: str) -> type[Runner]:
    """The runner class registered as `name` (imports its module).

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    if name not in _RUNNERS:
        raise LookupError(f"unknown runner {name!r}; expected one of {', '.join(_RUNNERS)}")
    module, cls = _RUNNERS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def build_runner(name: str, settings: Any, **kwargs: Any) -> Runner:
    """Builds a registered runner: ``Runner(settings, **kwargs)`` (see `Runner`)."""
    return get_runner_class(name)(settings, **kwargs)


__all__ = ["Runner", "TrialOutcome", "TrialSpec", "TrialTask", "build_runner", "get_runner_class", "runner_names",
           "runner_config_classes"]

"""Runners: where a search's trials run. The driver talks to trials only through the `Runner` interface.

- ``ray`` (`nas.engine.runners.ray_runner`): Ray tasks on this machine or a cluster; warm worker processes, dead workers
  retried, reports by an actor.
- ``local`` (`local`): child processes of the driver (or, with ``in_process``, the driver itself), no Ray.

The registry names modules, imported when a runner is built, so choosing ``local`` never imports Ray.
"""

from __future__ import annotations

from typing import Any

from nas.engine.runners.base import Runner, TrialOutcome, TrialSpec, TrialTask
from nas.engine.runners.config import LocalRunnerConfig, RayRunnerConfig
from search_space.registry import Registry

# The runners, by name (the first is the default): their modules are imported when one is built.
RUNNERS = Registry("runner")


def register_runner(name: str, target: str, *, config_cls: type | None = None) -> Any:
    """Registers a runner: a `Runner` subclass at ``'module:Class'`` and its settings dataclass
    (``runner.<name>.<field>``).

    Raises:
      KeyError: the name is taken. ValueError: a malformed name or target.
    """
    return RUNNERS.register(name, target, config_cls=config_cls)


register_runner("ray", "nas.engine.runners.ray_runner:RayRunner", config_cls=RayRunnerConfig)
register_runner("local", "nas.engine.runners.local:LocalRunner", config_cls=LocalRunnerConfig)


def runner_names() -> tuple[str, ...]:
    """The registered runner names (the first is the default)."""
    return RUNNERS.names()


def runner_config_classes() -> dict[str, type | None]:
    """Runner name -> its settings class."""
    return RUNNERS.config_classes()


def get_runner_class(name: str) -> type[Runner]:
    """The runner class registered as `name` (imports its module).

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    return RUNNERS.load(name)  # type: ignore[no-any-return]


def build_runner(name: str, settings: Any, **kwargs: Any) -> Runner:
    """Builds a registered runner: ``Runner(settings, **kwargs)`` (see `Runner`)."""
    return get_runner_class(name)(settings, **kwargs)


__all__ = ["RUNNERS", "Runner", "TrialOutcome", "TrialSpec", "TrialTask", "build_runner", "get_runner_class", "register_runner",
           "runner_names", "runner_config_classes"]

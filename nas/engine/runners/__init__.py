"""Runners: where a search's trials run. The driver talks to trials only through the `Runner` interface.

- ``ray`` (`nas.engine.runners.ray_runner`): Ray tasks on this machine or a cluster; warm worker processes, dead workers
  retried, reports by an actor.
- ``local`` (`local`): child processes of the driver (or, with ``in_process``, the driver itself), no Ray.

The registry names modules, imported when a runner is built, so choosing ``local`` never imports Ray.

A runner is one module: besides running trials, its class checks a job's per-trial request against the machine or
cluster before anything of the job is created (`Runner.check_request`, called through `check_request`), and gives
the job's frame a `Backend` that starts what it needs and stops what it started (`Runner.backend`, through
`build_backend`): the ray runner's starts a local Ray on loopback or joins ``--address``, the local runner needs
none. A command therefore knows nothing of Ray or of any runner, and a plug-in runner brings its own checks and
start; one that defines neither has nothing to check and nothing to start. Writing one::

  class SlurmRunner(Runner):
      @classmethod
      def check_request(cls, cfg, *, address=None):   # before any folder, database or backend exists
          if cfg.search.gpus_per_trial > 8:
              raise UserError('--gpus-per-trial: a node has 8 GPUs')   # nas.cli.ui.UserError: one line
          return ()                                     # or warnings to show

      @classmethod
      def backend(cls, cfg, *, say, address=None):
          return SlurmAllocation(cfg, say=say)          # a `Backend`: __enter__, __exit__, before_writes

  register_runner('slurm', 'my_pkg.slurm:SlurmRunner', config_cls=SlurmRunnerConfig)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas.engine.runners.base import Backend, Runner, TrialOutcome, TrialSpec, TrialTask
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


def check_request(cfg: Any, *, address: str | None = None) -> tuple[str, ...]:
    """The per-trial request of a job, checked by the runner its config names (`Runner.check_request`) before
    anything of the job is created; a target that is no `Runner` and has no such check passes.

    Returns:
      Warnings to show.

    Raises:
      nas.cli.ui.UserError: the runner cannot serve the request. LookupError, PluginError: as `get_runner_class`.
    """
    check = getattr(get_runner_class(cfg.runner.type), "check_request", Runner.check_request)
    return tuple(check(cfg, address=address))


def build_backend(cfg: Any, *, say: Callable[[str], None], address: str | None = None) -> Backend:
    """What the runner the config names needs up for the job (`Runner.backend`), not started yet; a `Backend` that
    needs nothing for a target that is no `Runner` and has no backend.

    Raises:
      LookupError, PluginError: as `get_runner_class`.
    """
    backend = getattr(get_runner_class(cfg.runner.type), "backend", Runner.backend)
    return backend(cfg, say=say, address=address)  # type: ignore[no-any-return]


__all__ = ["RUNNERS", "Backend", "Runner", "TrialOutcome", "TrialSpec", "TrialTask", "build_backend", "build_runner",
           "check_request", "get_runner_class", "register_runner", "runner_names", "runner_config_classes"]

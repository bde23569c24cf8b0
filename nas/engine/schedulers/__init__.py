"""Schedulers: which running trials continue. One module each plus one registration here.

- ``none`` (`nas.engine.schedulers.base.NoScheduler`): every trial trains to the end (the default).
- ``asha`` (`nas.engine.schedulers.asha`): asynchronous successive halving, trials below the top 1/eta at a rung stop.
- ``median`` (`nas.engine.schedulers.median`): the median stopping rule, trials below the completed trials' median stop.

A scheduler's settings are ``scheduler.<name>.<field>`` (`nas.config.schema.SchedulerSection`); its class has
``from_config(settings, rungs)``. The modules are pure Python: importing this package loads no TensorFlow or Ray.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from nas.engine.schedulers.asha import AshaConfig
from nas.engine.schedulers.base import Decision, NoScheduler, Scheduler, pruned_reward, quantile, rank_quantile
from nas.engine.schedulers.median import MedianConfig


@functools.cache
def schedulers() -> Any:  # -> search_space.registry.Registry
    """The scheduler registry, made at first use (`import search_space` loads numpy, which `spinenas top` does not
    need). A plug-in registers its scheduler with `register_scheduler`."""
    from search_space.registry import Registry

    registry = Registry("scheduler")
    registry.register("none", "nas.engine.schedulers.base:NoScheduler")
    registry.register("asha", "nas.engine.schedulers.asha:AshaScheduler", config_cls=AshaConfig)
    registry.register("median", "nas.engine.schedulers.median:MedianStoppingScheduler", config_cls=MedianConfig)
    return registry


def register_scheduler(name: str, target: str, *, config_cls: type | None = None) -> Any:
    """Registers a scheduler: a `Scheduler` subclass at ``'module:Class'`` with ``from_config(settings, rungs)``,
    and the dataclass of its ``scheduler.<name>.*`` settings.

    Raises:
      KeyError: the name is taken. ValueError: a malformed name or target.
    """
    return schedulers().register(name, target, config_cls=config_cls)


def scheduler_names() -> tuple[str, ...]:
    """The registered scheduler names ('none' first: the default)."""
    return schedulers().names()


def build_scheduler(name: str, settings: Any, rungs: Sequence[int]) -> Scheduler:
    """The scheduler registered as `name`, from its settings section and the search's rungs.

    Raises:
      LookupError: unknown name, listing the known ones.
    """
    cls = schedulers().load(name)
    if settings is None:
        return cls()
    return cls.from_config(settings, rungs)


__all__ = ["AshaConfig", "Decision", "MedianConfig", "NoScheduler", "Scheduler", "build_scheduler", "schedulers",
           "pruned_reward", "quantile", "rank_quantile", "register_scheduler", "scheduler_names"]

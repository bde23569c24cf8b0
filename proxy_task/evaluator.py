"""Evaluators: what scores an architecture in a trial, behind one interface, chosen by name from a registry.

An evaluator is built from its settings (one section of the search's config, ``evaluator.<name>``, or none), the
proxy task's settings (``proxy.*``) and the trial's context, and scores an `ArchSpec` for a seed. While it works it
calls ``report(step, metrics)``: training loss, learning rate and images/s every ``proxy.log_every`` steps, AP at
the intermediate evaluations ``proxy.eval_at_steps``. ``report`` returns True when the trial is asked to stop
(the runner's cooperative stop, which the early-stopping scheduler uses): the evaluator then ends at once and
returns what it has, with ``ProxyResult.stopped_at`` set to the step of that report.

This module is TF-free: the registry holds module paths, and an evaluator's module (TensorFlow for
``retinanet``) is imported only when it is built, inside the trial's worker.

Adding an evaluator is one module plus one registration::

  # my_package/latency.py
  @dataclasses.dataclass(frozen=True)
  class LatencyConfig:
      device: str = 'cpu'

  class LatencyEvaluator(Evaluator):
      def __init__(self, settings: LatencyConfig, proxy: ProxyConfig, context: TrialContext): ...
      def evaluate(self, arch, *, seed, report=no_report): ...

  register_evaluator('latency', 'my_package.latency:LatencyEvaluator', config_cls=LatencyConfig)

after which ``--set evaluator.type=latency --set evaluator.latency.device=cpu`` selects and configures it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from proxy_task.config import SurrogateConfig
from search_space.registry import Entry, Registry

if TYPE_CHECKING:
    from proxy_task.config import ProxyConfig
    from proxy_task.result import ProxyResult
    from search_space import ArchSpec

#: ``report(step, metrics) -> stop``: an evaluator's progress callback; True asks the trial to stop now.
Reporter = Callable[[int, Mapping[str, float]], bool]


def no_report(step: int, metrics: Mapping[str, float]) -> bool:
    """The `Reporter` of a trial nobody watches: never asks it to stop."""
    del step, metrics
    return False


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What a trial knows of the search it belongs to (plain data: crosses the runner's process boundary).

    Attributes:
      family: the search space's family.
      window: the space's parent window (None: no limit).
      search_seed: the search's seed (the surrogate draws its hidden optimum from it unless told otherwise).
      cpus: the CPUs the trial holds (TensorFlow's intra-op threads).
      gpus: the GPUs it holds (``search.gpus_per_trial``; a fraction caps its share of GPU memory).
      label: tags the trial's log lines, e.g. 'trial 12'.
    """

    family: str = "spinenet49"
    window: int | None = 5
    search_seed: int = 0
    cpus: float = 1.0
    gpus: float = 0.0
    label: str = "trial"


class Evaluator(abc.ABC):
    """Scores architectures for a search's trials.

    Subclasses take ``(settings, proxy, context)``: their own config section (an instance of the registered
    `config_cls`, or None when it has none), the `ProxyConfig` and the `TrialContext`.
    """

    #: False when the evaluator never imports TensorFlow: only such evaluators may run inside the driver's own
    #: process (the local runner's in-process mode).
    uses_tensorflow: ClassVar[bool] = True

    @abc.abstractmethod
    def evaluate(self, arch: ArchSpec, *, seed: int, report: Reporter = no_report) -> ProxyResult:
        """Trains and scores `arch`; never raises for a failed trial (see `ProxyResult.error`).

        Args:
          arch: the architecture.
          seed: the trial's seed (initializers, input order, augmentation, noise).
          report: called with (step, metrics) as the trial goes; when it returns True the evaluator stops at once
            and returns what it has, with ``stopped_at`` set.
        """


#: The evaluators, by name (`search_space.registry`): an entry's target is its `Evaluator` subclass, imported in
#: the trial's worker; its meta says ``uses_tensorflow`` (False lets it run inside the driver's process).
EVALUATORS = Registry("evaluator")


def register_evaluator(
    name: str, target: str, *, config_cls: type | None = None, uses_tensorflow: bool = True
) -> Entry:
    """Registers an evaluator under `name`.

    Args:
      name: the name ``evaluator.type`` selects.
      target: ``'module:Class'`` of the `Evaluator` subclass (imported lazily, in the trial's worker).
      config_cls: the frozen dataclass of its settings section, or None.
      uses_tensorflow: False lets it run inside the driver's process (in-process runner).

    Raises:
      KeyError: when the name is taken. ValueError: for a malformed target or a config class that is not a
        dataclass.
    """
    return EVALUATORS.register(name, target, config_cls=config_cls, uses_tensorflow=bool(uses_tensorflow))


def evaluator_names() -> tuple[str, ...]:
    """The registered evaluator names."""
    return EVALUATORS.names()


def get_evaluator_entry(name: str) -> Entry:
    """The registry entry of `name` (its ``meta['uses_tensorflow']`` says what `Evaluator.uses_tensorflow` says).

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    return EVALUATORS.lookup(name)


def uses_tensorflow(name: str) -> bool:
    """Whether evaluator `name` trains with TensorFlow (its trials need processes of their own), known without
    importing it."""
    return bool(get_evaluator_entry(name).meta.get("uses_tensorflow", True))


def build_evaluator(name: str, *, settings: Any, proxy: ProxyConfig, context: TrialContext) -> Evaluator:
    """Builds a registered evaluator (imports its module).

    Args:
      name: the registry name.
      settings: its section, an instance of its `config_cls` (None when it has none, or for the defaults).
      proxy: the proxy task's settings.
      context: the trial's context.

    Raises:
      LookupError: unknown name. ValueError: settings of another class.
    """
    entry = get_evaluator_entry(name)
    if entry.config_cls is None:
        settings = None
    elif settings is None:
        settings = entry.config_cls()
    elif type(settings) is not entry.config_cls:
        raise ValueError(
            f"evaluator {name!r} settings: expected a {entry.config_cls.__name__}, got {type(settings).__name__}"
        )
    return entry.load()(settings, proxy, context)  # type: ignore[no-any-return]


register_evaluator("retinanet", "proxy_task.retinanet:RetinaNetEvaluator", config_cls=None, uses_tensorflow=True)
register_evaluator("surrogate", "proxy_task.surrogate:SurrogateTrialEvaluator", config_cls=SurrogateConfig,
                   uses_tensorflow=False)

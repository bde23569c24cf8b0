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

  register_evaluator('latency', 'my_package.latency:LatencyEvaluator', config_cls=LatencyConfig,
                     needs_data=False)

after which ``--set evaluator.type=latency --set evaluator.latency.device=cpu`` selects and configures it.

An evaluator owns its settings: besides its section it declares which of its settings, the proxy's and the
search's change its scores (`Evaluator.score_settings`: its part of a result fingerprint, so a stored result is
reused only where it means the same) and how that reads to a person (`Evaluator.describe`); its registration says
what it needs before a trial runs (``needs_data``: ``proxy.data`` on disk) and what a trial takes
(``uses_tensorflow``: a process of its own). The defaults are those of a trained proxy (``retinanet``).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from proxy_task.config import GENERATOR_VERSION, SurrogateConfig
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


# Proxy settings that do not change a trained proxy's score. The seed is left out on purpose: a trial's seed is the
# search's seed plus its index, and a result for one seed stands for the architecture (as the dedup always did).
PROXY_NON_SCORE = frozenset({"seed", "threads", "log_every", "eval_at_steps", "deterministic", "eval_batch_size"})
# Proxy settings added after trials were first stored, with the value every earlier trial trained with: left out of
# a fingerprint at that value, so stored fingerprints stand; another value gets fingerprints of its own.
PROXY_SINCE: Mapping[str, Any] = {"mixed_precision": "float32", "grappler": True}


def data_identity(data: Mapping[str, Any], *, generator_settings: bool) -> dict[str, Any]:
    """A dataset (``proxy.data`` as a plain dict) as a fingerprint sees it: the synthetic set by its generator's
    version (and its parameters, with `generator_settings`), wherever it is cached; a made split by its folder,
    which says it all."""
    if data.get("kind") == "synth":
        synth = {k: v for k, v in data.items() if k != "path"} if generator_settings else {"kind": "synth"}
        return {**synth, "generator_version": GENERATOR_VERSION}
    return {"kind": data.get("kind"), "path": data.get("path")}


class Evaluator(abc.ABC):
    """Scores architectures for a search's trials.

    Subclasses take ``(settings, proxy, context)``: their own config section (an instance of the registered
    `config_cls`, or None when it has none), the `ProxyConfig` and the `TrialContext`.
    """

    #: False when the evaluator never imports TensorFlow: only such evaluators may run inside the driver's own
    #: process (the local runner's in-process mode).
    uses_tensorflow: ClassVar[bool] = True

    @classmethod
    def score_settings(
        cls,
        settings: Mapping[str, Any] | None,
        proxy: Mapping[str, Any],
        search: Mapping[str, Any],
        *,
        reward_uses_cost: bool,
    ) -> dict[str, Any]:
        """The settings that change this evaluator's scores, as plain JSON-able data: its part of a result
        fingerprint (the fingerprint adds the evaluator's name, the reward's settings and a study's mark).

        The default is a trained proxy's: every proxy setting but seeds, threads, logging and intermediate
        evaluations (`PROXY_NON_SCORE`), the dataset as `data_identity` sees it, and its whole settings section.
        An evaluator whose scores depend on less (or on the search, as the surrogate's hidden optimum does)
        overrides it. Changing what it returns changes every stored fingerprint of the evaluator.

        Args:
          settings: its settings section as a plain dict (None when it has none).
          proxy: the proxy task's settings (``proxy.*``) as a plain dict.
          search: the search's settings (``search.*``) as a plain dict (seed, family, window, ...).
          reward_uses_cost: the search's reward reads the trial's params or FLOPs, so whatever they depend on
            changes the reward too.

        Returns:
          A dict; its ``'settings'`` entry, if any, is the part of its own section that counts (the fingerprint
          keeps it under the evaluator's name), the other entries are kept as they are (e.g. ``'proxy'``).
        """
        del search, reward_uses_cost  # its params and FLOPs follow from proxy settings that are all in already
        # 'auto' precision is one fingerprint whatever each trial picked on its devices (the trial stores what it
        # trained in).
        out_proxy = {k: v for k, v in proxy.items()
                     if k not in PROXY_NON_SCORE and not (k in PROXY_SINCE and v == PROXY_SINCE[k])}
        out_proxy["data"] = data_identity(out_proxy["data"], generator_settings=True)
        out: dict[str, Any] = {"proxy": out_proxy}
        if settings is not None:
            out["settings"] = dict(settings)
        return out

    @classmethod
    def describe(cls, settings: Mapping[str, Any] | None, proxy: Mapping[str, Any], search: Mapping[str, Any]) -> str:
        """What a fingerprint of this evaluator stands for, after its name: e.g. '128 px 800 steps on synth'.

        Reads stored configs of any age, so every setting may be missing ('?').

        Args:
          settings: its settings section as a plain dict (None when it has none or it was not stored).
          proxy: the proxy task's settings as a plain dict.
          search: the search's settings as a plain dict.
        """
        del settings, search
        data = proxy.get("data") or {}
        where = data.get("kind", "?") if data.get("kind") == "synth" else (data.get("path") or data.get("kind", "?"))
        what = f"{proxy.get('image_size', '?')} px {proxy.get('train_steps', '?')} steps on {where}"
        if proxy.get("mixed_precision", "float32") != "float32":
            what += f", {proxy['mixed_precision']} precision"
        if proxy.get("grappler", True) is False:
            what += ", Grappler off"
        return what

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
#: the trial's worker; its meta says ``uses_tensorflow`` (False lets it run inside the driver's process) and
#: ``needs_data`` (its trials read ``proxy.data``).
EVALUATORS = Registry("evaluator")


def register_evaluator(
    name: str, target: str, *, config_cls: type | None = None, uses_tensorflow: bool = True, needs_data: bool = True
) -> Entry:
    """Registers an evaluator under `name`.

    Args:
      name: the name ``evaluator.type`` selects.
      target: ``'module:Class'`` of the `Evaluator` subclass (imported lazily, in the trial's worker).
      config_cls: the frozen dataclass of its settings section, or None.
      uses_tensorflow: False lets it run inside the driver's process (in-process runner).
      needs_data: its trials read the proxy's dataset (``proxy.data``): the CLI makes it (the synthetic set) or
        checks it is there before it creates a search or study, so a missing one fails before anything is made.

    Raises:
      KeyError: when the name is taken. ValueError: for a malformed target or a config class that is not a
        dataclass.
    """
    return EVALUATORS.register(name, target, config_cls=config_cls, uses_tensorflow=bool(uses_tensorflow),
                               needs_data=bool(needs_data))


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


def needs_data(name: str) -> bool:
    """Whether evaluator `name`'s trials read the proxy's dataset, known without importing it."""
    return bool(get_evaluator_entry(name).meta.get("needs_data", True))


def get_evaluator_class(name: str) -> type[Evaluator]:
    """The `Evaluator` class of `name` (its module imported; TF-free for the built-in ones), whose class methods
    declare what changes its scores. A target that is a factory, not an `Evaluator` subclass, declares nothing:
    `Evaluator` itself (the defaults) is returned.

    Raises:
      LookupError: unknown name. PluginError: its module cannot be imported.
    """
    target = get_evaluator_entry(name).load()
    return target if isinstance(target, type) and issubclass(target, Evaluator) else Evaluator


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
                   uses_tensorflow=False, needs_data=False)

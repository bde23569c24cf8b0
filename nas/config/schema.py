"""The search job's config: what to search, who proposes, what scores, where trials run, the proxy task (TF-free).

A whole search is one `NasConfig`:

- ``search``: the space, the budget, resources, the reward, checkpoints;
- ``controller``: ``type`` (ppo, evolution, random) and every controller's settings (``controller.ppo.*``, the
  fields of `controller.PPOConfig` and so on);
- ``evaluator``: ``type`` (retinanet, surrogate) and the settings of those that have some
  (``evaluator.surrogate.*``; the retinanet evaluator's settings are ``proxy.*``);
- ``runner``: ``type`` (ray, local) and their settings (``runner.local.in_process``, ...);
- ``scheduler``: ``type`` (none, asha, median) and their settings (``scheduler.asha.rungs``, ``.eta``,
  ``scheduler.median.warmup_trials``, ...);
- ``proxy``: the proxy task (data, model scaling, schedule, evaluation).

A config stored by an earlier version (with ``search.controller``, ``search.evaluator``, ``search.surrogate_*``) is
migrated when it is read (`NasConfig.migrate_dict`), so its search resumes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from nas.engine.schedulers.asha import AshaConfig
from nas.engine.schedulers.median import MedianConfig
from nas.config.sections import OneOf
from proxy_task.config import (
    MAX_INT,
    MAX_SEED,
    DataConfig,
    ProxyConfig,
    SurrogateConfig,
    check_eval_steps,
    check_number,
    excerpt,
)

REWARDS = ("ap", "ap-flops")
# `search.flops_exponent` stops here (MnasNet's is 0.07): a larger w makes (target / flops) ** w overflow a float.
MAX_FLOPS_EXPONENT = 10.0
# `search.workers` stops here: trials at once, far past any cluster this runs on (each holds a Ray task or a process).
MAX_WORKERS = 10_000

__all__ = ["AshaConfig", "MedianConfig", "ControllerSection", "DataConfig", "EvaluatorSection", "NasConfig", "ProxyConfig", "REWARDS",
           "RunnerSection", "SchedulerSection", "SearchConfig", "SurrogateConfig", "controller_config",
           "scheduler_rungs", "trial_proxy"]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How the search runs.

    Attributes:
      family: the search space ('r35-sp18', 'r23-sp30', 'r14-sp39', 'r0-sp53', 'spinenet49').
      window: parents of intermediate blocks come from the last `window` blocks built (0: no limit).
      trials: trials to finish (completed, failed, cached and rejected ones all count).
      workers: trials run at once (at most `MAX_WORKERS`).
      cpus_per_trial: CPUs per trial (Ray's resource request; TF's thread pools are sized to it).
      gpus_per_trial: GPUs per trial.
      trial_timeout_s: a trial running longer is cancelled and stored as failed (0: no limit).
      reward: 'ap', or 'ap-flops' (MnasNet-style: AP * (target_flops / flops) ** w, penalty capped).
      target_flops: the FLOPs target of 'ap-flops' (multiply-adds per image at the proxy resolution).
      flops_exponent: w of 'ap-flops' (MnasNet's -0.07 soft constraint is written here as 0.07), in [0, 10].
      max_flops: a hard FLOPs limit (0: none), in multiply-adds per image at the proxy's resolution, as
        `ProxyConfig.cost` counts them (what a trial stores as its flops): a proposal over it is not trained but
        stored as 'rejected' and fed back to the controller as a failure (`reward_for_failure`), at once; it counts
        toward `trials`. Vertex AI NAS treats its latency constraints so. Not part of the result fingerprint (it
        decides which architectures are trained, not what a trained one scores); fixed for the life of a search.
      reward_for_failure: the reward a failed trial feeds the controller, in [-1, 1] like the rewards (an AP, or an
        AP scaled down by 'ap-flops'); None: the controller skips it.
      retry_pruned: train an architecture again although a trial of it was pruned (``scheduler.type`` asha) under
        the same fingerprint; by default such an architecture is known, like a completed one: it is not retrained,
        and the reward its pruned trial was fed is fed again (a 'cached' trial).
      reuse_workers: trials reuse Ray worker processes ("warm workers"): TensorFlow and Model Garden are imported
        once per worker, not once per trial, and the worker clears Keras' session and the trial's graphs between
        trials (the same seed gives the same losses and AP as in a fresh process). Trials that ask for GPUs always
        get a fresh process (GPU memory is not known to be released between trials).
      trials_per_worker: with reuse_workers, a worker runs at most this many TensorFlow trials, then a fresh one
        takes over (0: no bound; TF-free trials are not bounded). The default, 10, is as many as keep a warm
        worker's peak memory within 10% of a fresh process's (with glibc's malloc arenas capped,
        `proxy_task.trainer.MALLOC_ARENAS`), while each warm trial saves a fresh process's import and build; see
        the README's Benchmarks, `scripts/bench/proxy.py` (``results/proxy-warm-memory-arenas.json``).
      seed: seeds the controller and, with the trial index, each trial's proxy training (0 to `MAX_SEED`).
      checkpoint_interval_s: the controller's state is stored after an update unless the last stored one is younger
        than this (0: after every update), and always when the search ends (not on Ctrl-C). A resume loads the
        last one and replays the trials finished after it, in their order, so the controller learns from the same
        trials as one that never stopped. Trials of a real search take minutes, so every update is stored; the
        bound matters for fast (surrogate) searches, where storing PPO's state (megabytes) after every update would
        cap the store's insert rate (see the README's Benchmarks, `scripts/bench/db.py`).
    """

    family: str = "spinenet49"
    window: int = 5
    trials: int = 6
    workers: int = 1
    cpus_per_trial: float = 2.0
    gpus_per_trial: float = 0.0
    trial_timeout_s: float = 0.0
    reward: str = "ap"
    target_flops: float = 0.0
    flops_exponent: float = 0.07
    max_flops: float = 0.0
    reward_for_failure: float | None = 0.0
    retry_pruned: bool = False
    reuse_workers: bool = True
    trials_per_worker: int = 10
    seed: int = 0
    checkpoint_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {excerpt(self.reward)}")
        check_number("target_flops", self.target_flops, low=0, note="(multiply-adds per image; 0: none)")
        if self.reward == "ap-flops" and not self.target_flops > 0:
            raise ValueError("reward 'ap-flops' needs target_flops > 0 (multiply-adds per image)")
        check_number("flops_exponent", self.flops_exponent, low=0, high=MAX_FLOPS_EXPONENT)
        if not (isinstance(self.max_flops, (int, float)) and not isinstance(self.max_flops, bool)
                and math.isfinite(self.max_flops) and self.max_flops >= 0):
            raise ValueError(f"max_flops must be 0 (no limit) or a positive number of multiply-adds per image, got "
                             f"{excerpt(self.max_flops)}")
        check_number("trials", self.trials, integer=True, low=1)
        check_number("workers", self.workers, integer=True, low=1, high=MAX_WORKERS)
        check_number("cpus_per_trial", self.cpus_per_trial, low=0, low_open=True)
        check_number("gpus_per_trial", self.gpus_per_trial, low=0)
        check_number("trial_timeout_s", self.trial_timeout_s, low=0, note="(seconds; 0: no limit)")
        check_number("reward_for_failure", self.reward_for_failure, low=-1, high=1, optional=True,
                     note="(null: failed trials are skipped)")
        check_number("trials_per_worker", self.trials_per_worker, integer=True, low=0, note="(0: no bound)")
        check_number("seed", self.seed, integer=True, low=0, high=MAX_SEED)
        check_number("checkpoint_interval_s", self.checkpoint_interval_s, low=0)
        if not (isinstance(self.window, int) and not isinstance(self.window, bool)
                and (self.window == 0 or 2 <= self.window <= MAX_INT)):
            raise ValueError(f"window must be 0 (no limit) or at least 2, got {excerpt(self.window)}")
        for name in ("retry_pruned", "reuse_workers"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {excerpt(getattr(self, name))}")


@dataclasses.dataclass(frozen=True)
class ControllerSection(OneOf):
    """Who proposes: ``type`` and the settings of every registered controller (`controller` registry).

    ``reward_for_failure`` is a setting of the search (``search.reward_for_failure``), not of these sections: the
    driver gives it to the controller (`controller_config`).
    """

    kind: ClassVar[str] = "controller"
    excluded: ClassVar[Mapping[str, str]] = {"reward_for_failure": "search.reward_for_failure"}

    @classmethod
    def choices(cls) -> dict[str, type | None]:
        from controller import controller_names, get_config_class

        return {name: get_config_class(name) for name in controller_names()}


@dataclasses.dataclass(frozen=True)
class EvaluatorSection(OneOf):
    """What scores a trial: ``type`` and the settings of the registered evaluators that have some."""

    kind: ClassVar[str] = "evaluator"

    @classmethod
    def choices(cls) -> dict[str, type | None]:
        from proxy_task.evaluator import evaluator_names, get_evaluator_entry

        return {name: get_evaluator_entry(name).config_cls for name in evaluator_names()}


@dataclasses.dataclass(frozen=True)
class RunnerSection(OneOf):
    """Where trials run: ``type`` (ray: the default and the distributed path; local: child processes, no Ray)."""

    kind: ClassVar[str] = "runner"

    @classmethod
    def choices(cls) -> dict[str, type | None]:
        from nas.engine.runners import runner_config_classes

        return runner_config_classes()


@dataclasses.dataclass(frozen=True)
class SchedulerSection(OneOf):
    """Which running trials continue: ``type`` none (every trial trains to the end), asha (`AshaConfig`), median
    (`MedianConfig`) or another registered scheduler (`nas.engine.schedulers`). Fixed for the life of a search."""

    kind: ClassVar[str] = "scheduler"

    @classmethod
    def choices(cls) -> dict[str, type | None]:
        from nas.engine.schedulers import schedulers

        return schedulers().config_classes()


@dataclasses.dataclass(frozen=True)
class NasConfig:
    """A whole search: its settings, the controller, the evaluator, the runner and the proxy task.

    Attributes:
      search: how the search runs.
      controller: who proposes architectures (``controller.type``, ``controller.<type>.<field>``).
      evaluator: what scores them (``evaluator.type``, ``evaluator.surrogate.<field>``).
      runner: where trials run (``runner.type``, ``runner.<type>.<field>``).
      proxy: how each architecture is trained and scored (the retinanet evaluator's settings).
      scheduler: which running trials continue (``scheduler.type``, ``scheduler.<type>.<field>``).
      plugins: Python modules imported before the config is read, in the driver and in every worker (their
        import registers controllers, evaluators, runners, schedulers, and their settings sections); dotted
        names whose root is importable (on PYTHONPATH). Stored with the search, so a resume imports them again;
        not part of a result's fingerprint (a plug-in's evaluator and its settings are, as ``evaluator.*``).
    """

    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    controller: ControllerSection = dataclasses.field(default_factory=ControllerSection)
    evaluator: EvaluatorSection = dataclasses.field(default_factory=EvaluatorSection)
    runner: RunnerSection = dataclasses.field(default_factory=RunnerSection)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    scheduler: SchedulerSection = dataclasses.field(default_factory=SchedulerSection)
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_plugins(self.plugins)
        settings = self.scheduler.get()
        if settings is not None and hasattr(settings, "rungs"):
            name = self.scheduler.type
            rungs = scheduler_rungs(self)
            if not rungs:
                raise ValueError(f"scheduler {name} needs rungs: set scheduler.{name}.rungs (--rungs) or the proxy's "
                                 "eval_at_steps")
            check_eval_steps(rungs, self.proxy.train_steps, f"scheduler.{name}.rungs")
        local = self.runner.sections.get("local")
        if self.runner.type == "local" and local is not None and local.in_process:
            from proxy_task.evaluator import uses_tensorflow

            if uses_tensorflow(self.evaluator.type):
                raise ValueError(
                    f"runner.local.in_process runs trials inside the driver's process, which only TF-free "
                    f"evaluators may do; evaluator {self.evaluator.type!r} trains with TensorFlow (use "
                    "runner.local.in_process=false: a child process per trial)"
                )

    @staticmethod
    def migrate_dict(d: Mapping[str, Any]) -> dict[str, Any]:
        """A config dict written by an earlier version, in today's layout (unchanged when it already is).

        Before the evaluator, controller and runner sections existed, ``search`` held ``controller``,
        ``evaluator``, ``surrogate_duration_s`` and ``surrogate_noise``; their values move to
        ``controller.type``, ``evaluator.type``, ``evaluator.surrogate.duration_s`` and
        ``evaluator.surrogate.noise``. A missing section takes its defaults, as a PPO controller stored then was
        built with its config's defaults.
        """
        out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items()}
        search = out.get("search")
        if not isinstance(search, dict):
            return out
        moves = (("controller", ("controller", "type")), ("evaluator", ("evaluator", "type")),
                 ("surrogate_duration_s", ("evaluator", "surrogate", "duration_s")),
                 ("surrogate_noise", ("evaluator", "surrogate", "noise")))
        for old, path in moves:
            if old not in search:
                continue
            value = search.pop(old)
            node = out
            for part in path[:-1]:
                child = node.get(part)
                child = dict(child) if isinstance(child, Mapping) else {}
                node[part] = child
                node = child
            node.setdefault(path[-1], value)
        return out


def _check_plugins(plugins: Any) -> None:
    from search_space.registry import PluginError, check_plugins

    if not isinstance(plugins, tuple):
        raise ValueError(f"plugins must be a list of Python module names, got {excerpt(plugins)}")
    try:
        if check_plugins(plugins) != plugins:
            raise ValueError(f"plugins must name each module once, got {excerpt(list(plugins))}")
    except PluginError as e:
        raise ValueError(f"plugins: {e}") from None


def controller_config(cfg: NasConfig) -> Any:
    """The chosen controller's config, with the search's `reward_for_failure` (its one home)."""
    section = cfg.controller.get()
    if section is None:
        from controller import get_config_class

        section = get_config_class(cfg.controller.type)()
    if "reward_for_failure" in {f.name for f in dataclasses.fields(section)}:
        section = dataclasses.replace(section, reward_for_failure=cfg.search.reward_for_failure)
    return section


def scheduler_rungs(cfg: NasConfig) -> tuple[int, ...]:
    """The steps at which the scheduler judges running trials: its settings' ``rungs``, else the proxy's
    eval_at_steps; () for a scheduler without rungs (none)."""
    settings = cfg.scheduler.get()
    if settings is None or not hasattr(settings, "rungs"):
        return ()
    return tuple(settings.rungs) or tuple(cfg.proxy.eval_at_steps)


def trial_proxy(cfg: NasConfig) -> ProxyConfig:
    """The proxy the trials run: the config's, with an intermediate evaluation at every rung of the scheduler."""
    rungs = scheduler_rungs(cfg)
    if not rungs or set(rungs) <= set(cfg.proxy.eval_at_steps):
        return cfg.proxy
    return dataclasses.replace(cfg.proxy, eval_at_steps=tuple(sorted(set(cfg.proxy.eval_at_steps) | set(rungs))))

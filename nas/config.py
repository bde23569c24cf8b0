"""The search job's config: what to search, how trials run, and the proxy task that scores them (TF-free)."""

from __future__ import annotations

import dataclasses

from proxy_task.config import DataConfig, ProxyConfig

CONTROLLERS = ("ppo", "evolution", "random")
EVALUATORS = ("retinanet", "surrogate")
REWARDS = ("ap", "ap-flops")

__all__ = ["CONTROLLERS", "DataConfig", "EVALUATORS", "NasConfig", "ProxyConfig", "REWARDS", "SearchConfig"]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How the search runs.

    Attributes:
      family: the search space ('r35-sp18', 'r23-sp30', 'r14-sp39', 'r0-sp53', 'spinenet49').
      window: parents of intermediate blocks come from the last `window` blocks built (0: no limit).
      controller: 'ppo' (RNN policy trained with PPO, as the paper), 'evolution' or 'random'.
      trials: trials to finish (completed, failed and cached ones all count).
      workers: trials run at once.
      cpus_per_trial: Ray CPUs per trial (TF's thread pools are sized to it).
      gpus_per_trial: Ray GPUs per trial.
      trial_timeout_s: a trial running longer is cancelled and stored as failed (0: no limit).
      evaluator: 'retinanet' (the real proxy task) or 'surrogate' (instant structural reward, for tests and
        benchmarks).
      surrogate_duration_s: simulated seconds per surrogate trial.
      surrogate_noise: Gaussian noise of the surrogate's reward.
      reward: 'ap', or 'ap-flops' (MnasNet-style: AP * (target_flops / flops) ** w, penalty capped).
      target_flops: the FLOPs target of 'ap-flops' (multiply-adds per image at the proxy resolution).
      flops_exponent: w of 'ap-flops' (MnasNet's -0.07 soft constraint is written here as 0.07).
      reward_for_failure: the reward a failed trial feeds the controller (None: the controller skips it).
      reuse_workers: let surrogate trials reuse Ray worker processes (retinanet trials always get a fresh process,
        because TensorFlow keeps graphs and memory for the life of a process).
      seed: seeds the controller and, with the trial index, each trial's proxy training.
      checkpoint_interval_s: the controller's state is stored after an update unless the last stored one is younger
        than this (0: after every update), and always when the search ends (not on Ctrl-C). A resume loads the
        last one and replays the trials finished after it, in their order, so the controller learns from the same
        trials as one that never stopped. Trials of a real search take minutes, so every update is stored; the
        bound matters for fast (surrogate) searches, where a PPO state of ~2 MB after every 10 trials would cap the
        database at ~200-250 trials/s.
    """

    family: str = "spinenet49"
    window: int = 5
    controller: str = "ppo"
    trials: int = 6
    workers: int = 1
    cpus_per_trial: float = 2.0
    gpus_per_trial: float = 0.0
    trial_timeout_s: float = 0.0
    evaluator: str = "retinanet"
    surrogate_duration_s: float = 0.0
    surrogate_noise: float = 0.0
    reward: str = "ap"
    target_flops: float = 0.0
    flops_exponent: float = 0.07
    reward_for_failure: float | None = 0.0
    reuse_workers: bool = False
    seed: int = 0
    checkpoint_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.controller not in CONTROLLERS:
            raise ValueError(f"controller must be one of {list(CONTROLLERS)}, got {self.controller!r}")
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"evaluator must be one of {list(EVALUATORS)}, got {self.evaluator!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {self.reward!r}")
        if self.reward == "ap-flops" and not self.target_flops > 0:
            raise ValueError("reward 'ap-flops' needs target_flops > 0 (multiply-adds per image)")
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        if self.trial_timeout_s < 0 or self.surrogate_duration_s < 0 or self.surrogate_noise < 0:
            raise ValueError("trial_timeout_s, surrogate_duration_s and surrogate_noise must be >= 0")
        if not self.checkpoint_interval_s >= 0:
            raise ValueError(f"checkpoint_interval_s must be >= 0, got {self.checkpoint_interval_s}")
        if self.window == 1 or self.window < 0:
            raise ValueError(f"window must be 0 (no limit) or at least 2, got {self.window}")


@dataclasses.dataclass(frozen=True)
class NasConfig:
    """A whole search: its settings and the proxy task.

    Attributes:
      search: how the search runs.
      proxy: how each architecture is trained and scored.
    """

    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)

"""The median stopping rule (Golovin et al., "Google Vizier", 2017; NNI's Medianstop, Optuna's `MedianPruner`).

A running trial is stopped at a rung when its best intermediate reward so far is below the median of the completed
trials' rewards at that same step, once `warmup_trials` trials have completed and from step `warmup_steps` on.
Unlike ASHA it compares with finished trials only, so it stops nothing until the first few have finished, and it
never stops the better half.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Mapping, Sequence

from nas.engine.schedulers.base import Scheduler
from proxy_task.config import MAX_INT, check_eval_steps, check_number

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MedianConfig:
    """Settings of `MedianStoppingScheduler` (``scheduler.median.<field>``).

    Attributes:
      rungs: the proxy steps at which a running trial is judged (increasing, each before ``proxy.train_steps``);
        empty: the proxy's ``eval_at_steps``. Each implies an intermediate evaluation.
      warmup_trials: nothing is stopped before this many trials have completed (Optuna's ``n_startup_trials``).
      warmup_steps: nothing is stopped at a rung before this step (Optuna's ``n_warmup_steps``).
    """

    rungs: tuple[int, ...] = ()
    warmup_trials: int = 5
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        check_number("scheduler.median.warmup_trials", self.warmup_trials, integer=True, low=1)
        check_number("scheduler.median.warmup_steps", self.warmup_steps, integer=True, low=0)
        check_eval_steps(self.rungs, MAX_INT, "scheduler.median.rungs")  # against train_steps: `NasConfig`


class MedianStoppingScheduler(Scheduler):
    """Stops a trial whose best rung reward so far is below the completed trials' median at the same step.

    Args:
      rungs: the steps at which trials are judged (strictly increasing, >= 1).
      warmup_trials: completed trials needed before anything is stopped (>= 1).
      warmup_steps: no trial is stopped at a rung before this step.

    Example::

      s = MedianStoppingScheduler(rungs=(100,), warmup_trials=2)
      for t, (mid, final) in enumerate([(0.2, 0.3), (0.4, 0.5)]):
          s.on_report(t, 100, mid); s.on_complete(t, final_reward=final)
      s.on_report(2, 100, 0.25)   # Decision.STOP: 0.25 is below the median 0.3 of 0.2 and 0.4
    """

    def __init__(self, *, rungs: Sequence[int], warmup_trials: int = 5, warmup_steps: int = 0) -> None:
        rungs = tuple(rungs)
        if not rungs or any(not isinstance(r, int) or isinstance(r, bool) for r in rungs) or rungs[0] < 1 \
                or any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ValueError(f"MedianStoppingScheduler rungs: expected increasing integer steps >= 1, got "
                             f"{list(rungs)}")
        check_number("warmup_trials", warmup_trials, integer=True, low=1)
        check_number("warmup_steps", warmup_steps, integer=True, low=0)
        super().__init__(rungs=rungs)
        self.warmup_trials = warmup_trials
        self.warmup_steps = warmup_steps
        self._completed_at: dict[int, list[float]] = {r: [] for r in rungs}  # rung -> completed trials' rewards
        self._best: dict[int, float] = {}  # running trial id -> its best rung reward so far
        self._num_completed = 0

    @classmethod
    def from_config(cls, settings: MedianConfig, rungs: Sequence[int]) -> MedianStoppingScheduler:
        """From its settings section and the rungs the search resolved (`nas.config.schema.scheduler_rungs`)."""
        return cls(rungs=rungs, warmup_trials=settings.warmup_trials, warmup_steps=settings.warmup_steps)

    def _judge(self, trial_id: int, step: int, reward: float) -> bool:
        best = max(reward, self._best.get(trial_id, reward))
        self._best[trial_id] = best
        values = self._completed_at.get(step, [])
        if self._num_completed < self.warmup_trials or step < self.warmup_steps or not values:
            return True
        median = statistics.median(values)
        keep = best >= median
        logger.debug("[trial %d] step %d: best %.4f, median %.4f of %d completed: %s", trial_id, step, best, median,
                     len(values), "continue" if keep else "stop")
        return keep

    def describe(self, train_steps: int) -> str:
        return (f"scheduler median: at steps {', '.join(map(str, self.rungs))} of {train_steps}, a trial whose best "
                f"reward so far is below the median of the completed trials' there is pruned (after "
                f"{self.warmup_trials} completed trials"
                + (f" and from step {self.warmup_steps}" if self.warmup_steps else "") + ")")

    def cut(self, step: int) -> float | None:
        """The completed trials' median at `step` (a trial whose best so far is below it stops); None in the
        warm-up or before a completed trial has a reward there."""
        values = self._completed_at.get(step, [])
        if self._num_completed < self.warmup_trials or step < self.warmup_steps or not values:
            return None
        return statistics.median(values)

    def _observe(self, step: int, reward: float) -> None:
        pass  # only completed trials' rewards count, and those come with `_completed`

    def _completed(self, trial_id: int, curve: dict[int, float], final_reward: float) -> None:
        self._num_completed += 1
        for step, reward in curve.items():
            if step in self._completed_at:
                self._completed_at[step].append(reward)

    def on_complete(self, trial_id: int, *, final_reward: float | None,
                    curve: Mapping[int, float] | None = None) -> None:
        self._best.pop(trial_id, None)  # finished, whatever its end
        super().on_complete(trial_id, final_reward=final_reward, curve=curve)

    def rewards_at(self, step: int, reward: float) -> list[float]:
        return [*self._completed_at.get(step, []), reward]


__all__ = ["MedianConfig", "MedianStoppingScheduler"]

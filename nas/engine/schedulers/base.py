"""The scheduler interface: which running trials continue, decided from their intermediate rewards.

A `Scheduler` has the shape of Ray Tune's ``TrialScheduler`` (``on_trial_result`` answers CONTINUE or STOP) and
Optuna's pruners (``prune(study, trial)`` from the trial's intermediate values): the driver (`engine.driver`) tells it
every intermediate reward a running trial reports at one of its `rungs` (`on_report`, which answers), and every
trial that finished (`on_complete`), whether it watched the trial run or the trial comes from the store: a resumed
search's finished trials and the source of a cached one are told the same way, with their stored curves, so a
resume needs nothing else to judge as the uninterrupted search would have. A trial it stopped is stored as pruned
and fed `pruned_reward`. The driver evaluates AP at every rung (`nas.config.schema.trial_proxy`).

Adding a scheduler is one module (a `Scheduler` subclass and its settings dataclass) plus one registration in
`nas.engine.schedulers`. Schedulers are pure: no store, no runner.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)


class Decision(str, enum.Enum):
    """What a scheduler answers to a report."""

    CONTINUE = "continue"
    STOP = "stop"


class Scheduler(abc.ABC):
    """Decides per report whether a running trial continues.

    Args:
      rungs: the steps at which it judges (strictly increasing); the driver evaluates AP there.

    Subclasses implement `_judge` (a live report at a rung), `_observe` (a rung reward of a trial it did not watch)
    and `rewards_at` (the rewards a pruned trial's is ranked among); they may override `_completed` (a finished
    trial's whole curve). The base keeps the final rewards of completed trials and which trials it has been told
    of, so a trial (a cached trial's source, say) counts once.
    """

    def __init__(self, *, rungs: Sequence[int]) -> None:
        self.rungs = tuple(rungs)
        self._final_rewards: list[float] = []
        self._watched: dict[int, dict[int, float]] = {}  # trial id -> its rung rewards told by on_report
        self._known: set[int] = set()  # trial ids whose rung rewards it holds (watched, or told by on_complete)
        self._finished: set[int] = set()

    # ------------------------------------------------------------------------------------------- the driver's calls
    def on_report(self, trial_id: int, step: int, reward: float) -> Decision:
        """A running trial's intermediate reward at `step` (one of `rungs`): continue or stop it."""
        self._known.add(trial_id)
        self._watched.setdefault(trial_id, {})[step] = float(reward)
        return Decision.CONTINUE if self._judge(trial_id, step, float(reward)) else Decision.STOP

    def on_complete(self, trial_id: int, *, final_reward: float | None,
                    curve: Mapping[int, float] | None = None) -> None:
        """A finished trial: its final reward when it completed (None: pruned, failed or cached), and its rung
        rewards when the scheduler did not watch it run (a stored trial); a trial is counted once.

        Args:
          trial_id: the trial's database id.
          final_reward: the reward of a completed trial, else None.
          curve: step -> intermediate reward of a stored trial (steps that are not rungs are ignored); None for a
            trial whose reports it was told as they came.
        """
        if trial_id in self._finished:
            return
        self._finished.add(trial_id)
        if trial_id not in self._known and curve is not None:
            self._known.add(trial_id)
            for step, reward in sorted(curve.items()):
                if step in self.rungs:
                    self._observe(step, float(reward))
        seen = self._watched.pop(trial_id, None)
        if final_reward is not None:
            self._final_rewards.append(float(final_reward))
            self._completed(trial_id, dict(curve or seen or {}), float(final_reward))

    def told(self, trial_id: int) -> bool:
        """Whether it holds the trial already (watched it run, or was told of it finished)."""
        return trial_id in self._known or trial_id in self._finished

    def pruned_reward(self, step: int, reward: float) -> float:
        """The reward a trial it stopped at `step` with `reward` there is fed (`pruned_reward`)."""
        return pruned_reward(reward, self.rewards_at(step, reward), self._final_rewards)

    def describe(self, train_steps: int) -> str:
        """One line for a search's header: what it does to a trial ('' when it stops nothing)."""
        if not self.rungs:
            return ""
        steps = ", ".join(map(str, self.rungs))
        return f"scheduler {type(self).__name__}: judges trials at steps {steps} of {train_steps}"

    def cut(self, step: int) -> float | None:
        """The reward a trial must reach at rung `step` to continue, as the rung stands now (None: it stops
        nothing there yet). For messages and reports; the decisions are `on_report`'s."""
        del step
        return None

    @property
    def final_rewards(self) -> list[float]:
        """The final rewards of the completed trials it was told of (a copy)."""
        return list(self._final_rewards)

    # ------------------------------------------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def _judge(self, trial_id: int, step: int, reward: float) -> bool:
        """A live report at a rung: True to continue."""

    @abc.abstractmethod
    def _observe(self, step: int, reward: float) -> None:
        """A rung reward of a stored trial (no decision)."""

    @abc.abstractmethod
    def rewards_at(self, step: int, reward: float) -> list[float]:
        """The rewards a pruned trial's `reward` at `step` is ranked among (itself included)."""

    def _completed(self, trial_id: int, curve: dict[int, float], final_reward: float) -> None:
        """A completed trial's rung rewards and final reward (after `_observe` for a stored one)."""


class NoScheduler(Scheduler):
    """``none``: every trial trains to the end."""

    def __init__(self) -> None:
        super().__init__(rungs=())

    def _judge(self, trial_id: int, step: int, reward: float) -> bool:
        return True

    def _observe(self, step: int, reward: float) -> None:
        pass

    def rewards_at(self, step: int, reward: float) -> list[float]:
        return [reward]


def rank_quantile(values: Sequence[float], value: float) -> float:
    """Where `value` ranks among `values` (which include it), as a quantile in [0, 1].

    The mid-rank of its ties among the others: (below + ties / 2) / (n - 1) with n = len(values); 0.5 when it is
    alone (no ranking to speak of).
    """
    others = list(values)
    try:
        others.remove(value)
    except ValueError:
        pass
    if not others:
        return 0.5
    below = sum(v < value for v in others)
    ties = sum(v == value for v in others)
    return (below + ties / 2) / len(others)


def quantile(values: Sequence[float], q: float) -> float:
    """The `q`-quantile of `values` (linear interpolation between order statistics, numpy's default)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("quantile of no values")
    pos = min(max(q, 0.0), 1.0) * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def pruned_reward(rung_reward: float, rung_rewards: Sequence[float], final_rewards: Sequence[float]) -> float:
    """The reward a controller is fed for a trial pruned at a rung: its rung reward mapped by rank onto the final
    rewards.

    A pruned trial's rung reward (an AP after a fraction of the steps) is on another scale than a completed trial's
    final reward, so feeding it as is would tell the controller that every pruned architecture is much worse than it
    is. Instead its rank quantile among the rewards at its rung (`rank_quantile`, itself included) is mapped to the
    same quantile of the final rewards of the search's completed trials (`quantile`): a trial at the median of its
    rung gets the median final reward. Since only trials in the lower part of a rung are pruned, their rewards fall
    in the lower part of the final distribution. Before any trial has completed there is no final distribution, and
    the rung reward itself is fed.

    Args:
      rung_reward: the pruned trial's intermediate reward at its rung.
      rung_rewards: the rewards recorded at that rung so far (including `rung_reward`).
      final_rewards: the final rewards of the search's completed trials so far.

    Returns:
      The reward to feed (and to store with the trial: a resume feeds the stored value, since the inputs of this
      rule depend on arrival order).
    """
    if not final_rewards:
        return float(rung_reward)
    return float(quantile(final_rewards, rank_quantile(rung_rewards, rung_reward)))


__all__ = ["Decision", "NoScheduler", "Scheduler", "pruned_reward", "quantile", "rank_quantile"]

"""Asynchronous successive halving (ASHA; Li et al., "A System for Massively Parallel Hyperparameter Tuning",
2020) on proxy steps.

ASHA keeps one table of rewards per rung; a trial continues when its reward is in the top ``1/eta`` of the rewards
recorded at that rung so far, itself included, and always while the rung has fewer than ``min_results`` of them.
Decisions are asynchronous: each trial is judged against what has arrived before it, never held back to wait for
others, so with several workers the outcome depends on arrival order (which is why the reward a pruned trial was
fed is stored). A resumed search's tables are filled from the stored curves of its finished trials
(`Scheduler.on_complete`), so it judges against what it had seen.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterable, Sequence

from proxy_task.config import MAX_INT, check_eval_steps, check_number
from nas.engine.schedulers.base import Scheduler

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AshaConfig:
    """Settings of `AshaScheduler` (``scheduler.asha.<field>``).

    Attributes:
      rungs: the proxy steps at which a running trial is judged by its intermediate reward (increasing, each
        before ``proxy.train_steps``); empty: the proxy's ``eval_at_steps``. They imply intermediate evaluations
        at those steps (merged into ``proxy.eval_at_steps`` for the trials, which leaves the result fingerprint as
        it is: intermediate evaluations do not change a trial's final score).
      eta: the reduction factor (>= 2): a trial continues past a rung when its reward is in the top 1/eta of the
        rewards recorded there so far by the search's trials.
      min_results: nothing is stopped at a rung before it holds this many rewards (None: eta).
    """

    rungs: tuple[int, ...] = ()
    eta: int = 3
    min_results: int | None = None

    def __post_init__(self) -> None:
        check_number("scheduler.asha.eta", self.eta, integer=True, low=2, note="(1 would stop nothing)")
        check_number("scheduler.asha.min_results", self.min_results, integer=True, low=1, optional=True,
                     note="(null: eta)")
        check_eval_steps(self.rungs, MAX_INT, "scheduler.asha.rungs")  # against train_steps: `NasConfig`


class AshaScheduler(Scheduler):
    """Asynchronous successive halving over rungs in proxy steps.

    Args:
      rungs: the steps at which a trial is judged (strictly increasing, >= 1).
      eta: the reduction factor (>= 2): about 1 in `eta` trials continues past each rung.
      min_results: nothing is stopped at a rung before it holds this many rewards (>= 1).

    Example::

      s = AshaScheduler(rungs=(100, 200), eta=3, min_results=3)
      [s.on_result(t, 100, r) for t, r in enumerate([0.3, 0.2, 0.1, 0.4, 0.25])]
      # [True, True, True, True, False]: the first three fill the rung; 0.4 is the best of 4; 0.25 is 3rd of 5
    """

    def __init__(self, *, rungs: Sequence[int], eta: int, min_results: int) -> None:
        rungs = tuple(rungs)
        if not rungs or any(not isinstance(r, int) or isinstance(r, bool) for r in rungs):
            raise ValueError(f"AshaScheduler rungs: expected integer steps, got {list(rungs)}")
        if any(b <= a for a, b in zip(rungs, rungs[1:])) or rungs[0] < 1:
            raise ValueError(f"AshaScheduler rungs: expected increasing steps >= 1, got {list(rungs)}")
        if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
            raise ValueError(f"AshaScheduler eta: expected an integer >= 2, got {eta!r}")
        if isinstance(min_results, bool) or not isinstance(min_results, int) or min_results < 1:
            raise ValueError(f"AshaScheduler min_results: expected an integer >= 1, got {min_results!r}")
        super().__init__(rungs=rungs)
        self.eta = eta
        self.min_results = min_results
        self._tables: dict[int, list[float]] = {r: [] for r in rungs}  # rung -> its rewards, sorted ascending
        self._judged: dict[int, set[int]] = {r: set() for r in rungs}  # rung -> trial ids judged there

    def record(self, rung: int, reward: float) -> None:
        """Adds a reward to a rung's table without a decision (a stored trial's curve, on start or resume)."""
        bisect.insort(self._table(rung), float(reward))

    def seed(self, curves: Iterable[dict[int, float]]) -> None:
        """Records each curve's rewards at the rungs (curve: step -> intermediate reward; other steps are ignored)."""
        for curve in curves:
            for step, reward in curve.items():
                if step in self._tables:
                    self.record(step, reward)

    def on_result(self, trial_id: int, rung: int, reward: float) -> bool:
        """A running trial's intermediate reward at `rung`: True to continue, False to stop it.

        The trial continues when the rung held fewer than `min_results` rewards before its own; else its reward
        joins the rung's table and it continues when fewer than ``max(1, n // eta)`` of the n rewards there now are
        better than its own. A second report of the same trial at the same rung (a runner retrying it) is not
        recorded again.

        Raises:
          ValueError: `rung` is not one of the rungs.
        """
        table = self._table(rung)
        if trial_id not in self._judged[rung]:
            self._judged[rung].add(trial_id)
            if len(table) < self.min_results:  # too few results before this one to judge it by
                bisect.insort(table, float(reward))
                return True
            bisect.insort(table, float(reward))
        elif len(table) <= self.min_results:
            return True
        n = len(table)
        better = n - bisect.bisect_right(table, float(reward))
        keep = better < max(1, n // self.eta)
        logger.debug("[trial %d] rung %d: reward %.4f, %d of %d better: %s", trial_id, rung, reward, better, n,
                     "continue" if keep else "stop")
        return keep

    def describe(self, train_steps: int) -> str:
        return (f"scheduler asha: rungs at steps {', '.join(map(str, self.rungs))} of {train_steps}, eta {self.eta}: "
                f"a trial below the top 1/{self.eta} at a rung is pruned")

    def cut(self, step: int) -> float | None:
        """The k-th best reward at the rung (k = max(1, n // eta) of its n): a trial with less than it stops; None
        while the rung holds fewer than `min_results`."""
        table = self._table(step)
        if len(table) < self.min_results:
            return None
        return table[len(table) - max(1, len(table) // self.eta)]

    def rewards(self, rung: int) -> list[float]:
        """The rewards recorded at `rung`, ascending (a copy)."""
        return list(self._table(rung))

    def _table(self, rung: int) -> list[float]:
        table = self._tables.get(rung)
        if table is None:
            raise ValueError(f"AshaScheduler: step {rung} is not a rung; expected one of {list(self.rungs)}")
        return table

    # ------------------------------------------------------------------------------------------- Scheduler
    @classmethod
    def from_config(cls, settings: AshaConfig, rungs: Sequence[int]) -> AshaScheduler:
        """From its settings section and the rungs the search resolved (`nas.config.schema.scheduler_rungs`)."""
        return cls(rungs=rungs, eta=settings.eta,
                   min_results=settings.min_results if settings.min_results is not None else settings.eta)

    def _judge(self, trial_id: int, step: int, reward: float) -> bool:
        return self.on_result(trial_id, step, reward)

    def _observe(self, step: int, reward: float) -> None:
        self.record(step, reward)

    def rewards_at(self, step: int, reward: float) -> list[float]:
        return self.rewards(step)


__all__ = ["AshaConfig", "AshaScheduler"]

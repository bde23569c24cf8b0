"""Trial schedulers: asynchronous successive halving (ASHA) on proxy steps, and the reward of a pruned trial.

A scheduler answers per report (STYLE.md 8.13, Ray Tune's ``AsyncHyperBandScheduler.on_trial_result``): when a
running trial reports its intermediate reward at a rung (a step of ``scheduler.asha.rungs``), `AshaScheduler` says
whether it continues. ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020) keeps one
table of rewards per rung; a trial continues when its reward is in the top ``1/eta`` of the rewards recorded at that
rung so far, itself included, and always while the rung has fewer than ``min_results`` of them. Decisions are
asynchronous: each trial is judged against what has arrived before it, never held back to wait for others, so with
several workers the outcome depends on arrival order (which is why the reward a pruned trial was fed is stored).

The tables are in memory; the driver seeds them from the stored curves of the search's finished trials on start and
on resume (`AshaScheduler.record`), so a resumed search judges against what it had seen.

`pruned_reward` is the rule for what the controller is fed for a pruned trial. This module is pure (no store, no
runner): the driver (`nas.loop.SearchDriver`) wires it.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)


class AshaScheduler:
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
        self.rungs = rungs
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

    def rewards(self, rung: int) -> list[float]:
        """The rewards recorded at `rung`, ascending (a copy)."""
        return list(self._table(rung))

    def _table(self, rung: int) -> list[float]:
        table = self._tables.get(rung)
        if table is None:
            raise ValueError(f"AshaScheduler: step {rung} is not a rung; expected one of {list(self.rungs)}")
        return table


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


__all__ = ["AshaScheduler", "pruned_reward", "quantile", "rank_quantile"]

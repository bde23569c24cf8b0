"""Shared fixtures: a toy search space with a known optimum, and a driver loop for controllers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from controller import Controller


class ToySpace:
    """Just what a controller needs of a space: ``num_choices`` (and ``choice_mask``)."""

    def __init__(self, num_choices: Sequence[int]) -> None:
        self._num_choices = tuple(num_choices)

    @property
    def num_choices(self) -> tuple[int, ...]:
        return self._num_choices

    @property
    def max_choices(self) -> int:
        return max(self._num_choices)

    def choice_mask(self) -> np.ndarray:
        n = np.asarray(self._num_choices)
        return np.arange(self.max_choices)[None, :] < n[:, None]


def target_reward(target: Sequence[int]) -> Callable[[Sequence[int]], float]:
    """A reward with a known optimum (1.0, exactly at `target`) and interactions between neighbouring decisions.

    Half of it counts the decisions equal to the target's, half the neighbouring pairs that are both equal: a pair
    term is worth nothing unless both of its decisions are right.
    """
    t = np.asarray(target)

    def reward(decisions: Sequence[int]) -> float:
        hit = np.asarray(decisions) == t
        return 0.5 * hit.mean() + 0.5 * (hit[1:] & hit[:-1]).mean()

    return reward


def drive(
    ctrl: Controller, reward: Callable[[Sequence[int]], float], budget: int, batch: int = 1
) -> list[tuple[tuple[int, ...], float]]:
    """Proposes `batch` at a time and feeds every reward back, until `budget` proposals; returns (decisions, reward)."""
    out = []
    while ctrl.num_proposed < budget:
        for p in ctrl.propose(min(batch, budget - ctrl.num_proposed)):
            r = reward(p.decisions)
            ctrl.feedback(p.trial_id, r)
            out.append((p.decisions, r))
    return out

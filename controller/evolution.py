"""Regularized (aging) evolution (Real et al. 2019), asynchronous, numpy only."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from controller.base import Controller, Decisions
from controller.config import EvolutionConfig

logger = logging.getLogger(__name__)


class EvolutionController(Controller):
    """Regularized evolution: tournament selection, one-decision mutation, aging (see `EvolutionConfig`).

    Asynchronous: proposals may be outstanding while others return. A trial joins the population when its reward
    arrives, so "age" is the order of arrival; the first ``population_size`` proposals are random, and a later
    proposal is random too while no reward has arrived yet (everything still running, or every trial failed and
    was skipped).

    Every proposal draws the same block of ``num_decisions + tournament_size + 2`` uniforms (the random sequence,
    the tournament, the mutated decision and its new value) and uses the part it needs, so replays are exact.

    Args:
      space: the search space (only ``num_choices`` is used).
      seed: seed of the random generator (None: fresh entropy).
      config: an `EvolutionConfig` (None: defaults).
    """

    name = "evolution"
    config_cls = EvolutionConfig

    def _setup(self) -> None:
        self._nc = np.asarray(self.num_choices)
        self._proposed = 0
        # (trial_id, decisions, reward), oldest first.
        self._population: list[tuple[int, Decisions, float]] = []
        self._mutable = np.flatnonzero(self._nc > 1)

    def _propose(self, n: int) -> list[tuple[Decisions, dict[str, Any]]]:
        cfg = self.config
        t = len(self.num_choices)
        s = cfg.tournament_size
        out = []
        for u in self._uniforms(n, t + s + 2):
            if self._proposed < cfg.population_size or not self._population or not len(self._mutable):
                picks = np.minimum(np.floor(u[:t] * self._nc).astype(np.int64), self._nc - 1)
                out.append((tuple(int(x) for x in picks), {"origin": "random"}))
            else:
                parent = self._tournament(u[t : t + s])
                step = int(self._mutable[min(int(u[t + s] * len(self._mutable)), len(self._mutable) - 1)])
                old = parent[1][step]
                new = min(int(u[t + s + 1] * (self._nc[step] - 1)), self._nc[step] - 2)
                new += new >= old  # a different value, uniform among the others
                child = list(parent[1])
                child[step] = int(new)
                out.append(
                    (tuple(child), {"origin": "mutation", "parent_trial_id": parent[0], "mutated_decision": step})
                )
            self._proposed += 1
        return out

    def _tournament(self, u: np.ndarray) -> tuple[int, Decisions, float]:
        """The best of up to `tournament_size` members sampled without replacement (partial Fisher-Yates)."""
        idx = list(range(len(self._population)))
        k = min(len(u), len(idx))
        for j in range(k):
            r = j + min(int(u[j] * (len(idx) - j)), len(idx) - j - 1)
            idx[j], idx[r] = idx[r], idx[j]
        best = idx[0]
        for i in idx[1:k]:  # ties go to the member sampled first
            if self._population[i][2] > self._population[best][2]:
                best = i
        return self._population[best]

    def _replay(self, decisions: Decisions) -> None:
        self._uniforms(1, len(self.num_choices) + self.config.tournament_size + 2)
        self._proposed += 1

    def _feedback(self, trial_id: int, decisions: Decisions, reward: float) -> None:
        self._population.append((trial_id, decisions, reward))
        if len(self._population) > self.config.population_size:
            self._population.pop(0)  # aging: the oldest leaves, however good

    def _state_dict(self) -> dict[str, Any]:
        return {
            "proposed": self._proposed,
            "population": [[tid, list(d), r] for tid, d, r in self._population],
        }

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            proposed = int(state["proposed"])
            population = [
                (int(tid), self._check_decisions(d, "population"), float(r)) for tid, d, r in state["population"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"EvolutionController state: expected 'proposed' and 'population', got a malformed state ({e})"
            ) from None
        self._proposed = proposed
        self._population = population

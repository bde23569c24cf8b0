"""Random search: every decision uniform and independent (the baseline a reviewer asks for first)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from controller.base import Controller, Decisions
from controller.config import RandomConfig

logger = logging.getLogger(__name__)


class RandomController(Controller):
    """Uniformly random decision sequences; feedback teaches it nothing.

    Each proposal draws one uniform per decision (``floor(u * num_choices)``), so replays are exact.

    Args:
      space: the search space (only ``num_choices`` is used).
      seed: seed of the random generator (None: fresh entropy).
      config: a `RandomConfig` (None: defaults).
    """

    name = "random"
    config_cls = RandomConfig

    def _setup(self) -> None:
        self._nc = np.asarray(self.num_choices)

    def _propose(self, n: int) -> list[tuple[Decisions, dict[str, Any]]]:
        u = self._uniforms(n, len(self.num_choices))
        picks = np.minimum(np.floor(u * self._nc).astype(np.int64), self._nc - 1)
        return [(tuple(int(x) for x in row), {}) for row in picks]

    def _replay(self, decisions: Decisions) -> None:
        self._uniforms(1, len(self.num_choices))

    def _feedback(self, trial_id: int, decisions: Decisions, reward: float) -> None:
        pass

    def _state_dict(self) -> dict[str, Any]:
        return {}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

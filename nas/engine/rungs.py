"""What a search tells its scheduler, in rewards: a running trial's AP at a rung, and the stored curves of the
trials it finished before (a resume's) or reuses (a cached trial's source).

The scheduler (`nas.engine.schedulers`) judges rewards, not APs: an AP at a rung is turned into the reward the
search's reward function gives at that step (with the architecture's FLOPs for 'ap-flops'). Everything it is told
comes from what the store holds, so a resumed search's scheduler is told the same curves again and decides as
before, without state of its own in the database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from nas.engine.reward import compute_reward
from proxy_task.result import ProxyResult
from results_db.status import TrialStatus
from search_space import ArchSpec


class RungFeed:
    """Feeds a search's scheduler from its reports and its store.

    Args:
      scheduler: the search's `Scheduler`.
      search: the search's `SearchConfig` (its reward function).
      store: the search's store (stored trials, reports and architectures' FLOPs).
      detector_cost: ``arch -> cost`` with ``.flops``: an architecture's FLOPs as a trial of this proxy stores them
        (for an 'ap-flops' reward of an architecture the store holds no FLOPs of).
    """

    def __init__(self, scheduler: Any, search: Any, store: Any, detector_cost: Any) -> None:
        self.scheduler = scheduler
        self.search = search
        self.store = store
        self._detector_cost = detector_cost
        self._arch_flops: dict[str, float | None] = {}  # key -> FLOPs, for an intermediate 'ap-flops' reward

    @property
    def active(self) -> bool:
        """Whether the scheduler judges anything (``none`` has no rungs)."""
        return bool(self.scheduler.rungs)

    def judge(self, trial_id: int, step: int, metrics: Mapping[str, Any], key: str,
              arch: ArchSpec | None) -> float | None:
        """The reward at rung `step` of a running trial when the scheduler says to stop it there, else None."""
        if step not in self.scheduler.rungs:
            return None
        ap = metrics.get("ap")
        if not isinstance(ap, (int, float)) or not math.isfinite(ap):
            return None
        reward = self.rung_reward(float(ap), key, arch)
        if reward is None:
            return None
        from nas.engine.schedulers import Decision

        return reward if self.scheduler.on_report(trial_id, step, reward) == Decision.STOP else None

    def rung_reward(self, ap: float, key: str, arch: ArchSpec | None) -> float | None:
        """The reward an intermediate AP stands for (the search's reward function at that step)."""
        flops = None
        if self.search.reward != "ap":
            if key not in self._arch_flops:
                stored = self.store.get_arch(key).flops
                if stored is None and arch is not None:
                    stored = self._detector_cost(arch).flops
                self._arch_flops[key] = stored
            flops = self._arch_flops[key]
        return compute_reward(ProxyResult(metrics={"ap": ap}, wall_s=0.0, flops=flops), self.search)

    def finished(self, trial_id: int, final_reward: float | None) -> None:
        """A trial of this run ended (`final_reward` None unless it completed)."""
        self.scheduler.on_complete(trial_id, final_reward=final_reward)

    def source(self, trial_id: int | None) -> None:
        """A cached trial's source, with its stored curve (the scheduler counts a trial once)."""
        if not self.active or trial_id is None or self.scheduler.told(trial_id):
            return
        source = self.store.get_trial(trial_id)
        self._stored_trial(source, self.store.reports([trial_id])[trial_id])

    def stored(self, done: Iterable[Any]) -> None:
        """A resumed search's finished trials, as the scheduler was told of them while they ran."""
        if not self.active:
            return
        done = list(done)
        own = [t for t in done if t.status in (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED)]
        curves = self.store.reports([t.id for t in own]) if own else {}
        for t in own:
            self._stored_trial(t, curves.get(t.id, []))
        for t in done:
            if t.status == TrialStatus.CACHED:
                self.source(t.cached_from)

    def _stored_trial(self, t: Any, reports: Any) -> None:
        completed = t.status == TrialStatus.COMPLETED and t.reward is not None
        self.scheduler.on_complete(t.id, final_reward=t.reward if completed else None,
                                   curve=self._stored_curve(t.arch_key, reports))

    def _stored_curve(self, key: str, reports: Any) -> dict[int, float]:
        curve = {}
        for r in reports:
            ap = r.metrics.get("ap")
            if r.step in self.scheduler.rungs and ap is not None:
                reward = self.rung_reward(float(ap), key, None)
                if reward is not None:
                    curve[r.step] = reward
        return curve


__all__ = ["RungFeed"]

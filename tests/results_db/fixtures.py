"""A small results database with two searches, shared by the results_db and CLI tests."""

from __future__ import annotations

import numpy as np

from results_db import NewTrial, ResultStore
from search_space import SPINENET_49, SearchSpace

# The result fingerprint of 'ppo-1' and its trials; 'random-1' has none (a search from before schema 0002).
FINGERPRINT = "fp-ppo"


def make_db(url: str, *, n: int = 24, seed: int = 0) -> dict:
    """Writes searches 'ppo-1' (n trials: completed, one failed, one cached, one still running) and 'random-1'.

    'ppo-1' and its trials have the fingerprint `FINGERPRINT`, 'random-1' and its one trial none.

    Returns:
      Facts the tests check against: keys by reward, the best key, trial ids.
    """
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(seed)
    store = ResultStore(url)
    store.create_search("ppo-1", config="controller: ppo\nseed: 0\n", seed=0, controller="ppo", family="spinenet49",
                        fingerprint=FINGERPRINT)
    store.create_search("random-1", config={"controller": "random"}, seed=1, controller="random", family="spinenet49")
    facts: dict = {"rewards": {}, "ids": []}
    decisions = [space.random(rng) for _ in range(n)]
    archs = [space.decode(d) for d in decisions]
    keys = store.register_archs(archs, family="spinenet49")
    ids = store.add_trials("ppo-1", [NewTrial(k, d) for k, d in zip(keys, decisions)], status="queued",
                           fingerprint=FINGERPRINT)
    for i, (tid, key) in enumerate(zip(ids, keys)):
        if i == n - 1:
            store.start_trial(tid, host="node-2")  # still running when the "driver" stops
            continue
        store.start_trial(tid, host=f"node-{i % 2}")
        if i == 3:
            store.finish_trial(tid, status="failed", error="OOM when allocating tensor\ntraceback...", wall_s=12.0)
            continue
        reward = round(0.1 + 0.01 * i, 4)
        store.finish_trial(
            tid, status="completed", reward=reward, metrics={"ap": reward, "ap50": reward * 1.5}, wall_s=600.0 + i,
            flops=int(1e9 * (1 + i % 5)), params=int(3e6 + i),
        )
        facts["rewards"][key] = max(reward, facts["rewards"].get(key, 0.0))
    # A proposal of an arch that already has a result: stored as cached, reusing it.
    known = store.find_result(keys[5], fingerprint=FINGERPRINT)
    [cached] = store.add_trials("ppo-1", [NewTrial(keys[5], decisions[5])], status="running", fingerprint=FINGERPRINT)
    store.finish_trial(cached, status="cached", reward=known.reward, metrics=known.metrics, cached_from=known.trial_id)
    key49 = store.register_arch(SPINENET_49, family="spinenet49", flops=int(2.5e9), params=int(4e6))
    [t49] = store.add_trials("random-1", [(key49, (0, 1, 2))], status="running", host="node-9")
    store.finish_trial(t49, status="completed", reward=0.9, metrics={"ap": 0.9}, wall_s=1234.5)
    store.save_checkpoint("ppo-1", 1, {"version": 1, "step": 1, "weights": [0.5, -0.25]})
    store.set_search_status("random-1", "completed")
    store.close()
    facts.update(ids=ids, keys=keys, cached_id=cached, key49=key49, best_key=key49, n=n)
    return facts

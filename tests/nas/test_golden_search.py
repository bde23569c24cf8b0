"""A surrogate search with a fixed seed stores the same trials as the recorded one (`fixtures/golden_search.json`):
keys, statuses, rewards (the fed reward of a pruned trial) and rungs, with and without ASHA, on the local runner
and on Ray. What the driver and its scheduler decide must not change by a refactoring; a change that means to
change it records the fixture again (`python -m tests.nas.test_golden_search`) and says why."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.nas.helpers import cfg_of, run_search

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "golden_search.json")

# name -> the search's settings (one worker: with more, ASHA's decisions depend on the order results arrive in).
CASES = {
    "plain": dict(controller="evolution", trials=24, workers=1, seed=5, noise=0.01),
    "asha": dict(controller="evolution", trials=24, workers=1, seed=5, noise=0.01,
                 asha={"rungs": (50, 100), "eta": 3}),
    "asha-ppo": dict(controller="ppo", trials=20, workers=1, seed=9, noise=0.01, asha={"rungs": (100,), "eta": 2}),
}


def _trials(tmp_path, case: str, runner: str = "local", in_process: bool = True) -> list[list]:
    cfg = cfg_of(runner=runner, in_process=in_process, **CASES[case])
    store, _, _ = run_search(tmp_path / f"{case}-{runner}", cfg)
    rows = [[t.index, t.arch_key, t.status, None if t.reward is None else round(t.reward, 12),
             (t.metrics or {}).get("rung")] for t in sorted(store.trials("s"), key=lambda t: t.index)]
    store.close()
    return rows


def _golden() -> dict:
    with open(FIXTURE) as fh:
        return json.load(fh)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain", "asha"])
def test_a_fixed_seed_search_stores_the_recorded_trials(tmp_path, case):
    assert _trials(tmp_path, case) == _golden()[case]


@pytest.mark.tf
@pytest.mark.slow
def test_a_fixed_seed_ppo_search_with_asha_stores_the_recorded_trials(tmp_path):
    assert _trials(tmp_path, "asha-ppo") == _golden()["asha-ppo"]


@pytest.mark.slow
def test_an_asha_search_in_child_processes_stores_the_recorded_trials(tmp_path):
    """A trial in a process of its own waits at a rung for the driver's answer, so it stops there as an in-process
    trial does, however fast it trains."""
    assert _trials(tmp_path, "asha", in_process=False) == _golden()["asha"]


@pytest.mark.ray
@pytest.mark.slow
def test_the_same_searches_on_ray_store_the_recorded_trials(tmp_path):
    """With and without ASHA: on Ray too a trial waits at a rung for the driver's answer."""
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        assert _trials(tmp_path, "plain", runner="ray") == _golden()["plain"]
        assert _trials(tmp_path, "asha", runner="ray") == _golden()["asha"]
    finally:
        ray.shutdown()


if __name__ == "__main__":  # records the fixture from this tree's code
    import pathlib
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with tempfile.TemporaryDirectory() as d:
        golden = {case: _trials(pathlib.Path(d), case) for case in CASES}
    with open(FIXTURE, "w") as fh:
        json.dump(golden, fh, indent=1)
        fh.write("\n")
    print({case: len(rows) for case, rows in golden.items()})

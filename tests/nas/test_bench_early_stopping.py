"""scripts/bench/early_stopping.py replays recorded curves through the real search driver on a simulated clock: the
scheduler's decisions, the trial-seconds and the clock are what the curves and the cost model give."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from search_space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_early_stopping",
                                                  ROOT / "scripts" / "bench" / "early_stopping.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


COST = dict(setup_s=20.0, eval_s=5.0, step_s=0.25, ref_flops=1e8)
# Final APs 0.1 .. 0.6; the AP at step 100 ranks them otherwise (0.6's arch is slow early: 2nd worst at 100).
APS_100 = [0.05, 0.04, 0.01, 0.03, 0.02, 0.015]
FINAL = [0.3, 0.2, 0.6, 0.1, 0.4, 0.5]


def _pool(bench):
    space = SearchSpace("spinenet49")
    import numpy as np

    rng = np.random.default_rng(0)
    pool, keys = [], set()
    while len(pool) < len(FINAL):
        arch = space.decode([int(rng.integers(n)) for n in space.num_choices])
        if arch.key in keys:
            continue
        keys.add(arch.key)
        i = len(pool)
        pool.append({"arch": arch, "key": arch.key, "source": f"test:{i}", "flops": 100_000_000,
                     "ap": {100: APS_100[i], 200: APS_100[i] * 2, 400: FINAL[i] / 2, 800: FINAL[i]}})
    return pool


def test_full_training_costs_every_trial_its_setup_steps_and_one_evaluation(bench):
    pool, cost = _pool(bench), bench.TrialCost(**COST)
    r = bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=1, asha=None)
    full = 20 + 800 * 0.25 + 5
    assert r["pruned"] == 0 and r["found_best"] and r["best_found_ap"] == 0.6
    assert r["trial_s_total"] == pytest.approx(6 * full) and r["clock_s_total"] == pytest.approx(6 * full)
    assert r["trial_s_to_best"] == pytest.approx(3 * full)  # the best is the third proposed
    # On 3 workers the first three run side by side: the same trial-seconds, a third of the clock.
    r3 = bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=3, asha=None)
    assert r3["trial_s_total"] == pytest.approx(6 * full) and r3["clock_s_total"] == pytest.approx(2 * full)
    assert r3["clock_s_to_best"] == pytest.approx(full) and r3["trial_s_to_best"] == pytest.approx(3 * full)


def test_asha_stops_trials_at_their_rung_by_the_recorded_curve(bench):
    pool, cost = _pool(bench), bench.TrialCost(**COST)
    r = bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=1, asha={"rungs": (100,), "eta": 3})
    # min_results = eta = 3: the first three continue; each later one has more than n // 3 better at step 100
    # (0.03: 2 of 4, 0.02: 3 of 5, 0.015: 4 of 6), so all three are stopped there.
    assert r["pruned"] == 3 and r["found_best"]  # the slow starter was proposed third: kept by min_results
    full = 20 + 800 * 0.25 + 2 * 5  # its rung's evaluation and the last
    pruned = 20 + 100 * 0.25 + 5  # no last evaluation
    assert r["trial_s_total"] == pytest.approx(3 * full + 3 * pruned)
    # Proposed last, the slow starter is pruned at step 100: ASHA loses the pool's best.
    late = bench.replay_one(pool, [0, 1, 3, 4, 5, 2], cost, workers=1, asha={"rungs": (100,), "eta": 3})
    assert not late["found_best"] and late["best_status"] == "pruned" and late["best_rung"] == 100
    assert math.isinf(late["trial_s_to_best"]) and late["best_found_ap"] == 0.3


def test_a_budget_of_trial_seconds_stops_the_search_as_ctrl_c_does(bench):
    pool, cost = _pool(bench), bench.TrialCost(**COST)
    cfg = bench.search_config(["search.trials=6", "search.workers=1", "controller.type=random"])
    full = 20 + 800 * 0.25 + 5
    outcome, runner, trials = bench.run_search(cfg, bench.pool_source(pool), cost, budget_s=2.5 * full,
                                               pool=[r["arch"] for r in pool], order=range(6))
    assert outcome.interrupted and len(trials) == 3 and runner.spent() == pytest.approx(3 * full)


def test_demo_summary_counts_what_finished_within_the_minutes(bench, tmp_path):
    """The real demo search's summary: completed and pruned trials that finished in the window count; one after it
    and one still running do not, a failed one apart; the best AP is a completed trial's."""
    import datetime

    import numpy as np

    from results_db import NewTrial, ResultStore

    space = SearchSpace("spinenet49")
    db = tmp_path / "d.db"
    t0 = datetime.datetime(2026, 12, 3, 7, 0, 0)
    with ResultStore(str(db)) as s:
        s.create_search("d", config={}, seed=0, controller="ppo", family="spinenet49")
        decisions = [space.random(np.random.default_rng(i)) for i in range(6)]
        keys = s.register_archs([space.decode(d) for d in decisions], family="spinenet49")
        ids = s.add_trials("d", [NewTrial(k, d) for k, d in zip(keys, decisions)])
        # (status, AP, minutes after the first start it finished): a failed trial in the window is counted apart,
        # one that completed after the window not at all; the sixth is still running.
        plan = [("completed", 0.30, 4.0), ("pruned", 0.05, 6.0), ("completed", 0.45, 10.0), ("failed", None, 12.0),
                ("completed", 0.60, 31.0)]
        s.start_trial(ids[5], started_at=t0 + datetime.timedelta(minutes=20))
        for tid, (status, ap, minutes) in zip(ids, plan):
            s.start_trial(tid, started_at=t0)
            metrics = {"ap": ap, "steps": 400.0 if status == "pruned" else 800.0} if ap is not None else None
            s.finish_trial(tid, status=status, reward=ap, metrics=metrics, wall_s=60.0,
                           error="boom" if status == "failed" else None,
                           finished_at=t0 + datetime.timedelta(minutes=minutes))
    doc = bench.summarize_demo(db, "d", 30.0)
    assert (doc["archs_evaluated"], doc["completed"], doc["pruned"], doc["failed"]) == (3, 2, 1, 1)
    assert doc["best_ap"] == pytest.approx(0.45) and doc["best_key"] == keys[2]
    assert doc["trial_s"] == pytest.approx(180.0)
    assert [t["finished_min"] for t in doc["trials"]] == [4.0, 6.0, 10.0]

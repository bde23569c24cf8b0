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


def _pool(bench, steps=(100, 200, 400, 800)):
    """Six architectures with the APs above at `steps`: APS_100 at the first, half the final AP at the one before the
    last, twice APS_100 at any between."""
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
        ap = {s: APS_100[i] * 2 for s in steps[1:-2]}
        ap.update({steps[0]: APS_100[i], steps[-2]: FINAL[i] / 2, steps[-1]: FINAL[i]})
        pool.append({"arch": arch, "key": arch.key, "source": f"test:{i}", "flops": 100_000_000, "ap": ap})
    return bench.Pool(tuple(steps), pool)


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


def test_the_oracle_judges_every_rung_on_the_final_ap(bench):
    pool, cost = _pool(bench), bench.TrialCost(**COST)
    # The order that loses the slow starter above keeps it when the rung sees final APs (nothing is stopped: each
    # later one is the best so far); best first, the three worst are stopped (3, 4 and 5 better than each).
    late = bench.replay_one(pool, [0, 1, 3, 4, 5, 2], cost, workers=1, asha={"rungs": (100,), "eta": 3},
                            oracle=True)
    assert late["found_best"] and late["best_found_ap"] == 0.6 and late["pruned"] == 0
    early = bench.replay_one(pool, [2, 4, 5, 0, 1, 3], cost, workers=1, asha={"rungs": (100,), "eta": 3},
                             oracle=True)
    assert early["found_best"] and early["pruned"] == 3
    # Full training is the same with or without the oracle: no rung, and the last step's AP is the curve's.
    plain = bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=1, asha=None)
    assert bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=1, asha=None, oracle=True) == plain
    assert bench.pool_source(pool, oracle=True)(pool.archs[2]["arch"], 0, 0).aps == {100: 0.6, 200: 0.6, 400: 0.6,
                                                                                      800: 0.6}


def test_a_budget_of_trial_seconds_stops_the_search_as_ctrl_c_does(bench):
    pool, cost = _pool(bench), bench.TrialCost(**COST)
    cfg = bench.search_config(["search.trials=6", "search.workers=1", "controller.type=random"])
    full = 20 + 800 * 0.25 + 5
    outcome, runner, trials = bench.run_search(cfg, bench.pool_source(pool), cost, budget_s=2.5 * full,
                                               pool=[r["arch"] for r in pool.archs], order=range(6))
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


# ------------------------------------------------------------------------------------------------ pool steps
def test_the_800_step_defaults_are_those_the_recorded_results_were_made_with(bench):
    assert bench.POOL_STEPS == (100, 200, 400, 800)
    assert bench.replay_settings(bench.POOL_STEPS) == bench.REPLAY_SETTINGS
    args = bench.build_parser().parse_args(["pool"])
    assert args.steps == (100, 200, 400, 800) and args.pool_search == "es-pool" and args.out == bench.POOL
    assert args.pool_db == bench.RESULTS / "es-pool.db" and args.calibration_db == bench.RESULTS / "calibration-demo.db"
    assert args.calibration_study == "demo-cal" and args.calibration_variant is None
    assert bench.build_parser().parse_args(["replay"]).pool == bench.POOL
    assert bench.search_config([]).proxy.train_steps == 800


@pytest.mark.parametrize("steps, labels", [
    # r -> r * 400 / 800; rung 50 is no pool step, so 100,200,400 becomes 100,200 (replayed once).
    ((100, 200, 400), ["asha rungs 200 eta 3", "asha rungs 100,200 eta 3", "asha rungs 200 eta 2",
                       "asha rungs 100,200 eta 2", "asha rungs 200 eta 4", "median rungs 200 warmup_trials 5",
                       "median rungs 100,200 warmup_trials 5"]),
    # Without a step at 100 (a rung must be one of the pool's steps before the last): 200,400 only.
    ((200, 400, 800), ["asha rungs 400 eta 3", "asha rungs 200,400 eta 3", "asha rungs 400 eta 2",
                       "asha rungs 200,400 eta 2", "asha rungs 400 eta 4", "median rungs 400 warmup_trials 5",
                       "median rungs 200,400 warmup_trials 5"]),
    # 250 * 400 / 800 is not an integer step; 120 is no rung either.
    ((120, 250), []),
])
def test_replay_settings_scale_the_800_step_rungs_to_the_pool_s_steps(bench, steps, labels):
    assert [bench._label(s) for s in bench.replay_settings(steps)] == labels


def test_a_400_step_pool_trains_its_trials_to_400_steps_and_judges_at_its_own_steps(bench):
    pool, cost = _pool(bench, steps=(100, 200, 400)), bench.TrialCost(**COST)
    assert pool.last_step == 400 and pool.best()["ap"][400] == 0.6
    r = bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=1, asha=None)
    full = 20 + 400 * 0.25 + 5
    assert r["pruned"] == 0 and r["found_best"] and r["best_found_ap"] == 0.6
    assert r["trial_s_total"] == pytest.approx(6 * full) and r["trial_s_to_best"] == pytest.approx(3 * full)
    # The 800-step test's rung 100 again: the same three stopped there, the others trained to 400.
    r = bench.replay_one(pool, [0, 1, 2, 3, 4, 5], cost, workers=1, asha={"rungs": (100,), "eta": 3})
    assert r["pruned"] == 3 and r["found_best"]
    assert r["trial_s_total"] == pytest.approx(3 * (20 + 400 * 0.25 + 2 * 5) + 3 * (20 + 100 * 0.25 + 5))


def _pool_file(path, pool, *, steps):
    import json

    doc = {"archs": [{"key": r["key"], "source": r["source"], "arch": r["arch"].to_dict(), "flops": r["flops"],
                      "ap": {str(s): v for s, v in r["ap"].items()}} for r in pool.archs]}
    if steps is not None:
        doc["steps"] = list(steps)
    path.write_text(json.dumps(doc))
    return path


def test_a_pool_file_without_steps_is_the_800_step_pool(bench, tmp_path):
    old = bench.load_pool(_pool_file(tmp_path / "old.json", _pool(bench), steps=None))
    assert old.steps == (100, 200, 400, 800) and old.last_step == 800 and old.best()["ap"][800] == 0.6
    new = bench.load_pool(_pool_file(tmp_path / "new.json", _pool(bench, steps=(100, 200, 400)), steps=(100, 200, 400)))
    assert new.steps == (100, 200, 400) and new.last_step == 400
    assert bench.pool_source(new)(new.archs[2]["arch"], 0, 0).metrics == {"ap": 0.6}
    # A 400-step pool's curves read as an 800-step one (no "steps"): they lack step 800.
    with pytest.raises(bench.PoolError, match=r"no AP at steps \[800\]"):
        bench.load_pool(_pool_file(tmp_path / "bad.json", _pool(bench, steps=(100, 200, 400)), steps=None))


@pytest.fixture()
def variants_db(tmp_path):
    """A copy of the committed study-of-variants snapshot (demo-variants: steps400, steps250 and eval100, the first
    and the last of 400 steps; demo-cal, its reference study, beside it): the committed file is never opened."""
    import shutil

    dst = tmp_path / "variants.db"
    shutil.copyfile(ROOT / "scripts" / "bench" / "results" / "calibration-variants.db", dst)
    return dst


def test_a_study_of_variants_gives_one_variant_s_curves(bench, variants_db):
    import sqlite3

    from nas.calibration.study import Study

    config = sqlite3.connect(variants_db).execute("SELECT config FROM searches WHERE name = 'demo-variants'").fetchone()
    mine = {p.index for p in Study.from_yaml(config[0]).plan if p.variant == "steps400"}
    rows = bench._pool_rows(variants_db, "demo-variants", "calibration", (100, 200, 400), "steps400")
    assert rows and {int(r["source"].split(":")[1]) for r in rows} <= mine
    assert all(set(r["ap"]) == {"100", "200", "400"} for r in rows)
    # Two variants train 400 steps: without a name the pool would mix two proxies.
    with pytest.raises(bench.PoolError, match="steps400: 400 steps.*eval100: 400 steps.*--calibration-variant"):
        bench._pool_rows(variants_db, "demo-variants", "calibration", (100, 200, 400))
    with pytest.raises(bench.PoolError, match="trains to step 250, not to the pool's last step 400"):
        bench._pool_rows(variants_db, "demo-variants", "calibration", (100, 200, 400), "steps250")
    with pytest.raises(bench.PoolError, match="not a calibration study of variants"):
        bench._pool_rows(variants_db, "demo-cal", "calibration", (100, 200, 400), "steps400")
    # The reference study: its 10 candidates' proxy trainings at 800 steps (and repeats), not its 3,200-step
    # references.
    rows = bench._pool_rows(variants_db, "demo-cal", "calibration")
    assert len({r["key"] for r in rows}) == 10 and all(set(r["ap"]) == {"100", "200", "400", "800"} for r in rows)


def test_asha_s_large_search_bound_charges_each_segment_to_the_fraction_that_reaches_it(bench):
    cost = bench.TrialCost(**COST)
    full = 20 + 800 * 0.25 + 5
    # Every trial: setup, 400 steps, an evaluation; a third of them the other 400 steps and the last evaluation.
    assert bench.asha_bound(cost, 800, (400,), 3) == pytest.approx((20 + 100 + 5 + (100 + 5) / 3) / full)
    two = (20 + 50 + 5 + (50 + 5) / 2 + (100 + 5) / 4) / full
    assert bench.asha_bound(cost, 800, (200, 400), 2) == pytest.approx(two)
    # Free setup and evaluations: only the steps count.
    free = bench.TrialCost(setup_s=0.0, eval_s=0.0, step_s=0.25, ref_flops=1e8)
    assert bench.asha_bound(free, 400, (100, 200), 3) == pytest.approx((100 + 100 / 3 + 200 / 9) / 400)


def test_the_bound_table_covers_both_demo_proxies_and_the_three_cost_levels(bench, tmp_path):
    doc = bench.bound_table(tmp_path / "bound.json")
    assert (tmp_path / "bound.json").exists()
    assert {(r["costs"], r["last_step"]) for r in doc["rows"]} == {
        (c, s) for c in ("proxy.json", "fixed part 20 s (13 + 7)", "no fixed part") for s in (400, 800)}
    # A cheaper fixed part lowers every bound; without one, the bound is the steps' share alone.
    by = {(r["costs"], r["last_step"], tuple(r["rungs"]), r["eta"]): r["bound"] for r in doc["rows"]}
    assert all(by[("no fixed part", *k[1:])] < b for k, b in by.items() if k[0] == "proxy.json")
    assert by[("no fixed part", 400, (100, 200), 3)] == pytest.approx((100 + 100 / 3 + 200 / 9) / 400)

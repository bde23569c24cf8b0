"""scripts/bench/db.py runs the search job's driver itself: every trial finished with its reports, checkpoints by
the job's rule, every store call timed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from results_db import ResultStore

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_db", ROOT / "scripts" / "bench" / "db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_trials(bench, path, out, n):
    """Every trial finished; the failed ones are the fault table's, the ones that ran have their whole curve."""
    cfg = bench.build_config(n)
    steps = sorted(set(range(500, 8664, 500)) | {8663})
    assert bench.reports_per_trial(cfg) == len(steps) == 18
    faults = set(bench.fault_table(n, 0)["raise"])
    with ResultStore(path) as r:
        trials = r.trials(bench.SEARCH)
        assert len(trials) == n and sorted(t.index for t in trials) == list(range(n))
        assert {t.status for t in trials} <= {"completed", "failed", "cached"}
        by_status = {s: [t for t in trials if t.status == s] for s in ("completed", "failed", "cached")}
        assert [out[s] for s in by_status] == [len(v) for v in by_status.values()]
        assert all(t.index in faults and "injected failure" in t.error for t in by_status["failed"])
        curves = r.reports([t.id for t in trials])
        for t in by_status["completed"]:
            assert [p.step for p in curves[t.id]] == steps
            evals = [p.step for p in curves[t.id] if "ap" in p.metrics]
            assert evals == [2000, 4000, 6000, 8663]
            assert curves[t.id][-1].metrics["ap"] == pytest.approx(t.reward)
        assert not any(curves[t.id] for t in by_status["failed"] + by_status["cached"])
        ckpt = r.load_checkpoint(bench.SEARCH)
    assert out["report_rows"] == 18 * out["completed"] and out["trials_with_reports"] == out["completed"]
    assert out["calls"]["register_arch"] == out["calls"]["add_trials"] == out["calls"]["finish_trial"] == n
    assert set(bench.METHODS) <= set(out["us_per_trial"]) and out["insert_per_s"] > 0
    assert out["calls"]["save_checkpoint"] == out["checkpoints"]
    return ckpt


@pytest.mark.parametrize("interval, checkpoints", [(0.0, 40), (3600.0, 1)])
def test_fill_runs_the_driver_and_checkpoints_by_the_jobs_rule(tmp_path, interval, checkpoints):
    # Evolution (TF-free) counts every reward as an update: interval 0 stores all 40, a long one only the last.
    bench = _bench()
    path = str(tmp_path / "b.db")
    out = bench.fill(path, 40, workers=4, checkpoint_interval_s=interval, seed=0, controller="evolution")
    assert out["fault_indices"] == out["failed"] == 1
    assert out["updates"] == 40 and out["checkpoints"] == checkpoints
    ckpt = _check_trials(bench, path, out, 40)
    assert ckpt.step == 40 and ckpt.state["feedbacks"] == 40


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("interval, checkpoints", [(0.0, 4), (3600.0, 1)])
def test_fill_with_ppo_checkpoints_each_update_and_the_rest_at_the_end(tmp_path, interval, checkpoints):
    # 35 trials, batch 10: three PPO updates; interval 0 stores each and then the 5 feedbacks after the last.
    bench = _bench()
    path = str(tmp_path / "b.db")
    out = bench.fill(path, 35, workers=10, checkpoint_interval_s=interval, seed=0)
    assert out["updates"] == 3 and out["checkpoints"] == checkpoints
    ckpt = _check_trials(bench, path, out, 35)
    assert ckpt.step == 3 and ckpt.state["feedbacks"] == 35
    # The real controller's state: the policy's weights and Adam moments (~2.3 MB of JSON).
    assert ckpt.state["controller"]["controller"] == "ppo" and out["checkpoint_mb"] > 2


def test_the_timed_store_forwards_and_clocks_each_method(tmp_path):
    store = _bench().TimedStore(ResultStore(str(tmp_path / "t.db")))
    store.create_search("s", config="", seed=0, controller="random", family="spinenet49")
    assert store.open_search("s").name == "s" and store.readonly is False
    assert store.calls == {"create_search": 1, "open_search": 1}
    assert store.wall["create_search"] > 0 and store.wall_s == sum(store.wall.values())
    store.close()


@pytest.mark.slow
def test_the_benchmark_prints_its_summary(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "db.py"), "--trials", "30", "--runs", "1",
                           "--controller", "evolution", "--no-save", "--json", "--dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert set(summary) == {"trials", "top_s", "insert_per_s", "db_mb"} and summary["trials"] == 30
    assert summary["top_s"] > 0 and summary["insert_per_s"] > 0 and summary["db_mb"] > 0

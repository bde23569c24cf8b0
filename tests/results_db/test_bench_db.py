"""scripts/bench/db.py writes what the search job writes: the same calls, every trial finished, checkpoints by the
job's rule."""

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


@pytest.mark.parametrize("interval, checkpoints", [(0.0, 4), (3600.0, 1)])
def test_fill_finishes_every_trial_and_checkpoints_by_the_jobs_rule(tmp_path, interval, checkpoints):
    path = str(tmp_path / "b.db")
    out = _bench().fill(path, 40, batch=10, workers=4, state_floats=300, checkpoint_interval_s=interval, seed=0)
    assert out["completed"] + out["failed"] + out["cached"] == 40 and out["updates"] == 4
    assert out["checkpoints"] == checkpoints and out["insert_per_s"] > 0
    with ResultStore(path) as r:
        trials = r.trials("bench")
        assert len(trials) == 40 and all(t.status in ("completed", "failed", "cached") for t in trials)
        assert sorted(t.index for t in trials) == list(range(40))
        ckpt = r.load_checkpoint("bench")
        assert ckpt.step == 4 and ckpt.state["feedbacks"] == 40


@pytest.mark.slow
def test_the_benchmark_prints_its_summary(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "db.py"), "--trials", "30", "--runs", "1",
                           "--no-save", "--json", "--dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert set(summary) == {"trials", "top_s", "insert_per_s", "db_mb"} and summary["trials"] == 30
    assert summary["top_s"] > 0 and summary["insert_per_s"] > 0 and summary["db_mb"] > 0

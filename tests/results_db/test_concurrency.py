"""A reader while the search job writes (SQLite WAL): no "database is locked", every read answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from results_db import ResultReader

ROOT = Path(__file__).resolve().parents[2]

# The search job's write pattern, as fast as it goes: batches of 16 proposals registered, added as running,
# finished one by one, then a controller checkpoint.
WRITER = r"""
import sys, numpy as np
from results_db import NewTrial, ResultStore
from search_space import SearchSpace
path, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
space = SearchSpace('spinenet49'); rng = np.random.default_rng(0)
store = ResultStore(path)
store.create_search('live', controller='ppo', family='spinenet49')
open(ready, 'w').close()
for b in range(0, n, 16):
    ds = [space.random(rng) for _ in range(16)]
    keys = store.register_archs([space.decode(d) for d in ds])
    ids = store.add_trials('live', [NewTrial(k, d) for k, d in zip(keys, ds)], status='running', host='w')
    for t in ids:
        ap = float(rng.random())
        store.finish_trial(t, status='completed', reward=ap, metrics={'ap': ap}, wall_s=1.0, flops=10**9, params=10**6)
    store.save_checkpoint('live', b // 16, {'w': rng.normal(size=2000).tolist()})
store.close()
print('done', n)
"""


@pytest.mark.slow
def test_top_while_the_search_job_writes(tmp_path):
    path = str(tmp_path / "live.db")
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, "3200", str(ready)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    cli_runs, reads, seen = 0, 0, []
    try:
        while writer.poll() is None and time.monotonic() < deadline:
            proc = subprocess.run(
                [sys.executable, "-m", "nas.cli", "top", "--db", path, "-k", "5"], env=env, capture_output=True,
                text=True,
            )
            assert proc.returncode == 0, proc.stderr
            assert "locked" not in proc.stderr
            cli_runs += 1
            with ResultReader(path) as r:
                seen.append(sum(r.search_summaries()[0].counts.values()))
                r.top(k=10)
                r.history("live")
                reads += 1
    finally:
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert "locked" not in err and out.strip() == "done 3200"
    assert cli_runs >= 2 and reads >= 2, (cli_runs, reads)
    assert seen == sorted(seen) and seen[0] < 3200  # the reader saw the search grow
    with ResultReader(path) as r:
        assert sum(r.search_summaries()[0].counts.values()) == 3200

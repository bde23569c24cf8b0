#!/usr/bin/env python
"""The demo preset's calibration study: run it, resume it, record it.

The study takes hours of the 2 CPU cores, so it runs in the background and continues across runs of this script (and
restarts of the machine) through the tool's own resume. Its database lives in runs/ while it runs; `snapshot` copies it
(SQLite's backup API: a consistent copy while the study writes) to scripts/bench/results/calibration-demo.db, which is
committed, so the next `run` (in any checkout) picks the study up where the snapshot left it (a training that was
running then runs again).

    python scripts/bench/calibration_demo.py run        # start, or resume from runs/ or from the snapshot
    python scripts/bench/calibration_demo.py run --retry-failed   # resume, running failed trainings again
    python scripts/bench/calibration_demo.py snapshot   # the database, calibration show --json, every curve
    python scripts/bench/calibration_demo.py show       # spinenas calibration show

The study (the command `run` starts): `spinenas calibrate --preset demo --name demo-cal --archs 10 --rungs
100,200,400,800 --repeats 3 --variance-archs 3 --runner local` (reference: 4x the demo's 800 steps).

Run it from a checkout that nobody edits while it runs (`git worktree add ../wt-study main`, then this script of
that tree): every training starts a fresh Python process that imports the tree's code, so an edit in the middle
of a study runs half of it on other code, and an edit to how a training starts can fail the trainings that start
after it (`--retry-failed` runs them again).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from scripts.bench.common import live_database, sqlite_backup  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results")
SNAPSHOT = os.path.join(RESULTS, "calibration-demo.db")
LIVE = os.path.join(ROOT, "runs", "demo-cal.db")
NAME = "demo-cal"
STUDY = ["--preset", "demo", "--name", NAME, "--archs", "10", "--rungs", "100,200,400,800", "--repeats", "3",
         "--variance-archs", "3"]


def _spinenas(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], cwd=ROOT, **kw)


def run(retry_failed: bool = False) -> int:
    upgraded = live_database(LIVE, SNAPSHOT)  # a snapshot written by an earlier schema is migrated first
    if upgraded != 0:
        return upgraded
    if os.path.exists(LIVE):
        again = ["--retry-failed"] if retry_failed else []
        return _spinenas("calibrate", "--resume", NAME, *again, "--db", LIVE, "--runner", "local",
                         "--plain").returncode
    return _spinenas("calibrate", *STUDY, "--db", LIVE, "--runner", "local", "--plain").returncode


def snapshot() -> int:
    if not os.path.exists(LIVE):
        print(f"no study at {LIVE}", file=sys.stderr)
        return 2
    os.makedirs(RESULTS, exist_ok=True)
    tmp = SNAPSHOT + ".tmp"
    sqlite_backup(LIVE, tmp)
    upgraded = _spinenas("db", "upgrade", "--db", tmp, capture_output=True, text=True)  # the copy, at today's schema
    if upgraded.returncode != 0:
        print(upgraded.stderr, file=sys.stderr)
        return upgraded.returncode
    with sqlite3.connect(tmp) as dst:
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
    with sqlite3.connect(tmp) as dst:
        dst.execute("VACUUM")
    os.replace(tmp, SNAPSHOT)
    show = _spinenas("calibration", "show", NAME, "--db", SNAPSHOT, "--json", capture_output=True, text=True)
    if show.returncode != 0:
        print(show.stderr, file=sys.stderr)
        return show.returncode
    study = json.loads(show.stdout)
    study["command"] = "python scripts/bench/calibration_demo.py run  # = spinenas calibrate " + " ".join(STUDY)
    with open(os.path.join(RESULTS, "calibration-demo.json"), "w") as fh:
        json.dump(study, fh, indent=2)
    # Every training's learning curve: the data the early-stopping benchmark replays.
    con = sqlite3.connect(f"file:{SNAPSHOT}?mode=ro", uri=True)
    rows = con.execute(
        'SELECT t.id, t."index", t.arch_key, t.status, t.fingerprint, t.wall_s, t.metrics FROM trials t '
        "JOIN searches s ON s.id = t.search_id WHERE s.name = ? ORDER BY t.\"index\"", (NAME,)).fetchall()
    curves = []
    for tid, index, key, status, fp, wall_s, metrics in rows:
        reports = con.execute("SELECT step, metrics, created_at FROM trial_reports WHERE trial_id = ? ORDER BY step",
                              (tid,)).fetchall()
        curves.append({"index": index, "key": key, "status": status, "fingerprint": fp, "wall_s": wall_s,
                       "metrics": json.loads(metrics) if metrics else {},
                       "curve": [{"step": s, "at": at, **json.loads(m)} for s, m, at in reports]})
    con.close()
    with open(os.path.join(RESULTS, "calibration-demo-curves.json"), "w") as fh:
        json.dump({"study": NAME, "trainings": curves}, fh, indent=1)
    t = study["trainings"]
    print(f"snapshot: {t['done']} of {t['total']} trainings; {study['verdict']['text']}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("run", "snapshot", "show"))
    parser.add_argument("--retry-failed", action="store_true", help="run: resume, running failed trainings again")
    args = parser.parse_args()
    if args.what == "run":
        return run(args.retry_failed)
    if args.what == "snapshot":
        return snapshot()
    db = LIVE if os.path.exists(LIVE) else SNAPSHOT
    return _spinenas("calibration", "show", NAME, "--db", db).returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""A search under faults: nothing lost, nothing run twice.

On a local Ray cluster (loopback) that this script starts and stops, one `spinenas search` with the surrogate
evaluator (simulated trial time) suffers, in one run:
- a worker process killed (SIGKILL) in the middle of a trial (Ray retries the task),
- the driver killed (SIGKILL) in the middle of the search, then `spinenas search --resume`,
- a trial that raises, and a trial whose AP is NaN (both stored as failed).

Reports trials requested / completed / failed / duplicated (an architecture trained to completion twice within the
search, or a trial finished twice) / lost (requested but not finished). Targets: duplicated 0, lost 0.

    python scripts/bench/faults.py [--trials 24] [--workers 3] [--duration 3]

Writes scripts/bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "faults.json")


def finished(db: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = con.execute("select count(*) from trials where status in ('completed','failed','cached')").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def trial_workers(raylet_pids: set[int]) -> list:
    """Ray worker processes of our cluster that are running a trial right now."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline", "ppid"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if "_ray_trial" in cmd and p.info["ppid"] in raylet_pids:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()

    import psutil
    import ray

    tmp = tempfile.mkdtemp(prefix="spinenas-faults-")
    db = os.path.join(tmp, "r.db")
    ray.init(num_cpus=args.workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    address = ray.get_runtime_context().gcs_address
    me = psutil.Process()
    raylets = {p.pid for p in me.children(recursive=True) if "raylet" in " ".join(p.cmdline())}
    events = []
    faults = {"raise": [3], "nan": [5]}
    base = [sys.executable, "-m", "nas.cli", "search", "--evaluator", "surrogate", "--controller", "evolution",
            "--trials", str(args.trials), "--workers", str(args.workers), "--cpus-per-trial", "1",
            "--surrogate-duration", str(args.duration), "--db", db, "--address", address, "--run-dir",
            os.path.join(tmp, "run")]
    driver = None
    try:
        driver = subprocess.Popen([*base, "--name", "faults", "--inject-faults", json.dumps(faults)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        # 1. kill a worker mid-trial
        deadline = time.time() + 120
        killed = False
        while time.time() < deadline and not killed:
            if finished(db) >= 2:
                busy = trial_workers(raylets)
                if busy:
                    time.sleep(args.duration / 3)
                    try:
                        busy[0].send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:  # its trial ended meanwhile and the worker exited: pick another
                        continue
                    killed = True
                    events.append({"event": "worker killed", "pid": busy[0].pid, "finished_before": finished(db)})
            time.sleep(0.1)
        # 2. kill the driver mid-search
        while finished(db) < args.trials // 2 and time.time() < deadline + 120:
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        events.append({"event": "driver killed", "finished_before": finished(db)})
        # 3. resume
        t0 = time.time()
        resumed = subprocess.run([*base[:3], "search", "--resume", "faults", "--db", db, "--address", address,
                                  "--run-dir", os.path.join(tmp, "run")], capture_output=True, text=True, cwd=tmp)
        events.append({"event": "resumed", "exit_code": resumed.returncode, "seconds": round(time.time() - t0, 1)})
        if resumed.returncode != 0:
            print(resumed.stderr[-3000:], file=sys.stderr)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        ray.shutdown()

    con = sqlite3.connect(db)
    rows = con.execute("select t.idx, t.arch_key, t.status, t.attempt, t.error from (select \"index\" as idx, "
                       "arch_key, status, attempt, error from trials) t order by t.idx").fetchall()
    con.close()
    by_status = collections.Counter(r[2] for r in rows)
    trained = collections.Counter(r[1] for r in rows if r[2] == "completed")
    doc = {
        "command": "python scripts/bench/faults.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "events": events,
        "requested": args.trials,
        "completed": by_status["completed"],
        "cached": by_status["cached"],
        "failed": by_status["failed"],
        "failed_errors": [r[4] for r in rows if r[2] == "failed"],
        "rerun_after_resume": sum(1 for r in rows if r[3] > 1),
        "duplicated": sum(n - 1 for n in trained.values() if n > 1) + (len(rows) - len({r[0] for r in rows})),
        "lost": args.trials - sum(by_status[s] for s in ("completed", "failed", "cached")),
        "unfinished_rows": sum(by_status[s] for s in ("queued", "running")),
    }
    doc["targets_met"] = doc["duplicated"] == 0 and doc["lost"] == 0 and doc["unfinished_rows"] == 0
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(json.dumps(doc, indent=2))
    return 0 if doc["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

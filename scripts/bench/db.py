"""Benchmark of the results database at the paper's scale: insert throughput, `spinenas top` latency, file size.

Fills a fresh SQLite database with N realistic trials through the store calls the search job's driver makes
(`nas.loop.SearchDriver`, see `fill`): with 10 trials in flight, each proposal registers its arch
(`register_arch`), looks its key up (`find_result`: a key with a result becomes a CACHED trial at once) and adds
one trial (`add_trials`); each result is finished at once (`finish_trial`: COMPLETED or FAILED, with the metrics a
Model Garden proxy run reports); the PPO controller updates every 10 feedbacks, and after an update its state is
checkpointed (`save_checkpoint`) unless the last checkpoint is younger than the job's `checkpoint_interval_s`
(1 s by default; `--checkpoint-interval 0` checkpoints after every update). The state is what the PPO
controller's `state_dict()` holds: weights and Adam moments as float32 bytes in base64 (about 2.4 MB of JSON for
LSTM 100 / embedding 32 on spinenet49). The architectures are real: ``SearchSpace('spinenet49').decode(...)``.
Then it times ``spinenas top -k 10`` as a subprocess (wall time including interpreter start; median of several
runs) and the other read commands, and writes the figures with the command and the machine to
scripts/bench/results/.

Targets (issue 5, at 14,000 trials): top < 0.5 s, inserts > 500 trials/s, file < 50 MB.

Usage::

  flock /tmp/spinenas-cpu.lock python scripts/bench/db.py --trials 14000 --json
  flock /tmp/spinenas-cpu.lock python scripts/bench/db.py --trials 14000 --checkpoint-interval 0 --tag every-update
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nas.config import SearchConfig  # noqa: E402
from results_db import NewTrial, ResultStore  # noqa: E402
from search_space import SearchSpace  # noqa: E402

logger = logging.getLogger("bench.db")

RESULTS_DIR = ROOT / "scripts" / "bench" / "results"
TARGETS = {"top_s": 0.5, "insert_per_s": 500.0, "db_mb": 50.0}
# Fraction of proposals that repeat an earlier architecture (a converging controller), and of runs that fail.
REPEAT_RATE = 0.08
FAIL_RATE = 0.03
HOSTS = [f"gpu-node-{i:02d}" for i in range(1, 9)]
# Every trial is scored the same way here, so one result fingerprint (schema 0002) covers them all.
FINGERPRINT = "bench"
ERROR = (
    "ResourceExhaustedError: OOM when allocating tensor with shape[8,256,64,64] and type float on "
    "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc [Op:Conv2D] (trial ran 1412 of 6000 steps)"
)


def _metrics(rng: np.random.Generator, ap: float, wall_s: float) -> dict[str, float]:
    """What a Model Garden proxy run reports (COCO AP family, loss, throughput, memory)."""
    return {
        "ap": ap,
        "ap50": min(1.0, ap * 1.62 + rng.normal(0, 0.01)),
        "ap75": max(0.0, ap * 1.05 + rng.normal(0, 0.01)),
        "aps": max(0.0, ap * 0.45 + rng.normal(0, 0.01)),
        "apm": max(0.0, ap * 1.1 + rng.normal(0, 0.01)),
        "apl": max(0.0, ap * 1.35 + rng.normal(0, 0.01)),
        "ar1": max(0.0, ap * 0.9 + rng.normal(0, 0.01)),
        "ar10": max(0.0, ap * 1.3 + rng.normal(0, 0.01)),
        "ar100": max(0.0, ap * 1.4 + rng.normal(0, 0.01)),
        "train_loss": float(rng.uniform(0.4, 1.2)),
        "steps": 6000.0,
        "images_per_s": float(rng.uniform(40, 90)),
        "trace_s": float(rng.uniform(20, 60)),
        "peak_rss_mb": float(rng.uniform(6000, 9000)),
        "gflops_per_s": float(rng.uniform(800, 2000)),
        "eval_s": float(wall_s * 0.08),
    }


def _array_blobs(rng: np.random.Generator, floats: int) -> dict:
    """Weights and Adam moments as the PPO controller's `state_dict()` holds them: float32 bytes in base64."""
    out = {}
    for group in ("weights", "adam_m", "adam_v"):
        a = rng.normal(0, 0.1, floats // 3).astype(np.float32)
        out[group] = {"dtype": a.dtype.str, "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode()}
    return out


def _controller_state(rng: np.random.Generator, step: int, blobs: dict) -> dict:
    """A controller checkpoint: bookkeeping that changes every update around the (re-used) encoded arrays."""
    return {
        "version": 1,
        "controller": "ppo",
        "seed": 0,
        "rng": {"bit_generator": "PCG64", "state": int(rng.integers(0, 2**62)), "inc": int(rng.integers(0, 2**62))},
        "next_trial_id": step,
        "pending": [],
        "algorithm": {**blobs, "adam_step": float(step), "baseline": float(rng.normal()), "num_updates": step},
    }


PHASES = ("register_arch", "find_result", "add_trial", "start_trial", "finish_trial", "save_checkpoint")


def fill(path: str, n: int, *, batch: int, workers: int, state_floats: int, checkpoint_interval_s: float,
         seed: int) -> dict:
    """Writes `n` trials with the store calls `nas.loop.SearchDriver` makes, and returns the timing of the writes.

    The driver keeps `workers` trials in flight. For each proposal it registers the arch, looks its key up and adds
    the trial (running; queued when the same key is in flight; at once 'cached' when the key has a result). As each
    result arrives (oldest first here) it finishes the trial, finishes or starts the trials that waited for the same
    key, and feeds the controller, which updates after every `batch` feedbacks; after an update the controller's
    state is checkpointed unless the last checkpoint is younger than `checkpoint_interval_s`, and once more at
    the end.
    """
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(seed)
    # The controller's work (sampling decisions) is not the database's: done before the clock. Each proposal is
    # decoded afresh off the clock, as the driver does; its dedup key (a hash of the network it builds) is computed
    # on first use, inside `register_arch`, so the clock includes it as in the driver, and so does the canonical
    # spec a new row stores.
    proposals: list[tuple[int, ...]] = []
    for _ in range(n):
        if proposals and rng.random() < REPEAT_RATE:
            proposals.append(proposals[int(rng.integers(0, len(proposals)))])
        else:
            proposals.append(space.random(rng))
    costs: dict[str, tuple[int, int]] = {}  # one measured cost per arch
    rng_cost = np.random.default_rng(seed + 1)
    # Encoding the arrays is the controller's work (state_dict), not the store's: done once, re-used.
    blobs = _array_blobs(np.random.default_rng(seed + 2), state_floats)

    store = ResultStore(path)
    store.create_search("bench", config="preset: spinenet49_proxy_small\nseed: 0\n", seed=seed,
                        controller="ppo", family="spinenet49", fingerprint=FINGERPRINT)
    counts = {"completed": 0, "failed": 0, "cached": 0, "checkpoints": 0, "updates": 0}
    # The clock runs only inside store calls: drawing metrics and controller states is the benchmark's own work.
    phases = dict.fromkeys(PHASES, 0.0)
    cpu = [0.0]

    def timed(phase, fn, *args, **kwargs):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        phases[phase] += time.perf_counter() - t0
        cpu[0] += time.process_time() - c0
        return out

    inflight: collections.deque = collections.deque()  # (trial id, key, arch), oldest first
    inflight_keys: collections.Counter = collections.Counter()
    waiting: dict[str, list[int]] = {}
    state = {"feedbacks": 0, "stored": 0, "last": time.perf_counter()}

    def checkpoint() -> None:
        ckpt = {"controller": _controller_state(rng, counts["updates"], blobs), "feedbacks": state["feedbacks"]}
        timed("save_checkpoint", store.save_checkpoint, "bench", counts["updates"], ckpt)
        state["stored"], state["last"] = state["feedbacks"], time.perf_counter()
        counts["checkpoints"] += 1

    def feedback() -> None:
        state["feedbacks"] += 1
        if state["feedbacks"] % batch == 0:
            counts["updates"] += 1
            if time.perf_counter() - state["last"] >= checkpoint_interval_s:
                checkpoint()

    def cached(tid: int, reward: float, source: int, metrics: dict) -> None:
        timed("finish_trial", store.finish_trial, tid, status="cached", reward=reward, metrics=metrics, wall_s=0.0,
              cached_from=source)
        counts["cached"] += 1
        feedback()

    def propose(i: int) -> None:
        d = proposals[i]
        arch = space.decode(d)
        key = timed("register_arch", store.register_arch, arch, family="spinenet49")
        known = timed("find_result", store.find_result, key, fingerprint=FINGERPRINT)
        in_flight = known is None and inflight_keys[key] > 0
        [tid] = timed("add_trial", store.add_trials, "bench", [NewTrial(key, d)],
                      status="queued" if known is not None or in_flight else "running", fingerprint=FINGERPRINT)
        if known is not None:
            cached(tid, known.reward, known.trial_id, known.metrics)
        elif in_flight:
            waiting.setdefault(key, []).append(tid)
        else:
            inflight.append((tid, key, arch))
            inflight_keys[key] += 1

    def collect() -> None:
        tid, key, arch = inflight.popleft()
        inflight_keys[key] -= 1
        wall_s = float(rng.normal(1800, 300))
        if rng.random() < FAIL_RATE:
            timed("finish_trial", store.finish_trial, tid, status="failed", error=ERROR, wall_s=wall_s * 0.3,
                  host=HOSTS[tid % len(HOSTS)])
            counts["failed"] += 1
            ok, ap, metrics = False, None, None
        else:
            ap = float(np.clip(rng.normal(0.22, 0.03), 0.0, 1.0))
            c = costs.setdefault(key, (int(rng_cost.uniform(1.5e9, 6e9)), int(rng_cost.uniform(2e6, 6e6))))
            metrics = _metrics(rng, ap, wall_s)
            timed("finish_trial", store.finish_trial, tid, status="completed", reward=ap, metrics=metrics,
                  wall_s=wall_s, flops=c[0], params=c[1], host=HOSTS[tid % len(HOSTS)])
            counts["completed"] += 1
            ok = True
        feedback()
        for other in waiting.pop(key, []):  # the driver hands them this result; no lookup
            if ok:
                cached(other, ap, tid, metrics)
            else:
                timed("start_trial", store.start_trial, other, host=None)
                inflight.append((other, key, arch))
                inflight_keys[key] += 1

    t_loop = time.perf_counter()
    proposed = 0
    while counts["completed"] + counts["failed"] + counts["cached"] < n:
        while proposed < n and len(inflight) < workers:
            propose(proposed)
            proposed += 1
        if inflight:
            collect()
    if state["feedbacks"] != state["stored"]:
        checkpoint()
    loop_s = time.perf_counter() - t_loop
    store.set_search_status("bench", "completed")
    store.close()
    store_s = sum(phases.values())
    return {
        "insert_s": store_s,
        "insert_per_s": n / store_s,
        "insert_cpu_s": cpu[0],
        # The same writes without the controller checkpoints: what the per-trial path alone sustains.
        "trials_only_per_s": n / (store_s - phases["save_checkpoint"]),
        "insert_per_cpu_s": n / cpu[0],
        "loop_s": loop_s,
        **counts,
        "ms_per_checkpoint": phases["save_checkpoint"] / max(1, counts["checkpoints"]) * 1e3,
        "us_per_trial": {k: round(v / n * 1e6, 1) for k, v in phases.items()},
    }


def time_command(argv: list[str], runs: int) -> dict:
    """Wall time of a `spinenas` command in a fresh interpreter, stdout piped (the plain-table path)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "nas.cli", *argv]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs_s": [round(t, 4) for t in times]}


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SPINENAS_BENCH_COMMIT")
    return out.stdout.strip()


def machine() -> dict:
    """Facts about the machine the figures come from."""
    import sqlite3

    import sqlalchemy

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=14000, help="trials to write (default 14000, the paper's scale)")
    parser.add_argument("--batch", type=int, default=10,
                        help="feedbacks per controller update (default 10, the PPO controller's batch_size)")
    parser.add_argument("--workers", type=int, default=10, help="trials in flight (default 10)")
    parser.add_argument("--checkpoint-interval", type=float, default=SearchConfig().checkpoint_interval_s,
                        metavar="S",
                        help="the search job's search.checkpoint_interval_s: a checkpoint follows an update unless "
                        "the last one is younger than S seconds (default %(default)s, the job's default; 0: after "
                        "every update)")
    parser.add_argument("--state-floats", type=int, default=450_000,
                        help="float32 numbers in each controller checkpoint: the PPO policy's weights and Adam "
                        "moments (default 450000: LSTM 100, embedding 32 on spinenet49, ~2.4 MB of JSON)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each read command (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="where to put the database (default: a temporary directory, removed)")
    parser.add_argument("--no-save", action="store_true", help="do not write scripts/bench/results/db-N.json")
    parser.add_argument("--tag", default="", help="suffix of the results file: db-N-TAG.json")
    parser.add_argument("--json", action="store_true",
                        help='print {"trials": N, "top_s": t, "insert_per_s": r, "db_mb": m}')
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials must be at least 1, got {args.trials}")
    if args.batch < 1 or args.workers < 1 or args.checkpoint_interval < 0:
        parser.error("--batch and --workers must be at least 1, --checkpoint-interval at least 0")
    logging.basicConfig(level=logging.WARNING)

    facts = machine()
    workdir = args.dir or tempfile.mkdtemp(prefix="spinenas-bench-db-")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"bench-{args.trials}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    try:
        writes = fill(path, args.trials, batch=args.batch, workers=args.workers, state_floats=args.state_floats,
                      checkpoint_interval_s=args.checkpoint_interval, seed=args.seed)
        db_mb = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s)) / 2**20
        top = time_command(["top", "--db", path, "-k", "10"], args.runs)
        with ResultStore(path, readonly=True) as store:
            best = store.top(k=1)[0].arch_key
        reads = {
            "top_json": time_command(["top", "--db", path, "-k", "10", "--json"], args.runs),
            "searches": time_command(["searches", "--db", path], args.runs),
            "show": time_command(["show", best[:8], "--db", path], args.runs),
            "interpreter": time_command(["--help"], args.runs),
        }
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = {
        "trials": args.trials,
        "top_s": round(top["median_s"], 4),
        "insert_per_s": round(writes["insert_per_s"], 1),
        "db_mb": round(db_mb, 2),
    }
    record = {
        **summary,
        "targets": TARGETS,
        "met": {
            "top_s": summary["top_s"] < TARGETS["top_s"],
            "insert_per_s": summary["insert_per_s"] > TARGETS["insert_per_s"],
            "db_mb": summary["db_mb"] < TARGETS["db_mb"],
        },
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *(sys.argv[1:] if argv is None else argv)]),
        "commit": _commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**facts, "loadavg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "pattern": {
            "batch": args.batch,
            "workers": args.workers,
            "checkpoint_interval_s": args.checkpoint_interval,
            "state_floats": args.state_floats,
            "repeat_rate": REPEAT_RATE,
            "fail_rate": FAIL_RATE,
            "writes": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in writes.items()},
        },
        "top": top,
        "reads": reads,
    }
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"db-{args.trials}{'-' + args.tag if args.tag else ''}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out)
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The search driver at scale: 1,000 trials over 64 concurrent workers.

Runs the real driver (`engine.driver.SearchDriver`: controller, SQLite store, Ray tasks) with the surrogate evaluator,
whose trials sleep a simulated duration, on a local Ray cluster (loopback) with 64 logical CPUs. Measures:

- driver overhead per trial: the driver's wall time outside `ray.wait` (proposing, decoding, dedup lookups, the
  database writes, submitting, feedback, checkpoints, progress lines) divided by the trials. Target < 20 ms.
- worker idle fraction: 1 - (time the 64 slots spent inside trials) / (64 x the time there was work to hand
  out), measured from the first trial's start to the last submission, from the workers' own start and end times.
  Target < 5%. Also reported from the moment every slot had started a trial (Ray's 64 worker processes take a
  while to start on 2 cores; that is a one-time cost of the cluster, not of the driver).

    python scripts/bench/search_scale.py [--trials 1000] [--workers 64] [--duration 30] [--controller evolution]

Surrogate trials reuse Ray worker processes here (`search.reuse_workers`): 1,000 fresh Python processes would
measure this 2-core machine's process start, not the driver. Writes scripts/bench/results/search_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "search_scale.json")


def idle_fraction(intervals: list[tuple[float, float]], submits: list[float], workers: int) -> dict:
    """Idle share of the worker slots while there was work to hand out: from the first trial's start (and,
    separately, from the moment all slots had started a trial: after Ray's worker processes have started) to the
    last submission."""
    stop = max(submits)
    starts = sorted(s for s, _ in intervals)

    def over(start: float) -> dict:
        busy = sum(max(0.0, min(e, stop) - max(s, start)) for s, e in intervals)
        capacity = workers * (stop - start)
        return {"window_s": stop - start, "busy_slot_s": busy, "capacity_slot_s": capacity,
                "idle_fraction": 1 - busy / capacity if capacity > 0 else float("nan")}

    out = over(starts[0])
    out["warm"] = over(starts[min(workers, len(starts)) - 1])
    out["worker_start_s"] = starts[min(workers, len(starts)) - 1] - starts[0]
    return out


def timed_driver(base: type) -> type:
    """`base` (a `TrialLoop`) that also records, for this benchmark, the seconds spent waiting on its
    runner, the time of every submission and the workers' own (start, end) of every trial that finished."""

    class Timed(base):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.wait_s = 0.0
            self.submits: list[float] = []
            self.intervals: list[tuple[float, float]] = []

        def start_runner(self) -> None:
            super().start_runner()
            runner = self.runner
            submit, poll = runner.submit, runner.poll

            def timed_submit(task):
                self.submits.append(time.time())
                submit(task)

            def timed_poll(timeout):
                t = time.perf_counter()
                outcomes = poll(timeout)
                self.wait_s += time.perf_counter() - t
                for o in outcomes:
                    if o.payload is not None:
                        started = o.payload["started"]
                        self.intervals.append((started, started + o.payload["result"]["wall_s"]))
                return outcomes

            runner.submit, runner.poll = timed_submit, timed_poll

    return Timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="simulated seconds per trial (default 30; real proxy trials take minutes to hours)")
    parser.add_argument("--controller", default="evolution")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()

    import ray

    from nas.config.schema import ControllerSection, EvaluatorSection, NasConfig, SearchConfig
    from nas.engine.driver import SearchDriver
    from results_db import ResultStore

    tmp = tempfile.mkdtemp(prefix="spinenas-scale-")
    ray.init(num_cpus=args.workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        cfg = NasConfig(
            search=SearchConfig(trials=args.trials, workers=args.workers, cpus_per_trial=1.0, reuse_workers=True,
                                seed=0),
            controller=ControllerSection(type=args.controller),
            evaluator=EvaluatorSection.of("surrogate", duration_s=args.duration))
        store = ResultStore(f"sqlite:///{tmp}/r.db")
        lines: list[str] = []
        driver = timed_driver(SearchDriver)(cfg, name="scale", store=store, run_dir=os.path.join(tmp, "run"),
                                            out=lines.append)
        driver.start()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        outcome = driver.run()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        store.close()
    finally:
        ray.shutdown()
    overhead = (wall - driver.wait_s) / outcome.trials
    idle = idle_fraction(driver.intervals, driver.submits, args.workers)
    doc = {
        "command": "python scripts/bench/search_scale.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": vars(args),
        "trials": outcome.trials,
        "completed": outcome.completed,
        "cached": outcome.cached,
        "failed": outcome.failed,
        "wall_s": wall,
        "ideal_wall_s": args.duration * -(-args.trials // args.workers),
        "driver_overhead_ms_per_trial": overhead * 1000,
        "driver_cpu_ms_per_trial": cpu * 1000 / outcome.trials,
        "worker": idle,
        "targets": {"driver_overhead_ms_per_trial": 20, "idle_fraction": 0.05},
    }
    doc["targets_met"] = {
        "driver_overhead": doc["driver_overhead_ms_per_trial"] < 20,
        "idle_fraction": idle["idle_fraction"] < 0.05,
        "idle_fraction_warm": idle["warm"]["idle_fraction"] < 0.05,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(json.dumps(doc, indent=2))
    return 0 if all(doc["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

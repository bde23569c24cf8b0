#!/usr/bin/env python
"""How sample-efficient and how cheap are the controllers?

Runs PPO, regularized evolution and random search on the TF-free surrogate evaluator
(`proxy_task.surrogate.SurrogateEvaluator`), `--seeds` runs each of `--budget` proposals, and reports for each
controller:

* ``best_at``: the best reward seen after 100/250/500/1000/2000 proposals (median over seeds);
* ``proposals_to_random_best``: proposals needed to reach random search's final best (the median over seeds of
  random search's best reward after the whole budget); the median over seeds, null when fewer than half of the
  seeds reach it; ``per_seed`` lists every seed's count;
* ``seconds_per_100``: controller time (`propose` + `feedback`, the evaluations excluded) per 100 proposals in
  steady state: measured over proposals 101..budget, so the one-time TensorFlow import and graph tracing (in the
  first 100) are excluded; median over seeds. The ``*_noiseless`` fields give the same on the noiseless AP of the
  proposed architectures (equal to the reward without ``--noise``).

Protocol: each run proposes one architecture at a time and feeds its reward back before the next proposal (one
worker). The reward is the surrogate's AP; an architecture evaluated twice in a run gets the same reward (the noise
is a function of the architecture, the target and the run's seed), as a search that reuses stored results would.
Run seed s seeds both the controller and the noise. Targets (budget 2000, 5 seeds): PPO and evolution reach random
search's final best in at most a third of the budget, with and without noise 0.02, and PPO's propose + feedback
for 100 proposals takes under 1 s.

    python scripts/bench/controllers.py --space spinenet49 --budget 2000 --seeds 5 --target-seed 0 [--noise 0.02] [--json]

Results go to scripts/bench/results/controllers_<space>_b<budget>_s<seeds>_t<target>_n<noise>.json with the
machine and the command; they are also printed (as the JSON summary with --json). Each (controller, seed) run takes
the shared CPU lock /tmp/spinenas-cpu.lock while it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fcntl
import json
import logging
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from controller import build_controller, get_config_class  # noqa: E402
from proxy_task.surrogate import SurrogateEvaluator  # noqa: E402
from scripts.bench.common import LOCK, cpu_model  # noqa: E402

RESULTS_DIR = os.path.join(ROOT, "scripts", "bench", "results")
CONTROLLERS = ("ppo", "evolution", "random")
CHECKPOINTS = (100, 250, 500, 1000, 2000)
WARMUP = 100  # proposals excluded from the timing (TensorFlow import and tracing happen there)

logger = logging.getLogger("bench.controllers")


class _CpuLock:
    """The shared CPU lock, held while one run computes (so other engineers' heavy jobs do not overlap it)."""

    def __enter__(self) -> _CpuLock:
        self._fh = open(LOCK, "a")  # noqa: SIM115
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def run_one(
    name: str, *, space: str, budget: int, seed: int, target_seed: int, noise: float, config: Any = None
) -> dict[str, Any]:
    """One controller run: best-so-far curves (observed and noiseless) and the controller's time."""
    evaluator = SurrogateEvaluator(target_seed=target_seed, noise=noise, seed=seed, family=space)
    ctrl = build_controller(name, evaluator.space, seed=seed, config=config)
    best, best_clean = -np.inf, -np.inf
    curve, curve_clean = [], []
    controller_s = 0.0
    timed_s = 0.0
    keys = set()
    start = time.perf_counter()
    while ctrl.num_proposed < budget:
        t0 = time.perf_counter()
        (proposal,) = ctrl.propose(1)
        t1 = time.perf_counter()
        arch = evaluator.space.decode(proposal.decisions)
        result = evaluator.evaluate(arch)
        keys.add(arch.key)
        t2 = time.perf_counter()
        ctrl.feedback(proposal.trial_id, result.metrics["ap"])
        t3 = time.perf_counter()
        spent = (t1 - t0) + (t3 - t2)
        controller_s += spent
        if ctrl.num_proposed > WARMUP:
            timed_s += spent
        best = max(best, result.metrics["ap"])
        best_clean = max(best_clean, result.metrics["ap_noiseless"])
        curve.append(best)
        curve_clean.append(best_clean)
    return {
        "curve": curve,
        "curve_noiseless": curve_clean,
        "controller_s": controller_s,
        "seconds_per_100": timed_s / max(budget - WARMUP, 1) * 100,
        "unique_archs": len(keys),
        "wall_s": time.perf_counter() - start,
    }


def _first_reaching(curve: list[float], target: float) -> int | None:
    for i, v in enumerate(curve):
        if v >= target:
            return i + 1
    return None


def _median_count(counts: list[int | None]) -> float | None:
    """Median with never-reached runs counted as infinitely late (None if the median run never reached it)."""
    values = sorted(float("inf") if c is None else float(c) for c in counts)
    m = statistics.median(values)
    return None if m == float("inf") else m


def machine_info() -> dict[str, Any]:
    info = {
        "cpu": cpu_model() or platform.processor(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if "tensorflow" in sys.modules:
        info["tensorflow"] = sys.modules["tensorflow"].__version__
    return info


def benchmark(*, space: str, budget: int, seeds: int, target_seed: int, noise: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in ("random", "evolution", "ppo"):  # random first: its final best is the others' target
        runs[name] = []
        for seed in range(seeds):
            with _CpuLock():
                r = run_one(name, space=space, budget=budget, seed=seed, target_seed=target_seed, noise=noise)
            runs[name].append(r)
            logger.info(
                "%-9s seed %d: best %.4f (noiseless %.4f), controller %.1f s, wall %.1f s",
                name, seed, r["curve"][-1], r["curve_noiseless"][-1], r["controller_s"], r["wall_s"],
            )
    random_best = statistics.median(r["curve"][-1] for r in runs["random"])
    random_best_clean = statistics.median(r["curve_noiseless"][-1] for r in runs["random"])
    checkpoints = [c for c in CHECKPOINTS if c <= budget] + ([budget] if budget not in CHECKPOINTS else [])
    controllers: dict[str, Any] = {}
    for name in CONTROLLERS:
        rs = runs[name]
        per_seed = [_first_reaching(r["curve"], random_best) for r in rs]
        per_seed_clean = [_first_reaching(r["curve_noiseless"], random_best_clean) for r in rs]
        controllers[name] = {
            "best_at": {str(c): round(statistics.median(r["curve"][c - 1] for r in rs), 5) for c in checkpoints},
            "proposals_to_random_best": _median_count(per_seed),
            "seconds_per_100": round(statistics.median(r["seconds_per_100"] for r in rs), 4),
            "per_seed": per_seed,
            "best_at_noiseless": {
                str(c): round(statistics.median(r["curve_noiseless"][c - 1] for r in rs), 5) for c in checkpoints
            },
            "proposals_to_random_best_noiseless": _median_count(per_seed_clean),
            "per_seed_noiseless": per_seed_clean,
            "unique_archs_median": statistics.median(r["unique_archs"] for r in rs),
            "config": dataclasses.asdict(get_config_class(name)()),
        }
    third = budget / 3
    targets = {}
    for name in ("ppo", "evolution"):
        n = controllers[name]["proposals_to_random_best"]
        targets[f"{name}_reaches_random_best_in_a_third"] = n is not None and n <= third
    targets["ppo_propose_feedback_100_under_1s"] = controllers["ppo"]["seconds_per_100"] < 1.0
    return {
        "budget": budget,
        "seeds": seeds,
        "space": space,
        "target_seed": target_seed,
        "noise": noise,
        "random_best": round(random_best, 5),
        "random_best_noiseless": round(random_best_clean, 5),
        "optimum": SurrogateEvaluator(target_seed=target_seed, family=space).optimum_value,
        "targets": targets,
        "controllers": controllers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="spinenet49", help="search-space family (default spinenet49)")
    parser.add_argument("--budget", type=int, default=2000, help="proposals per run (default 2000)")
    parser.add_argument("--seeds", type=int, default=5, help="runs per controller (default 5)")
    parser.add_argument("--target-seed", type=int, default=0, help="the surrogate's hidden optimum (default 0)")
    parser.add_argument("--noise", type=float, default=0.0, help="std of the surrogate's AP noise (default 0)")
    parser.add_argument("--json", action="store_true", help="print the JSON summary instead of a table")
    args = parser.parse_args(argv)
    if args.budget < 1 or args.seeds < 1:
        parser.error(f"--budget and --seeds: expected integers >= 1, got {args.budget} and {args.seeds}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    started = time.time()
    machine = machine_info()
    summary = benchmark(
        space=args.space, budget=args.budget, seeds=args.seeds, target_seed=args.target_seed, noise=args.noise
    )
    machine.update({k: v for k, v in machine_info().items() if k == "tensorflow"})
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc = dict(summary)
    doc["command"] = " ".join(["python", "scripts/bench/controllers.py", *(argv if argv is not None else sys.argv[1:])])
    doc["machine"] = machine
    doc["timing"] = (
        "seconds_per_100: propose + feedback only (evaluations excluded), proposals one at a time, over proposals "
        f"{WARMUP + 1}..budget (the TF import and graph tracing fall in the first {WARMUP}); median over seeds"
    )
    doc["started"] = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds")
    doc["wall_s"] = round(time.time() - started, 1)

    os.makedirs(RESULTS_DIR, exist_ok=True)
    noise = f"{args.noise:g}".replace(".", "p")
    path = os.path.join(
        RESULTS_DIR, f"controllers_{args.space}_b{args.budget}_s{args.seeds}_t{args.target_seed}_n{noise}.json"
    )
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)

    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"space {args.space}, budget {args.budget}, {args.seeds} seeds, target seed {args.target_seed}, "
              f"noise {args.noise:g}; random search's final best {summary['random_best']:.4f} "
              f"(optimum {summary['optimum']:.3f})")
        cps = list(next(iter(summary["controllers"].values()))["best_at"])
        print(f"{'controller':<10} " + " ".join(f"{'@' + c:>8}" for c in cps) + f" {'to rnd best':>12} {'s/100':>7}")
        for name, c in summary["controllers"].items():
            n = c["proposals_to_random_best"]
            print(f"{name:<10} " + " ".join(f"{c['best_at'][k]:8.4f}" for k in cps)
                  + f" {('-' if n is None else f'{n:g}'):>12} {c['seconds_per_100']:7.3f}")
        for k, v in summary["targets"].items():
            print(f"{k}: {'met' if v else 'MISSED'}")
        print(f"written to {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

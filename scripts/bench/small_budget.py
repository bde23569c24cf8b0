#!/usr/bin/env python
"""Which controller settings at a demo's budget (20-80 trials)? Regularized evolution's population against random.

Regularized evolution's first ``population_size`` proposals are uniformly random, so its default population (50)
leaves a search of 20-80 trials (the demo's 20, the README's first run of 40, the real-proxy comparison's 60-80)
almost or entirely random search. This runs, on the TF-free surrogate evaluator with `controllers.py`'s
proposals-part run (`run_one`: one proposal at a time, each fed its reward before the next, a repeated architecture
given the same reward), evolution at several populations (tournament a quarter of it, at least 2, as the paper's
100/25), random search and PPO at its defaults, `--seeds` runs each at every budget; each seed has its own hidden
optimum (target seed 100 + seed) so that no setting is tuned to one surface. Reported: the median over seeds of the best
noiseless reward after each budget, and how often each setting's best beats random search's of the same seed.

    python scripts/bench/small_budget.py [--budgets 20,40,80] [--populations 5,10,20,50] [--seeds 20] [--noise 0.01]

Results: scripts/bench/results/small_budget.json (machine, commit, command), also printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from controller import EvolutionConfig, PPOConfig, RandomConfig  # noqa: E402
from scripts.bench.common import machine, provenance  # noqa: E402
from scripts.bench.controllers import run_one  # noqa: E402

OUT = os.path.join(ROOT, "scripts", "bench", "results", "small_budget.json")


def best_curve(name: str, config: Any, *, seed: int, budget: int, noise: float) -> list[float]:
    """The best noiseless reward after each proposal of one run (`controllers.run_one`'s run)."""
    return run_one(name, space="spinenet49", budget=budget, seed=seed, target_seed=100 + seed, noise=noise, ppo={},
                   config=config)["curve_noiseless"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--budgets", default="20,40,80", help="proposals per run, comma-separated (default 20,40,80)")
    parser.add_argument("--populations", default="5,10,20,50", help="evolution's population sizes (default 5,10,20,50)")
    parser.add_argument("--seeds", type=int, default=20, help="runs per setting (default 20)")
    parser.add_argument("--noise", type=float, default=0.01, help="std of the surrogate's AP noise (default 0.01)")
    args = parser.parse_args(argv)
    try:
        budgets = sorted({int(b) for b in args.budgets.split(",")})
        populations = [int(p) for p in args.populations.split(",")]
    except ValueError:
        parser.error("--budgets and --populations: expected comma-separated integers, e.g. 20,40,80")
    if min(budgets) < 1 or min(populations) < 2 or args.seeds < 1:
        parser.error("--budgets >= 1, --populations >= 2 and --seeds >= 1 expected")
    settings: dict[str, tuple[str, Any]] = {"random": ("random", RandomConfig())}
    for p in populations:
        settings[f"evolution P{p}/T{max(2, p // 4)}"] = ("evolution",
                                                        EvolutionConfig(population_size=p,
                                                                        tournament_size=max(2, p // 4)))
    settings["ppo"] = ("ppo", PPOConfig())
    t0 = time.perf_counter()
    curves = {label: [best_curve(name, cfg, seed=s, budget=max(budgets), noise=args.noise) for s in range(args.seeds)]
              for label, (name, cfg) in settings.items()}
    rows: dict[str, Any] = {}
    for label, runs in curves.items():
        rows[label] = {}
        for b in budgets:
            bests = [c[b - 1] for c in runs]
            randoms = [c[b - 1] for c in curves["random"]]
            rows[label][str(b)] = {"median_best": round(statistics.median(bests), 4),
                                   "beats_random": sum(x > r for x, r in zip(bests, randoms)),
                                   "ties_random": sum(x == r for x, r in zip(bests, randoms))}
    doc = {**provenance(__file__, argv), "machine": machine(), "budgets": budgets, "seeds": args.seeds,
           "noise": args.noise, "target_seeds": "100 + seed", "settings": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    print(f"median best noiseless reward over {args.seeds} seeds (runs whose best beats random's of the same seed)")
    print(f"{'setting':22}" + "".join(f"{b:>18}" for b in budgets))
    for label, by_budget in rows.items():
        print(f"{label:22}" + "".join(f"{r['median_best']:>10.4f} ({r['beats_random']:>2}/{args.seeds})"
                                      for r in by_budget.values()))
    print(f"-> {os.path.relpath(OUT, ROOT)} ({doc['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

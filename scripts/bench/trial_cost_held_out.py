#!/usr/bin/env python
"""`spinenas proxy cost`'s fit on a machine's own stored trials, checked on trials the fit did not see.

Arithmetic on the trials results databases hold (no training): `nas.export.cost.read_measured_trials` reads each
database's timed RetinaNet trials (every host and CPU: the committed databases come from one kind of machine) and
`fit_measured` fits the CPU constants as `proxy cost --db` does. Then, per database:

1. Time split: fit on its older half (by trial id), predict each trial of the newer half (its steps, evaluations,
   FLOPs and batch; a warm worker's trial with the warm setup): predicted against measured trial seconds and steady
   step, beside the committed fit's prediction of the same trial. Target: within 20% on every held-out trial.
2. Random halves (`--splits` of them, seeded): the same, over many splits.
3. Trials needed: fits on n random trials (n = 1, 2, 3, 5, 8, ...), each predicting all the others, `--splits`
   times each: the pooled errors against n (what `MIN_FIT_TRIALS` rests on).
4. Across databases: fit on all of one, predict all of another (another day's trials).

    python scripts/bench/trial_cost_held_out.py [DB ...] [--splits 200] [--seed 0] [--out PATH]

The databases (default: results/es-pool.db and results/calibration-demo.db) are copied, with their -wal, to a
temporary folder and read there: the committed files are never opened. Writes
scripts/bench/results/trial_cost_held_out.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from nas.export import cost as trial_cost  # noqa: E402
from results_db.reader import ResultReader  # noqa: E402
from scripts.bench.common import machine, provenance  # noqa: E402

RESULTS_DIR = os.path.join(ROOT, "scripts", "bench", "results")
RESULTS = os.path.join(RESULTS_DIR, "trial_cost_held_out.json")
DEFAULT_DBS = [os.path.join(RESULTS_DIR, "es-pool.db"), os.path.join(RESULTS_DIR, "calibration-demo.db")]
TARGET = 0.2
NEEDED = (1, 2, 3, 5, 8, 10)


def read_copy(path: str, tmp: str) -> list[trial_cost.MeasuredTrial]:
    """The measured trials of a copy of the database at `path` (and its -wal) made in `tmp`."""
    name = os.path.basename(path)
    copy = os.path.join(tmp, name)
    shutil.copyfile(path, copy)
    if os.path.exists(path + "-wal"):
        shutil.copyfile(path + "-wal", copy + "-wal")
    with ResultReader(copy) as reader:
        return trial_cost.read_measured_trials(reader)


def check(fit: trial_cost.StoredFit, held: list[trial_cost.MeasuredTrial]) -> list[dict]:
    """Each held-out trial: measured against predicted (the fit's and the committed fit's) trial and step seconds."""
    rows = []
    for t in held:
        p = trial_cost.predict_measured(fit.device_for(t), t)
        committed = trial_cost.predict_measured(trial_cost.CPU, t)
        step = fit.device.step_s(flops=t.flops, batch_size=t.batch_size)
        rows.append({
            "trial_id": t.trial_id, "steps": t.steps, "warm": t.warm, "evaluations": len(t.eval_s),
            "flops": t.flops, "measured_s": t.wall_s, "predicted_s": p.total_s,
            "error": trial_cost.relative_error(p.total_s, t.wall_s),
            "step_s": t.step_s, "step_error": trial_cost.relative_error(step, t.step_s),
            "committed_s": committed.total_s, "committed_error": trial_cost.relative_error(committed.total_s, t.wall_s),
            "after_report_s": None if t.reported_s is None else t.wall_s - t.reported_s,
        })  # fmt: skip
    return rows


def summary(errors: list[float]) -> dict:
    """Median, 90th percentile and max of |error|, and the share within the target."""
    a = np.abs(np.asarray(errors, dtype=float))
    return {"n": int(a.size), "median_abs": float(np.median(a)), "p90_abs": float(np.quantile(a, 0.9)),
            "max_abs": float(a.max()), "within_target": float(np.mean(a <= TARGET))}


def fit_of(trials: list[trial_cost.MeasuredTrial], what: str) -> trial_cost.StoredFit:
    return trial_cost.fit_measured(trials, source=what)


def describe(fit: trial_cost.StoredFit) -> dict:
    d = fit.device
    return {"trials": fit.trials, "steps": fit.steps, "speed": fit.speed, "step_overhead_s": d.step_overhead_s,
            "train_flops_per_s": d.train_flops_per_s["float32"], "setup_s": d.setup_s,
            "warm_setup_s": fit.warm_device.setup_s if fit.warm_device else None, "first_eval_s": d.first_eval_s,
            "host_s_per_eval_image": d.host_s_per_eval_image, "setup_trials": fit.setup_trials,
            "eval_trials": fit.eval_trials}


def study(name: str, trials: list[trial_cost.MeasuredTrial], *, splits: int, rng: np.random.Generator) -> dict:
    """Items 1-3 of the module docstring for one database's trials."""
    half = len(trials) // 2
    older, newer = trials[:half], trials[half:]
    fit = fit_of(older, f"older half of {name}")
    rows = check(fit, newer)
    random_halves = []
    for _ in range(splits):
        order = rng.permutation(len(trials))
        part = [trials[i] for i in order[:half]]
        rest = [trials[i] for i in order[half:]]
        random_halves += [r["error"] for r in check(fit_of(part, "random half"), rest)]
    needed = {}
    for n in NEEDED:
        if n >= len(trials):
            continue
        errors = []
        for _ in range(splits):
            order = rng.permutation(len(trials))
            part = [trials[i] for i in order[:n]]
            errors += [r["error"] for r in check(fit_of(part, f"{n} random"), [trials[i] for i in order[n:]])]
        needed[str(n)] = summary(errors)
    return {
        "db": name, "trials": len(trials), "hosts": sorted({t.host or "" for t in trials}),
        "recorded_cpu": sum(t.cpu_model_id is not None for t in trials),
        "steps": sorted({t.steps for t in trials}), "batch_sizes": sorted({t.batch_size for t in trials}),
        "time_split": {"fit": describe(fit), "fit_trial_ids": [t.trial_id for t in older], "held_out": rows,
                       "fitted": summary([r["error"] for r in rows]),
                       "committed": summary([r["committed_error"] for r in rows]),
                       "step": summary([r["step_error"] for r in rows]),
                       "target_met": all(abs(r["error"]) <= TARGET for r in rows)},
        "random_halves": {"splits": splits, **summary(random_halves)},
        "trials_needed": needed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dbs", nargs="*", default=DEFAULT_DBS, help="results databases (default: the committed two)")
    parser.add_argument("--splits", type=int, default=200, help="random splits of items 2 and 3 (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random splits")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    if args.splits < 1:
        parser.error(f"--splits must be at least 1, got {args.splits}")
    head = {**provenance(__file__, argv), "machine": machine()}
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="trial-cost-held-out-") as tmp:
        stored = {os.path.relpath(db, ROOT): read_copy(db, tmp) for db in args.dbs}
    empty = [db for db, trials in stored.items() if len(trials) < 2]
    if empty:
        parser.error(f"a database needs at least 2 measured trials to split, got too few in {empty}")
    studies = [study(db, trials, splits=args.splits, rng=rng) for db, trials in stored.items()]
    across = []
    for a, ta in stored.items():
        for b, tb in stored.items():
            if a != b:
                rows = check(fit_of(ta, a), tb)
                across.append({"fit_on": a, "predicted": b, "fitted": summary([r["error"] for r in rows]),
                               "committed": summary([r["committed_error"] for r in rows]), "held_out": rows})
    result = {
        **head, "target": TARGET, "min_fit_trials": trial_cost.MIN_FIT_TRIALS, "databases": studies, "across": across,
        "target_met": all(s["time_split"]["target_met"] for s in studies),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")

    for s in studies:
        ts = s["time_split"]
        f = ts["fit"]
        print(f"{s['db']}: {s['trials']} trials (hosts {', '.join(s['hosts'])}; steps {s['steps']}; batch "
              f"{s['batch_sizes']}; {s['recorded_cpu']} record their CPU)")
        warm = "" if f["warm_setup_s"] is None else f" (warm {f['warm_setup_s']:.1f} s)"
        print(f"  fit on the older {f['trials']} ({f['steps']}): speed {f['speed']:.3f} x the committed step, "
              f"{f['step_overhead_s']:.3f} s a step + {f['train_flops_per_s'] / 1e9:.1f} GFLOP/s, setup "
              f"{f['setup_s']:.1f} s{warm}, first evaluation +{f['first_eval_s']:.1f} s, host "
              f"{f['host_s_per_eval_image'] * 1e3:.1f} ms/image")
        print(f"  {'trial':>5s} {'steps':>5s} {'warm':>4s} {'measured s':>10s} {'predicted s':>11s} {'error':>7s} "
              f"{'step err':>8s} {'committed':>9s} {'after report s':>14s}")
        for r in ts["held_out"]:
            print(f"  {r['trial_id']:5d} {r['steps']:5d} {'yes' if r['warm'] else 'no':>4s} {r['measured_s']:10.1f} "
                  f"{r['predicted_s']:11.1f} {r['error']:+7.1%} {r['step_error']:+8.1%} {r['committed_error']:+9.1%} "
                  f"{'-' if r['after_report_s'] is None else format(r['after_report_s'], '.1f'):>14s}")
        fi, co, rh = ts["fitted"], ts["committed"], s["random_halves"]
        print(f"  held out: median |error| {fi['median_abs']:.1%}, max {fi['max_abs']:.1%}, within 20% "
              f"{fi['within_target']:.0%} (committed fit: median {co['median_abs']:.1%}, max {co['max_abs']:.1%}, "
              f"within 20% {co['within_target']:.0%}); target met: {ts['target_met']}")
        print(f"  {rh['splits']} random halves: median |error| {rh['median_abs']:.1%}, p90 {rh['p90_abs']:.1%}, max "
              f"{rh['max_abs']:.1%}, within 20% {rh['within_target']:.0%}")
        print("  trials fitted -> |error| on the rest (median / p90 / within 20%): " + "; ".join(
            f"{n}: {v['median_abs']:.1%} / {v['p90_abs']:.1%} / {v['within_target']:.0%}"
            for n, v in s["trials_needed"].items()))
    for x in across:
        fi, co = x["fitted"], x["committed"]
        print(f"fit on {x['fit_on']}, predict {x['predicted']}: median |error| {fi['median_abs']:.1%}, max "
              f"{fi['max_abs']:.1%}, within 20% {fi['within_target']:.0%} (committed fit: median "
              f"{co['median_abs']:.1%}, within 20% {co['within_target']:.0%})")
    print(f"held-out within 20% on every trial of each time split: {result['target_met']} -> "
          f"{os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

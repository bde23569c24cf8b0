#!/usr/bin/env python
"""A warm worker's memory with glibc's malloc arenas capped (the trainer's `MALLOC_ARENAS`) and at glibc's default:
the same architecture trained again and again in one process, so any growth is the process's own.

Rounds alternate the two settings (each a fresh process of `--trials` trials of SpineNet-49, `--steps` steps, the
demo preset): RSS after each trial, its peak RSS, and its steady step (the cap must not slow it). The default is
glibc's 8 arenas per core, set explicitly (MALLOC_ARENA_MAX=8 x cores), which the trainer then leaves alone.

    python scripts/bench/malloc_arenas.py [--rounds 2] [--trials 3] [--steps 100] [--note TEXT]

Writes scripts/bench/results/malloc_arenas.json and prints a summary. Every TF process takes the shared CPU lock;
run it on an otherwise idle machine (it times the step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from scripts.bench.common import LOCK, machine, provenance, versions  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "malloc_arenas.json")

SERIES = r'''
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.config.schema import NasConfig
from nas.config.codec import resolve
from nas.config.presets import get_preset
from proxy_task.data import ensure_dataset
from proxy_task.trainer import run_trial
from search_space import SPINENET_49
steps, trials = int(sys.argv[1]), int(sys.argv[2])
cfg = resolve(NasConfig, get_preset("demo"), [f"proxy.train_steps={steps}", f"proxy.warmup_steps={steps // 4}"]).proxy
dataset = ensure_dataset(cfg.data)


def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024.0


for i in range(trials):
    r = run_trial(SPINENET_49.canonical(), cfg, dataset)
    m = r.metrics
    print(json.dumps({"trial": i, "rss_after_mb": rss_mb(), "peak_rss_mb": m.get("peak_rss_mb"),
                      "step_s": m.get("step_s"), "trace_s": m.get("trace_s"), "build_s": m.get("build_s"),
                      "eval_s": m.get("eval_s"), "ap": m.get("ap"), "error": r.error}), flush=True)
'''


def series(steps: int, trials: int, arenas: int | None) -> list[dict]:
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if arenas is not None:
        env["MALLOC_ARENA_MAX"] = str(arenas)
    proc = subprocess.run(["flock", LOCK, sys.executable, "-c", SERIES, str(steps), str(trials)], capture_output=True,
                          text=True, cwd=ROOT, env=env)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(rows) != trials or any(r["error"] for r in rows):
        raise SystemExit(f"the series failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return rows


def summary(rounds: list[list[dict]]) -> dict:
    """Growth per trial after the second (the first warm trial parses and keeps the validation batches) and the
    median steady step, over a setting's rounds."""
    rss_growth, peak_growth, steps = [], [], []
    for rows in rounds:
        later = rows[1:]
        if len(later) >= 2:
            rss_growth.append((later[-1]["rss_after_mb"] - later[0]["rss_after_mb"]) / (len(later) - 1))
            peak_growth.append((later[-1]["peak_rss_mb"] - later[0]["peak_rss_mb"]) / (len(later) - 1))
        steps += [r["step_s"] for r in rows]
    return {"rss_growth_mb_per_trial": statistics.mean(rss_growth) if rss_growth else None,
            "peak_growth_mb_per_trial": statistics.mean(peak_growth) if peak_growth else None,
            "median_step_s": statistics.median(steps), "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3, help="trials per process (at least 3)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    if args.trials < 3:
        parser.error("--trials must be at least 3 (growth is measured after the second trial)")
    head = {**provenance(__file__, argv), "note": args.note, "machine": machine(**versions())}
    default = 8 * (os.cpu_count() or 1)
    runs: dict[str, list[list[dict]]] = {"capped": [], "glibc_default": []}
    for k in range(args.rounds):
        for name, arenas in (("capped", None), ("glibc_default", default)):
            print(f"round {k + 1}: {name} ...", flush=True)
            runs[name].append(series(args.steps, args.trials, arenas))
    from proxy_task.trainer import MALLOC_ARENAS

    out = {**head, "steps": args.steps, "trials": args.trials, "capped_arenas": MALLOC_ARENAS,
           "default_arenas": default, "runs": runs, "summary": {name: summary(r) for name, r in runs.items()}}
    cap, base = out["summary"]["capped"], out["summary"]["glibc_default"]
    out["step_ratio_capped_over_default"] = cap["median_step_s"] / base["median_step_s"]
    out["machine"]["loadavg_after"] = list(os.getloadavg())
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    for name, s in out["summary"].items():
        print(f"{name:14s} RSS +{s['rss_growth_mb_per_trial']:.1f} MB/trial, peak +{s['peak_growth_mb_per_trial']:.1f} "
              f"MB/trial, median step {s['median_step_s']:.4f} s")
    print(f"step ratio capped/default {out['step_ratio_capped_over_default']:.3f} -> {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

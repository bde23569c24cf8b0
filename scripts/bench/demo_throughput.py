#!/usr/bin/env python
"""Architectures per hour of a demo search on this machine: one trial on all cores, or one trial per core.

Runs `spinenas search --preset demo` (the real proxy on the embedded data) for `--trials` trials in each layout of
`--layouts` (WORKERSxCPUS, default 1x2 and 2x1 on a 2-core machine) on the same seed, each in a fresh database,
and reports the wall seconds from the search's start to its end, the trials finished, their mean trial seconds and
parts (build, trace, train, evaluation, from the trials' own timings), and architectures per hour. A trial's
TensorFlow threads follow its CPUs (intra-op = CPUs), so 2x1 runs two single-threaded trials side by side: their
Python-bound parts (build, trace) overlap instead of leaving a core idle.

    python scripts/bench/demo_throughput.py [--trials 8] [--layouts 1x2,2x1] [--runner local] [--set KEY=VALUE]

Needs an otherwise idle machine (it times CPU). Writes scripts/bench/results/demo_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from scripts.bench.common import machine, provenance  # noqa: E402

OUT = os.path.join(ROOT, "scripts", "bench", "results", "demo_throughput.json")
PARTS = ("build_s", "trace_s", "train_s", "eval_s", "step_s")


def _layout(text: str) -> tuple[int, float]:
    workers, _, cpus = text.partition("x")
    try:
        w, c = int(workers), float(cpus)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WORKERSxCPUS such as 2x1, got {text!r}") from None
    if w < 1 or c <= 0:
        raise argparse.ArgumentTypeError(f"expected workers >= 1 and CPUs > 0, got {text!r}")
    return w, c


def run_layout(workers: int, cpus: float, trials: int, runner: str, sets: list[str], tmp: str) -> dict[str, Any]:
    from results_db import ResultReader

    db = os.path.join(tmp, f"w{workers}c{cpus:g}.db")
    argv = [sys.executable, "-m", "nas.cli", "search", "--preset", "demo", "--name", "tp", "--db", db,
            "--run-dir", os.path.join(tmp, f"run-w{workers}"), "--trials", str(trials), "--workers", str(workers),
            "--cpus-per-trial", f"{cpus:g}", "--runner", runner, "--seed", "0", "--top", "0", "--plain"]
    for s in sets:
        argv += ["--set", s]
    t0 = time.perf_counter()
    rc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    with ResultReader(db) as reader:
        done = [t for t in reader.trials("tp") if t.status in ("completed", "pruned")]
    parts = {p: statistics.fmean(float(t.metrics.get(p, 0.0)) for t in done) if done else None for p in PARTS}
    trial_s = statistics.fmean(float(t.wall_s or 0.0) for t in done) if done else None
    return {"workers": workers, "cpus_per_trial": cpus, "exit_code": rc, "wall_s": round(wall, 1),
            "trials": len(done), "mean_trial_s": trial_s, "mean_parts_s": parts,
            "archs_per_hour": round(len(done) / wall * 3600, 1) if wall > 0 else None,
            "best_ap": max((float(t.metrics.get("ap", 0.0)) for t in done), default=None)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--layouts", default="1x2,2x1", help="WORKERSxCPUS, comma-separated (default 1x2,2x1)")
    parser.add_argument("--runner", default="local", choices=("local", "ray"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--note", default="", help="recorded with the figures (e.g. whether the machine was idle)")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    try:
        layouts = [_layout(x) for x in args.layouts.split(",")]
    except argparse.ArgumentTypeError as e:
        parser.error(f"--layouts: {e}")
    if args.trials < 1:
        parser.error(f"--trials: expected >= 1, got {args.trials}")
    doc: dict[str, Any] = {**provenance(__file__, argv), "machine": machine(), "note": args.note,
                           "trials": args.trials, "sets": args.set, "layouts": []}
    with tempfile.TemporaryDirectory(prefix="demo-throughput-") as tmp:
        for workers, cpus in layouts:
            row = run_layout(workers, cpus, args.trials, args.runner, args.set, tmp)
            doc["layouts"].append(row)
            parts = " ".join(f"{k[:-2]} {v:.1f}" for k, v in row["mean_parts_s"].items() if v is not None)
            print(f"{workers}x{cpus:g}: {row['trials']} trials in {row['wall_s']:.0f} s = {row['archs_per_hour']} "
                  f"archs/h; mean trial {row['mean_trial_s'] or 0:.0f} s ({parts}); best AP {row['best_ap']}",
                  flush=True)
    base = doc["layouts"][0]["archs_per_hour"] or 0
    for row in doc["layouts"][1:]:
        row["speedup_vs_first"] = round(row["archs_per_hour"] / base, 3) if base and row["archs_per_hour"] else None
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    print(f"-> {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

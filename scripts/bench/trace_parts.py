#!/usr/bin/env python
"""Where a proxy trial's fixed cost goes, finer than `proxy.py`, and what TensorFlow's options buy.

Each configuration runs `--trials` trials of SpineNet-49 (`--steps` steps of the demo preset) one after another in
one fresh process, as a warm worker runs them (the first is the fresh one), with Model Garden's calls timed inside
`run_trial`: the model build, the optimizer's slots, the input pipelines, the Python trace of `train_step` and of
`validation_step`, the COCO evaluator's reduction; and the trial's own parts (build_s, trace_s, eval_s, step_s).
What `trace_s` holds beyond the Python trace is Grappler's graph optimization, the function's instantiation and the
first step's run. The configurations change one thing each:

- `grappler:{...}`: `tf.config.optimizer.set_experimental_options` before the first op (e.g. one optimizer off, or
  `disable_meta_optimizer`): how much of the trace each optimizer costs, and what the steady step loses without it;
- `gc:disable` / `gc:freeze`: Python's cyclic garbage collector off, or the imported objects frozen out of it: what
  the collector costs the build and the Python traces.

    python scripts/bench/trace_parts.py [--steps 60] [--trials 1] [--config default --config 'grappler:{...}' ...]
        [--note TEXT]

Writes scripts/bench/results/trace_parts.json and prints one line per trial. A configuration may be given more than once
(`--config default` between the others): it is compared by the median of its runs, since the first process of a run of
this script runs colder than the rest (the default list starts and ends with it). Every process takes the shared CPU
lock; time it on an otherwise idle machine (step_s over 60 steps is good to ~5%).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from scripts.bench.common import LOCK, machine, provenance, versions  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "trace_parts.json")

DEFAULT_CONFIGS = [
    "default",
    'grappler:{"disable_meta_optimizer": true}',
    *(f'grappler:{{"{name}": false}}' for name in (
        "layout_optimizer", "constant_folding", "arithmetic_optimization", "remapping", "dependency_optimization",
        "loop_optimization", "shape_optimization", "function_optimization", "implementation_selector")),
    "gc:disable",
    "gc:freeze",
    "default",
]

# One configuration's trials in one process: a JSON line per trial.
CHILD = r'''
import collections, functools, gc, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.config.schema import NasConfig
from nas.config.codec import resolve
from nas.config.presets import get_preset
from proxy_task import trainer
from proxy_task.data import ensure_dataset
from search_space import SPINENET_49
config, steps, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = resolve(NasConfig, get_preset("demo"), [f"proxy.train_steps={steps}",
                                              f"proxy.warmup_steps={steps // 4}"]).proxy
dataset = ensure_dataset(cfg.data)
import tensorflow as tf
from official.vision.tasks import retinanet
kind, _, value = config.partition(":")
if kind == "grappler":
    tf.config.optimizer.set_experimental_options(json.loads(value))
elif kind == "gc" and value == "disable":
    gc.disable()
elif kind == "gc" and value == "freeze":
    gc.collect()
    gc.freeze()
elif kind != "default":
    raise SystemExit(f"unknown configuration {config!r}")
parts = collections.defaultdict(float)


def timed(owner, name, label):
    f = getattr(owner, name)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        t0 = time.time()
        try:
            return f(*args, **kwargs)
        finally:
            parts[label] += time.time() - t0

    setattr(owner, name, wrapper)


Task = retinanet.RetinaNetTask
for owner, name, label in ((Task, "build_model", "build_model_s"), (trainer, "_create_optimizer_slots", "slots_s"),
                           (Task, "build_inputs", "build_inputs_s"), (Task, "train_step", "train_step_python_s"),
                           (Task, "validation_step", "val_step_python_s"),
                           (Task, "reduce_aggregated_logs", "coco_reduce_s")):
    timed(owner, name, label)
for i in range(trials):
    parts.clear()
    r = trainer.run_trial(SPINENET_49.canonical(), cfg, dataset)
    row = {k: r.metrics.get(k) for k in ("worker_trial", "build_s", "trace_s", "eval_s", "step_s", "ap")}
    row.update(parts={k: round(v, 3) for k, v in parts.items()}, error=r.error, wall_s=r.wall_s)
    print(json.dumps(row), flush=True)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="steps of each trial")
    parser.add_argument("--trials", type=int, default=1, help="trials per configuration, in one process")
    parser.add_argument("--config", action="append", help="a configuration (repeatable; default: all of them)")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran meanwhile)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    configs = args.config or DEFAULT_CONFIGS
    doc: dict = {**provenance(__file__, None), "note": args.note, "steps": args.steps, "trials": args.trials,
                 "machine": machine(**versions("tensorflow", "tf-models-official")), "runs": []}
    for config in configs:
        t0 = time.time()
        proc = subprocess.run(["flock", LOCK, sys.executable, "-c", CHILD, config, str(args.steps),
                               str(args.trials)], capture_output=True, text=True, cwd=ROOT)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or len(rows) != args.trials:
            raise SystemExit(f"configuration {config!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        doc["runs"].append({"config": config, "trials": rows, "process_s": time.time() - t0})
        for row in rows:
            print(json.dumps({"config": config, **row}), flush=True)
    # A configuration given more than once (e.g. default between the others) is compared by its median run: the
    # first process of a run of this script runs colder than the rest (the page cache), so one default alone is no
    # baseline.
    firsts: dict[str, list[dict]] = {}
    for run in doc["runs"]:
        firsts.setdefault(run["config"], []).append(run["trials"][0])
    doc["median_first_trial"] = {c: {k: statistics.median(t[k] for t in trials) for k in ("build_s", "trace_s",
                                                                                           "eval_s", "step_s")}
                                 for c, trials in firsts.items()}
    ref = doc["median_first_trial"].get("default")
    if ref:
        doc["against_default"] = {
            c: {"trace_s": m["trace_s"] - ref["trace_s"], "build_s": m["build_s"] - ref["build_s"],
                "step_ratio": m["step_s"] / ref["step_s"]}
            for c, m in doc["median_first_trial"].items() if c != "default"
        }
        print(json.dumps(doc["against_default"], indent=1))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

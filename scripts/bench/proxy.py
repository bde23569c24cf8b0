#!/usr/bin/env python
"""Speed and memory of the proxy task (issue 3, part 5).

In one run, on this machine:
1. Steady-state train step of a proxy trial (`spinenas proxy run`, our loop around Model Garden's
   `RetinaNetTask.train_step`) against a bare Model Garden train step of the same model: Model Garden's own
   `base_trainer.Trainer` (orbit) running `steps_per_loop` steps inside one tf.function. Target: at most 1.10x.
2. The fixed cost of a demo trial (process start, TF import, build, tracing, FLOPs count, evaluation) as a share of
   the whole trial. Target: at most 30%. Also images/s and achieved GFLOP/s (training ~ 3 forward passes).
3. Memory: `--memory-trials` short trials in a row, each in a fresh process (as the search runs them), with their
   peak RSS.

    python scripts/bench/proxy.py [--steps 120] [--memory-trials 10] [--memory-steps 20] [--skip-demo]

Writes scripts/bench/results/proxy.json and prints it. Every TF process takes the shared CPU lock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from search_space import SPINENET_49, SearchSpace  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "proxy.json")
LOCK = "/tmp/spinenas-cpu.lock"

BARE = r'''
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.presets import get_preset
from nas.config_io import resolve
from nas.config import NasConfig
from proxy_task.data import ensure_dataset
from proxy_task.trainer import build_experiment, configure_tensorflow
from search_space import SPINENET_49
steps = int(sys.argv[1])
cfg = resolve(NasConfig, get_preset("demo"), [f"proxy.train_steps={steps * 2 + 10}"]).proxy
dataset = ensure_dataset(cfg.data)
configure_tensorflow(cfg)
import tensorflow as tf
from official.core import base_trainer, task_factory, train_utils
exp = build_experiment(SPINENET_49.canonical(), cfg, dataset)
exp.override({"trainer": {"steps_per_loop": steps, "summary_interval": 10**9}}, is_strict=True)
task = task_factory.get_task(exp.task)
trainer = train_utils.create_trainer(exp, task, train=True, evaluate=False)
trainer.train(tf.convert_to_tensor(steps, tf.int32))  # trace + warm up
t0 = time.time()
trainer.train(tf.convert_to_tensor(steps, tf.int32))
dt = time.time() - t0
print(json.dumps({"bare_step_s": dt / steps, "steps": steps}))
'''


def _run(cmd: list[str]) -> dict:
    t0 = time.time()
    proc = subprocess.run(["flock", LOCK, *cmd], capture_output=True, text=True, cwd=ROOT)
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1] if "{" not in proc.stdout else
                         proc.stdout[proc.stdout.index("{"):])
    except (json.JSONDecodeError, ValueError, IndexError):
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    out["subprocess_s"] = time.time() - t0
    return out


def proxy_run(arch_json: str, overrides: list[str], steps: int | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(arch_json)
        path = fh.name
    cmd = [sys.executable, "-m", "nas.cli", "proxy", "run", "--arch", path, "--preset", "demo", "--json"]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    for o in overrides:
        cmd += ["--set", o]
    try:
        return _run(cmd)
    finally:
        os.unlink(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120, help="steps timed in the step comparison")
    parser.add_argument("--memory-trials", type=int, default=10)
    parser.add_argument("--memory-steps", type=int, default=20)
    parser.add_argument("--skip-demo", action="store_true", help="skip the full demo trial (fixed-cost share)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    doc: dict = {
        "command": "python scripts/bench/proxy.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    arch = SPINENET_49.canonical().to_json()

    print("[proxy bench] 1/3 step time: our loop vs Model Garden's trainer", flush=True)
    ours = proxy_run(arch, [], steps=args.steps + 1)
    bare = _run([sys.executable, "-c", BARE, str(args.steps)])
    doc["step"] = {
        "ours_step_s": ours["step_s"],
        "bare_step_s": bare["bare_step_s"],
        "ratio": ours["step_s"] / bare["bare_step_s"],
        "steps": args.steps,
        "target": 1.10,
    }
    doc["step"]["target_met"] = doc["step"]["ratio"] <= 1.10
    print(json.dumps(doc["step"]), flush=True)

    if not args.skip_demo:
        print("[proxy bench] 2/3 a full demo trial of SpineNet-49", flush=True)
        demo = proxy_run(arch, [])
        steady = demo["step_s"] * (demo["steps"] - 1)
        total = demo["process_s"]
        doc["demo_trial"] = {
            "process_s": total,
            "steady_train_s": steady,
            "fixed_s": total - steady,
            "fixed_share": (total - steady) / total,
            "parts_s": {k: demo.get(k) for k in ("import_s", "build_s", "trace_s", "flops_s", "eval_s")},
            "process_start_s": total - demo["wall_s"],
            "images_per_s": demo["images_per_s"],
            "gflops_per_s": demo.get("gflops_per_s"),
            "flops_per_image": demo["flops"],
            "params": demo["params"],
            "ap": demo["ap"],
            "error": demo["error"],
            "target_fixed_share": 0.30,
        }
        doc["demo_trial"]["target_met"] = doc["demo_trial"]["fixed_share"] <= 0.30 and demo["error"] is None
        doc["demo_trial"]["under_5_min"] = total <= 300
        print(json.dumps(doc["demo_trial"]), flush=True)

    print(f"[proxy bench] 3/3 memory: {args.memory_trials} trials in a row, fresh process each", flush=True)
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(7)
    mem = []
    for i in range(args.memory_trials):
        a = space.decode(space.random(rng))
        r = proxy_run(a.to_json(), [], steps=args.memory_steps)
        mem.append({"trial": i, "key": a.key, "peak_rss_mb": r["peak_rss_mb"], "params": r["params"],
                    "error": r["error"], "process_s": r.get("process_s")})
        print(json.dumps(mem[-1]), flush=True)
    rss = [m["peak_rss_mb"] for m in mem]
    doc["memory"] = {"trials": mem, "peak_rss_mb_max": max(rss), "peak_rss_mb_median": float(np.median(rss)),
                     "steps_per_trial": args.memory_steps}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(json.dumps({k: v for k, v in doc.items() if k != "memory"}, indent=2))
    print(json.dumps({k: v for k, v in doc["memory"].items() if k != "trials"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

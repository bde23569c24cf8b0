#!/usr/bin/env python
"""Speed and memory of the proxy task.

In one run, on this machine:
1. Steady-state train step of a proxy trial (`spinenas proxy run`, our loop around Model Garden's
   `RetinaNetTask.train_step`) against a bare Model Garden train step of the same model: Model Garden's own
   `base_trainer.Trainer` (orbit) running `steps_per_loop` steps inside one tf.function. Target: at most 1.10x.
2. The fixed cost of a trial (process start, TF import, build, the first step's trace, evaluation) by part, in a
   fresh worker and in a warm one (`search.reuse_workers`: `--warm-trials` trials of `--warm-steps` steps of
   SpineNet-49 in one process, as a warm worker runs them: the first is the fresh one), and its share of a full
   demo trial and of a 200-step trial. The floor is the trace of the first train step (a new architecture is a new
   graph); what remains above it is reported. Targets: a warm worker's fixed share at most 15% of a demo
   trial and at most 50% of a 200-step trial. Also one full demo trial in a fresh process (`spinenas proxy run`).
3. Memory: `--memory-trials` short trials of random architectures, each in a fresh process, then the same
   architectures one after another in one warm process: peak RSS of each, and the warm worker's growth (target:
   at most 10% over 10 trials), which sets `search.trials_per_worker`.

    python scripts/bench/proxy.py [--steps 120] [--warm-trials 3] [--warm-steps 200] [--memory-trials 10]
        [--memory-steps 20] [--skip-demo] [--skip-step] [--note TEXT]

Writes scripts/bench/results/proxy.json and prints it. Every TF process takes the shared CPU lock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from scripts.bench.common import LOCK, machine, provenance, versions  # noqa: E402
from search_space import SPINENET_49, SearchSpace  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "proxy.json")

BARE = r'''
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.config.presets import get_preset
from nas.config.codec import resolve
from nas.config.schema import NasConfig
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


# Trials one after another in one process, as a warm worker runs them: a JSON line per trial.
WARM = r'''
import json, os, sys, time
started_after_s = time.time() - float(sys.argv[3])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.config.schema import NasConfig
from nas.config.codec import resolve
from nas.config.presets import get_preset
from proxy_task.data import ensure_dataset
from proxy_task.trainer import run_trial
from search_space import ArchSpec
steps, archs = int(sys.argv[1]), json.load(open(sys.argv[2]))
# As `spinenas proxy run --steps` shortens a trial: the warmup scaled with it.
cfg = resolve(NasConfig, get_preset("demo"), [f"proxy.train_steps={steps}",
                                              f"proxy.warmup_steps={max(0, steps // 4)}"]).proxy
dataset = ensure_dataset(cfg.data)


def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024.0


for i, arch_json in enumerate(archs):
    arch = ArchSpec.from_json(arch_json)
    t0 = time.time()
    r = run_trial(arch, cfg, dataset)
    row = {k: r.metrics.get(k) for k in ("worker_trial", "import_s", "build_s", "trace_s", "eval_s", "step_s",
                                         "steps", "ap", "peak_rss_mb")}
    row.update(key=arch.key, wall_s=time.time() - t0, rss_after_mb=rss_mb(), error=r.error, params=r.params,
               flops=r.flops, started_after_s=started_after_s if i == 0 else 0.0)
    print(json.dumps(row), flush=True)
'''

PARTS = ("process_start_s", "import_s", "build_s", "trace_s", "eval_s")


def warm_series(arch_jsons: list[str], steps: int) -> list[dict]:
    """Runs the architectures one after another in one process (`WARM`): one row per trial."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(arch_jsons, fh)
        path = fh.name
    try:
        proc = subprocess.run(["flock", LOCK, sys.executable, "-c", WARM, str(steps), path, repr(time.time())],
                              capture_output=True, text=True, cwd=ROOT)
    finally:
        os.unlink(path)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(rows) != len(arch_jsons):
        raise SystemExit(f"the warm series failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return rows


def fixed_cost(row: dict) -> dict:
    """A trial's fixed cost by part, its sum, what is above the trace (the floor), and its share at 800 (the demo)
    and 200 steps with this row's steady step time."""
    parts = {"process_start_s": row.get("started_after_s", 0.0), **{k: row.get(k) or 0.0 for k in PARTS[1:]}}
    fixed = sum(parts.values())
    out = {"parts_s": parts, "fixed_s": fixed, "above_trace_floor_s": fixed - parts["trace_s"],
           "step_s": row["step_s"]}
    for name, n in (("demo_800", 800), ("steps_200", 200)):
        steady = row["step_s"] * (n - 1)
        out[f"fixed_share_{name}"] = fixed / (fixed + steady)
    return out


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
    parser.add_argument("--warm-trials", type=int, default=3, help="trials of the fresh/warm fixed-cost series")
    parser.add_argument("--warm-steps", type=int, default=200, help="steps of each trial of that series")
    parser.add_argument("--memory-trials", type=int, default=10)
    parser.add_argument("--memory-steps", type=int, default=20)
    parser.add_argument("--skip-demo", action="store_true", help="skip the full demo trial (fixed-cost share)")
    parser.add_argument("--skip-step", action="store_true", help="skip the step comparison with Model Garden's")
    parser.add_argument("--skip-fixed", action="store_true", help="skip the fresh/warm fixed-cost series")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran meanwhile)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    doc: dict = {**provenance(__file__, None), "note": args.note,
                 "machine": machine(**versions("tensorflow", "tf-models-official", "tf-keras"))}
    arch = SPINENET_49.canonical().to_json()

    if not args.skip_step:
        print("[proxy bench] step time: our loop vs Model Garden's trainer", flush=True)
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

    if not args.skip_fixed:
        print(f"[proxy bench] fixed cost: {args.warm_trials} trials of {args.warm_steps} steps in one process (the "
              "first fresh, the others warm)", flush=True)
        series = warm_series([arch] * args.warm_trials, args.warm_steps)
        fresh, warm = fixed_cost(series[0]), [fixed_cost(r) for r in series[1:]]
        doc["fixed_cost"] = {"steps": args.warm_steps, "trials": series, "fresh": fresh, "warm": warm,
                             "aps": [r["ap"] for r in series],
                             "targets": {"warm_share_demo_800": 0.15, "warm_share_steps_200": 0.50}}
        if warm:
            last = warm[-1]
            doc["fixed_cost"]["targets_met"] = {"warm_share_demo_800": last["fixed_share_demo_800"] <= 0.15,
                                                "warm_share_steps_200": last["fixed_share_steps_200"] <= 0.50}
        print(json.dumps({k: v for k, v in doc["fixed_cost"].items() if k != "trials"}), flush=True)

    if not args.skip_demo:
        print("[proxy bench] a full demo trial of SpineNet-49 in a fresh process", flush=True)
        demo = proxy_run(arch, [])
        steady = demo["step_s"] * (demo["steps"] - 1)
        total = demo["process_s"]
        doc["demo_trial"] = {
            "process_s": total,
            "steady_train_s": steady,
            "fixed_s": total - steady,
            "fixed_share": (total - steady) / total,
            "parts_s": {k: demo.get(k) for k in ("import_s", "build_s", "trace_s", "eval_s")},
            "process_start_s": total - demo["wall_s"],
            "images_per_s": demo["images_per_s"],
            "gflops_per_s": demo.get("gflops_per_s"),
            "flops_per_image": demo["flops"],
            "params": demo["params"],
            "ap": demo["ap"],
            "error": demo["error"],
        }
        doc["demo_trial"]["under_5_min"] = total <= 300
        print(json.dumps(doc["demo_trial"]), flush=True)

    print(f"[proxy bench] memory: {args.memory_trials} trials, each in a fresh process, then all in one warm "
          "process", flush=True)
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(7)
    archs = [space.decode(space.random(rng)) for _ in range(args.memory_trials)]
    mem = []
    for i, a in enumerate(archs):
        r = proxy_run(a.to_json(), [], steps=args.memory_steps)
        mem.append({"trial": i, "key": a.key, "peak_rss_mb": r["peak_rss_mb"], "params": r["params"],
                    "error": r["error"], "process_s": r.get("process_s")})
        print(json.dumps(mem[-1]), flush=True)
    one = warm_series([a.to_json() for a in archs], args.memory_steps)
    for row in one:
        print(json.dumps({k: row[k] for k in ("worker_trial", "key", "peak_rss_mb", "rss_after_mb", "wall_s")}),
              flush=True)
    rss = [m["peak_rss_mb"] for m in mem]
    warm_peaks = [r["peak_rss_mb"] for r in one]
    doc["memory"] = {
        "steps_per_trial": args.memory_steps,
        "fresh": {"trials": mem, "peak_rss_mb_max": max(rss), "peak_rss_mb_median": float(np.median(rss))},
        "warm": {"trials": one, "peak_rss_mb_first": warm_peaks[0], "peak_rss_mb_last": warm_peaks[-1],
                 "growth": warm_peaks[-1] / warm_peaks[0] - 1,
                 "over_fresh_max": warm_peaks[-1] / max(rss) - 1,
                 "rss_after_mb": [r["rss_after_mb"] for r in one]},
        "target_growth": 0.10,
    }
    doc["memory"]["target_met"] = doc["memory"]["warm"]["over_fresh_max"] <= 0.10
    doc["machine"]["loadavg_after"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(json.dumps({k: v for k, v in doc.items() if k not in ("memory", "fixed_cost")}, indent=2))
    print(json.dumps({k: v for k, v in doc["memory"].items() if k not in ("fresh", "warm")}))
    print(json.dumps({k: v for k, v in doc["memory"]["warm"].items() if k != "trials"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Does the proxy reward tell architectures apart?

Trains SpineNet-49, a deliberately poor architecture (every intermediate block moved to level 7) and 4 random
architectures of the spinenet49 space with the `demo` preset, `--seeds` seeds each, every trial a fresh
`spinenas proxy run` process (as in a search). Reports each AP, the seed-to-seed std (pooled over architectures),
the spread between architectures (max - min of the per-architecture mean AP) and their ratio. One trial is repeated
with the same seed to show whether a trial is deterministic.

Targets: spread >= 3 x seed std, and SpineNet-49 beats the poor architecture.

    python scripts/bench/reward_signal.py [--seeds 3] [--random 4] [--preset demo] [--set KEY=VALUE ...]

Results go to scripts/bench/results/reward_signal.json (updated after every trial; a rerun with the same settings
skips the trials already there). Heavy runs take the shared CPU lock /tmp/spinenas-cpu.lock per trial.
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

from nas.calibration.study import poor_arch  # noqa: E402
from nas.calibration.stats import pooled_std, seed_noise  # noqa: E402
from scripts.bench.common import LOCK  # noqa: E402
from search_space import SPINENET_49, ArchSpec, SearchSpace  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "reward_signal.json")


def archs(n_random: int, seed: int) -> dict[str, ArchSpec]:
    out = {"spinenet-49": SPINENET_49.canonical(), "poor-all-L7": poor_arch()}
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        out[f"random-{i}"] = space.decode(space.random(rng))
    return out


def run_trial(arch: ArchSpec, seed: int, preset: str, overrides: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(arch.to_json())
        path = fh.name
    cmd = ["flock", LOCK, sys.executable, "-m", "nas.cli", "proxy", "run", "--arch", path, "--preset", preset,
           "--seed", str(seed), "--json"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    os.unlink(path)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {"ap": None, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    out["subprocess_s"] = round(time.time() - t0, 1)
    return out


def summarize(runs: list[dict], names: list[str]) -> dict:
    """Per-architecture seed noise and the pooled seed std, as `spinenas calibrate` computes them
    (`nas.calibration.stats.seed_noise`, `pooled_std`), and the spread of the architectures' means against it."""
    per_arch = {}
    noises = []
    for name in names:
        aps = [r["ap"] for r in runs if r["arch"] == name and not r.get("repeat") and r.get("ap") is not None
               and r.get("error") is None]
        if not aps:
            continue
        noise = seed_noise(aps)
        noises.append(noise)
        per_arch[name] = {"aps": aps, "mean": noise.mean, "std": noise.std if noise.std is not None else float("nan")}
    means = [v["mean"] for v in per_arch.values()]
    seed_std = pooled_std(noises)
    seed_std = float("nan") if seed_std is None else seed_std
    spread = max(means) - min(means) if means else float("nan")
    summary = {
        "per_arch": per_arch,
        "pooled_seed_std": seed_std,
        "spread": spread,
        "between_arch_std": float(np.std(means, ddof=1)) if len(means) > 1 else float("nan"),
        "spread_over_seed_std": spread / seed_std if seed_std and seed_std > 0 else float("inf"),
    }
    if "spinenet-49" in per_arch and "poor-all-L7" in per_arch:
        summary["spinenet49_beats_poor"] = per_arch["spinenet-49"]["mean"] > per_arch["poor-all-L7"]["mean"]
    summary["target_met"] = bool(summary["spread_over_seed_std"] >= 3 and summary.get("spinenet49_beats_poor"))
    repeats = [r for r in runs if r.get("repeat")]
    if repeats:
        first = [r for r in runs if r["arch"] == repeats[0]["arch"] and r["seed"] == repeats[0]["seed"]
                 and not r.get("repeat")]
        if first:
            summary["repeat"] = {"arch": repeats[0]["arch"], "seed": repeats[0]["seed"], "ap_first": first[0]["ap"],
                                 "ap_repeat": repeats[0]["ap"],
                                 "deterministic": first[0]["ap"] == repeats[0]["ap"]}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--random", type=int, default=4, help="random architectures from the spinenet49 space")
    parser.add_argument("--arch-seed", type=int, default=2026, help="seed drawing the random architectures")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-repeat", action="store_true", help="skip the determinism repeat")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()

    chosen = archs(args.random, args.arch_seed)
    settings = {"seeds": args.seeds, "random": args.random, "arch_seed": args.arch_seed, "preset": args.preset,
                "set": args.set}
    doc = {"settings": settings, "runs": []}
    if os.path.exists(args.out):
        with open(args.out) as fh:
            old = json.load(fh)
        if old.get("settings") == settings:
            doc = old
    doc["command"] = "python scripts/bench/reward_signal.py " + " ".join(sys.argv[1:])
    doc["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    doc["archs"] = {name: {"key": a.key, "summary": a.summary()} for name, a in chosen.items()}

    plan = [(name, seed, False) for seed in range(args.seeds) for name in chosen]
    if not args.no_repeat:
        plan.append(("spinenet-49", 0, True))
    for name, seed, repeat in plan:
        if any(r["arch"] == name and r["seed"] == seed and bool(r.get("repeat")) == repeat for r in doc["runs"]):
            continue
        print(f"[reward_signal] {name} seed {seed}{' (repeat)' if repeat else ''} ...", flush=True)
        out = run_trial(chosen[name], seed, args.preset, args.set)
        out.update(arch=name, seed=seed, repeat=repeat)
        print(f"[reward_signal]   AP {out.get('ap')}  wall {out.get('wall_s')} s  error {out.get('error')}",
              flush=True)
        doc["runs"].append(out)
        doc["summary"] = summarize(doc["runs"], list(chosen))
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out + ".tmp", "w") as fh:
            json.dump(doc, fh, indent=2)
        os.replace(args.out + ".tmp", args.out)

    doc["summary"] = summarize(doc["runs"], list(chosen))
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    s = doc["summary"]
    print(json.dumps({k: v for k, v in s.items() if k != "per_arch"}, indent=2))
    for name, v in s["per_arch"].items():
        print(f"  {name:14s} mean AP {v['mean']:.4f}  std {v['std']:.4f}  {['%.4f' % a for a in v['aps']]}")
    return 0 if s.get("target_met") else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The trial-cost model's CPU constants, fitted and checked: `nas.export.cost`.

1. Fit, on SpineNet-49 at 128 px alone, after one short discarded run (the first TensorFlow process after a while
   reads its libraries from a cold disk cache: ~18 s more setup): one fresh `spinenas proxy run` at the demo's batch
   (`--steps` steps, an evaluation at half of them) for its setup (import, build, trace), the host's work per
   evaluated image and the first evaluation's one-off part; and fresh runs at other batch sizes (`--fit-batches`)
   whose steady steps, with the first's, give the per-step overhead and the sustained FLOP/s
   (`nas.export.cost.fit_cpu`).
2. Check: the same schedule on held-out architectures (random specs of the spinenet49 family, seeded) at 128 px
   and at larger sizes (`--sizes`), each in a fresh process: predicted against measured trial seconds. Target:
   within 20% on every one.
   With `--rounds N` every run of 1 and 2 is made N times, round after round, and the medians are fitted and
   checked (this machine's step time drifts ~20% between runs of one trial).
3. The step time of the 20 random architectures of `results/es-pool.db` (full demo trials of another day),
   predicted from their FLOPs with the fitted rate: how far the FLOPs alone explain an architecture's step.

    python scripts/bench/trial_cost.py [--steps 200] [--fit-batches 4,16] [--fit-steps 100] [--random 3]
        [--sizes 256] [--large-random 1] [--rounds 1] [--note TEXT]

Writes scripts/bench/results/trial_cost.json and prints the table. Every TF process takes the shared CPU lock; run
it on an otherwise idle machine (it is a timing benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from nas.export import cost as trial_cost  # noqa: E402
from scripts.bench.common import machine, provenance, versions  # noqa: E402
from scripts.bench.proxy import proxy_run  # noqa: E402
from search_space import SPINENET_49, ArchSpec, SearchSpace  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "trial_cost.json")
POOL_DB = os.path.join(ROOT, "scripts", "bench", "results", "es-pool.db")
VAL_IMAGES = 300  # the demo's proxy-val split
BATCH = 8


def run_arch(arch: ArchSpec, *, steps: int, image_size: int, batch_size: int = BATCH, mid_eval: bool = True) -> dict:
    """One fresh `spinenas proxy run --json` of `arch` (`scripts/bench/proxy.py`'s runner, under the CPU lock): its
    flat result, curve included, with an evaluation at half its steps (unless not `mid_eval`)."""
    evals = f"[{steps // 2}]" if mid_eval else "[]"
    return proxy_run(arch.to_json(), [f"proxy.eval_at_steps={evals}", f"proxy.image_size={image_size}",
                                      f"proxy.batch_size={batch_size}"], steps=steps)


def measured_parts(run: dict) -> dict:
    """A run's parts as the model splits them: setup, training, first and last evaluation, and the whole trial."""
    evals = [p["eval_s"] for p in run.get("curve", []) if "eval_s" in p]
    first, last = (evals[0], evals[-1]) if len(evals) >= 2 else (run["eval_s"], run["eval_s"])
    # What the trial's own timers leave out of its wall (report calls; releasing TensorFlow is also timed, as
    # release_s): a second or two normally; the stalls seen are in the README's Benchmarks row of this script.
    other = run["wall_s"] - (run["import_s"] + run["build_s"] + run["train_s"] + sum(evals or [run["eval_s"]]))
    return {"setup_s": run["import_s"] + run["build_s"] + run["trace_s"], "step_s": run["step_s"],
            "train_s": run["train_s"], "first_eval_s": first, "later_eval_s": last, "trial_s": run["wall_s"],
            "evaluations": len(evals), "other_s": other, "release_s": run.get("release_s")}


def median_parts(rounds: list[dict]) -> dict:
    """Each part's median over the rounds, each on its own (so with an even number of rounds, or a stall in one
    round, the parts need not add up to the trial); a part missing from a round is left out of its median; the
    evaluation count is the first round's."""
    out = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds if r.get(key) is not None]
        out[key] = float(np.median(values)) if values else None
    out["evaluations"] = rounds[0]["evaluations"]
    return out


def pool_steps(device: trial_cost.Device) -> list[dict]:
    """Predicted against measured step seconds of the es-pool search's completed trials."""
    con = sqlite3.connect(f"file:{POOL_DB}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT t.arch_key, t.metrics, a.flops FROM trials t JOIN archs a ON a.key = t.arch_key "
                           "WHERE t.status = 'completed' ORDER BY t.id").fetchall()
    finally:
        con.close()
    out = []
    for key, metrics, flops in rows:
        step = json.loads(metrics)["step_s"]
        predicted = device.step_s(flops=flops, batch_size=BATCH)
        out.append({"key": key, "flops": flops, "measured_step_s": step, "predicted_step_s": predicted,
                    "error": trial_cost.relative_error(predicted, step)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps of every run (evaluated at half)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of the discarded first run (0: none)")
    parser.add_argument("--fit-batches", default="4,16", help="other batch sizes of the fit's steps "
                        "(comma-separated; empty: the rate from the demo's batch alone, no overhead)")
    parser.add_argument("--fit-steps", type=int, default=100, help="training steps of each of those runs")
    parser.add_argument("--random", type=int, default=3, help="held-out random architectures at 128 px")
    parser.add_argument("--sizes", default="256", help="larger image sizes checked (comma-separated)")
    parser.add_argument("--large-random", type=int, default=1, help="random architectures at each larger size "
                        "(besides SpineNet-49)")
    parser.add_argument("--rounds", type=int, default=1, help="times every run is repeated (one after the other: "
                        "medians are fitted and checked)")
    parser.add_argument("--seed", type=int, default=18, help="seed of the random architectures")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fit_batches = [int(b) for b in args.fit_batches.split(",") if b]
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    head = {**provenance(__file__, argv), "note": args.note, "machine": machine(**versions())}
    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(args.seed)
    randoms = [space.decode(space.random(rng)) for _ in range(max(args.random, args.large_random))]
    plan = [("spinenet-49", SPINENET_49.canonical(), 128)]
    plan += [(f"random {i}", a, 128) for i, a in enumerate(randoms[:args.random])]
    for size in sizes:
        plan.append(("spinenet-49", SPINENET_49.canonical(), size))
        plan += [(f"random {i}", a, size) for i, a in enumerate(randoms[:args.large_random])]

    s49 = SPINENET_49.canonical()
    if args.warmup_steps:
        print(f"warm-up (discarded): spinenet-49 at 128 px, {args.warmup_steps} steps ...", flush=True)
        run_arch(s49, steps=args.warmup_steps, image_size=128)
    # Rounds: every run of the fit and of the check once a round, the rounds one after the other, so the machine's
    # drift over minutes (a trial's step here moves ~20% between runs) spreads over all of them; the medians count.
    fit_rounds: dict[int, list[dict]] = {b: [] for b in fit_batches}
    run_rounds: list[list[dict]] = [[] for _ in plan]
    first: list[dict] = [{} for _ in plan]
    for k in range(args.rounds):
        tag = f"round {k + 1}/{args.rounds}: " if args.rounds > 1 else ""
        for batch in fit_batches:
            print(f"{tag}fit: spinenet-49 at 128 px, batch {batch}: {args.fit_steps} steps ...", flush=True)
            r = run_arch(s49, steps=args.fit_steps, image_size=128, batch_size=batch, mid_eval=False)
            fit_rounds[batch].append(measured_parts(r))
        for i, (name, arch, size) in enumerate(plan):
            print(f"{tag}{name} ({arch.key}) at {size} px: {args.steps} steps ...", flush=True)
            r = run_arch(arch, steps=args.steps, image_size=size)
            run_rounds[i].append(measured_parts(r))
            first[i] = first[i] or {"flops": r["flops"], "ap": r.get("ap")}
    fit_runs = [{"batch_size": b, "steps": args.fit_steps, "measured": median_parts(fit_rounds[b]),
                 "rounds": fit_rounds[b]} for b in fit_batches]
    runs = [{"name": name, "key": arch.key, "image_size": size, "flops": first[i]["flops"],
             "measured": median_parts(run_rounds[i]), "rounds": run_rounds[i], "ap": first[i]["ap"]}
            for i, (name, arch, size) in enumerate(plan)]

    ref = runs[0]
    m = ref["measured"]
    points = [(BATCH, m["step_s"])] + [(f["batch_size"], f["measured"]["step_s"]) for f in fit_runs]
    fitted = trial_cost.fit_cpu(flops=ref["flops"], batch_size=BATCH, step_points=points, setup_s=m["setup_s"],
                                first_eval_s=m["first_eval_s"], later_eval_s=m["later_eval_s"],
                                eval_images=VAL_IMAGES, source="SpineNet-49 at 128 px")
    # The model without the overhead (a rate from the demo's batch alone), for comparison.
    one_rate = trial_cost.fit_cpu(flops=ref["flops"], batch_size=BATCH, step_points=points[:1], setup_s=m["setup_s"],
                                  first_eval_s=m["first_eval_s"], later_eval_s=m["later_eval_s"],
                                  eval_images=VAL_IMAGES, source="SpineNet-49 at 128 px, batch 8 alone")
    for run in runs:
        run["one_rate_step_error"] = trial_cost.relative_error(
            one_rate.step_s(flops=run["flops"], batch_size=BATCH), run["measured"]["step_s"])
        p = trial_cost.predict(fitted, flops=run["flops"], batch_size=BATCH, train_steps=args.steps,
                               eval_images=VAL_IMAGES, evaluations=int(run["measured"]["evaluations"]))
        run["predicted"] = {"setup_s": p.setup_s, "train_s": p.train_s, "eval_s": p.eval_s, "trial_s": p.total_s,
                            "step_s": p.train_s / args.steps}
        run["error"] = trial_cost.relative_error(p.total_s, run["measured"]["trial_s"])
        run["step_error"] = trial_cost.relative_error(run["predicted"]["step_s"], run["measured"]["step_s"])
    held = runs[1:]
    pool = pool_steps(fitted) if os.path.exists(POOL_DB) else []
    result = {
        **head,
        "steps": args.steps,
        "rounds": args.rounds,
        "fit": {"train_flops_per_s": fitted.train_flops_per_s["float32"], "step_overhead_s": fitted.step_overhead_s,
                "setup_s": fitted.setup_s,
                "first_eval_s": fitted.first_eval_s, "host_s_per_eval_image": fitted.host_s_per_eval_image,
                "step_points": [{"batch_size": b, "step_s": t} for b, t in points]},
        "one_rate_train_flops_per_s": one_rate.train_flops_per_s["float32"],
        "fit_runs": fit_runs,
        "runs": runs,
        "held_out_max_abs_error": max(abs(r["error"]) for r in held) if held else None,
        "target": 0.2,
        "target_met": bool(held) and all(abs(r["error"]) <= 0.2 for r in held),
        "es_pool_steps": pool,
        "es_pool_step_max_abs_error": max(abs(p["error"]) for p in pool) if pool else None,
        "es_pool_step_median_abs_error": float(np.median([abs(p["error"]) for p in pool])) if pool else None,
    }
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    f = result["fit"]
    print("fit steps (batch: s): " + ", ".join(f"{p['batch_size']}: {p['step_s']:.3f}" for p in f["step_points"]))
    print(f"fit (SpineNet-49, 128 px): {f['step_overhead_s']:.3f} s a step + {f['train_flops_per_s'] / 1e9:.1f} "
          f"GFLOP/s, setup {f['setup_s']:.1f} s, "
          f"first evaluation +{f['first_eval_s']:.1f} s, host {f['host_s_per_eval_image'] * 1e3:.2f} ms/image")
    print(f"{'run':14s} {'px':>4s} {'GMACs':>6s} {'measured s':>10s} {'predicted s':>11s} {'error':>7s} "
          f"{'step err':>8s} {'other s':>7s} {'release s':>9s}")
    for r in runs:
        print(f"{r['name']:14s} {r['image_size']:4d} {r['flops'] / 1e9:6.2f} {r['measured']['trial_s']:10.1f} "
              f"{r['predicted']['trial_s']:11.1f} {r['error']:+7.1%} {r['step_error']:+8.1%} "
              f"{r['measured']['other_s']:7.1f} {r['measured'].get('release_s') or 0.0:9.1f}")
    if pool:
        print(f"es-pool steps (20 archs, another day): median |error| {result['es_pool_step_median_abs_error']:.1%}, "
              f"max {result['es_pool_step_max_abs_error']:.1%}")
    worst = result["held_out_max_abs_error"]
    print(f"held-out within 20%: {result['target_met']} (max {'-' if worst is None else f'{worst:.1%}'}) -> "
          f"{os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

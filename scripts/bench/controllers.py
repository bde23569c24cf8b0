#!/usr/bin/env python
"""How sample-efficient and how cheap are the controllers, and do they keep exploring?

Runs PPO, regularized evolution and random search on the TF-free surrogate evaluator, `--seeds` runs each, in
two parts (``--part``, both by default):

**proposals**: each run makes `--budget` proposals, one at a time, each fed its reward before the next (one worker;
`proxy_task.surrogate.SurrogateEvaluator`, noise `--noise`). An architecture proposed twice gets the same reward
(the noise is a function of the architecture, the target and the run's seed), as a search that reuses stored
results would. Reported per controller:

* ``best_at``: the best reward seen after 100/250/500/1000/2000 proposals (median over seeds);
* ``proposals_to_random_best``: proposals needed to reach random search's final best (the median over seeds of
  random search's best reward after the whole budget); the median over seeds, null when fewer than half of the
  seeds reach it; ``per_seed`` lists every seed's count;
* ``distinct_fraction``: distinct architectures (by key) over proposals, median over seeds;
* ``seconds_per_100``: controller time (`propose` + `feedback`, the evaluations excluded) per 100 proposals in
  steady state: measured over proposals 101..budget, so the one-time TensorFlow import and graph tracing (in the
  first 100) are excluded; median over seeds. The ``*_noiseless`` fields give the same on the noiseless AP;
* for PPO, ``trace``: every 10th update's entropy (nats per decision, on its batch before the update), entropy
  weight and clip fraction, and the new architectures among the proposals since the last row.

**trial-seconds**: each run is a search through the real `SearchDriver` and store on the simulated clock of
`scripts/bench/early_stopping.py` (its `ReplayRunner` and demo trial-cost model), with the search's surrogate
evaluator (curves shaped as that benchmark's ``shape`` chose, target seed `--target-seed`), one worker, until
the trial-seconds of `--budget` full trials of the reference architecture are spent; once without a scheduler and
once per `--asha` setting. The driver dedups, so a repeated proposal costs nothing and gets its stored reward (a
search also stops after 1,000 such trials in a row: converged, the budget not spent). Reported per controller and
setting: the median best reward (observed and noiseless), proposals, the distinct fraction, pruned trials and the
runs that converged.

**Targets** (budget 2000, 5 seeds, target seed 0, which no tuning used), each reported met or missed with its margin:
PPO's median best at least evolution's at equal trial-seconds, with and without ASHA; at least 80% of PPO's
proposals distinct (median over seeds), with the budget spent in every run; PPO's proposals to random search's
best at most evolution's (proposals part); and, as before, PPO and evolution reach random search's final best in
at most a third of the budget, and PPO's propose + feedback for 100 proposals takes under 1 s.

    python scripts/bench/controllers.py --space spinenet49 --budget 2000 --seeds 5 --target-seed 0 \\
        [--noise 0.02] [--part proposals|trial-seconds] [--asha 400:3] [--ppo learning_rate=0.01 ...] [--json]

Results go to scripts/bench/results/controllers_<space>_b<budget>_s<seeds>_t<target>_n<noise>[_<part>][_<tag>].json
with the machine, the commit and the command; they are also printed (as the JSON summary with --json). `--ppo`
overrides PPOConfig fields (``controller.ppo.*``) in both parts, e.g. the settings before the exploration fix:
``--ppo center_advantages=false entropy_target=null dedup_attempts=1``. Each (controller, seed) run takes the
shared CPU lock /tmp/spinenas-cpu.lock while it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from controller import PPOConfig, build_controller, get_config_class  # noqa: E402
from proxy_task.surrogate import SurrogateEvaluator  # noqa: E402
from scripts.bench.common import LOCK, machine, provenance  # noqa: E402

RESULTS_DIR = os.path.join(ROOT, "scripts", "bench", "results")
CONTROLLERS = ("ppo", "evolution", "random")
CHECKPOINTS = (100, 250, 500, 1000, 2000)
WARMUP = 100  # proposals excluded from the timing (TensorFlow import and tracing happen there)
TRACE_EVERY = 10  # updates between two rows of PPO's trace
DISTINCT_TARGET = 0.8
# The ASHA setting the early-stopping benchmark found best for the controllers (README: rung 400, eta 3).
DEFAULT_ASHA = ({"rungs": (400,), "eta": 3},)

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


def _config(name: str, ppo: Mapping[str, Any]) -> Any:
    return PPOConfig(**ppo) if name == "ppo" else get_config_class(name)()


# ------------------------------------------------------------------------------------------------ proposals part
def run_one(
    name: str, *, space: str, budget: int, seed: int, target_seed: int, noise: float, ppo: Mapping[str, Any],
    config: Any = None,
) -> dict[str, Any]:
    """One controller run of `budget` proposals: best-so-far curves (observed and noiseless), distinct
    architectures, the controller's time and (PPO) its trace. `config`: the controller's whole config, in place of
    its defaults (PPO's with `ppo`)."""
    evaluator = SurrogateEvaluator(target_seed=target_seed, noise=noise, seed=seed, family=space)
    ctrl = build_controller(name, evaluator.space, seed=seed, config=config or _config(name, ppo))
    best, best_clean = -np.inf, -np.inf
    curve, curve_clean = [], []
    controller_s = 0.0
    timed_s = 0.0
    keys: set[str] = set()
    trace: list[list[float]] = []
    new_since = 0
    start = time.perf_counter()
    while ctrl.num_proposed < budget:
        updates = getattr(ctrl, "num_updates", 0)
        t0 = time.perf_counter()
        (proposal,) = ctrl.propose(1)
        t1 = time.perf_counter()
        arch = evaluator.space.decode(proposal.decisions)
        result = evaluator.evaluate(arch)
        new_since += arch.key not in keys
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
        if getattr(ctrl, "num_updates", 0) > updates and ctrl.num_updates % TRACE_EVERY == 0:
            s = ctrl.last_update_stats
            trace.append([ctrl.num_proposed, round(s["entropy_before"], 4), float(f"{s['entropy_weight']:.4g}"),
                          round(s["clip_fraction"], 3), new_since])
            new_since = 0
    out = {
        "curve": curve,
        "curve_noiseless": curve_clean,
        "controller_s": controller_s,
        "seconds_per_100": timed_s / max(budget - WARMUP, 1) * 100,
        "unique_archs": len(keys),
        "wall_s": time.perf_counter() - start,
    }
    if name == "ppo":
        out["trace"] = trace
    return out


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


def proposals_part(
    *, space: str, budget: int, seeds: int, target_seed: int, noise: float, ppo: Mapping[str, Any]
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in ("random", "evolution", "ppo"):  # random first: its final best is the others' target
        runs[name] = []
        for seed in range(seeds):
            with _CpuLock():
                r = run_one(name, space=space, budget=budget, seed=seed, target_seed=target_seed, noise=noise,
                            ppo=ppo)
            runs[name].append(r)
            logger.info(
                "proposals %-9s seed %d: best %.4f (noiseless %.4f), %d distinct, controller %.1f s, wall %.1f s",
                name, seed, r["curve"][-1], r["curve_noiseless"][-1], r["unique_archs"], r["controller_s"],
                r["wall_s"],
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
            "distinct_fraction": round(statistics.median(r["unique_archs"] / budget for r in rs), 4),
            "config": dataclasses.asdict(_config(name, ppo)),
        }
        if name == "ppo":
            controllers[name]["trace"] = {str(seed): r["trace"] for seed, r in enumerate(rs)}
    return {
        "random_best": round(random_best, 5),
        "random_best_noiseless": round(random_best_clean, 5),
        "optimum": SurrogateEvaluator(target_seed=target_seed, family=space).optimum_value,
        "controllers": controllers,
    }


# ------------------------------------------------------------------------------------------------ trial-seconds part
def _label(setting: Mapping[str, Any] | None) -> str:
    if setting is None:
        return "none"
    return "asha rungs " + ",".join(map(str, setting["rungs"])) + f" eta {setting['eta']}"


def _search_run(
    es: Any, name: str, *, space: str, seed: int, target_seed: int, surrogate: Mapping[str, float], cost: Any,
    budget_s: float, asha: Mapping[str, Any] | None, ppo: Mapping[str, Any],
) -> dict[str, Any]:
    over = [f"search.trials={10**6}", "search.workers=1", f"search.seed={seed}", f"search.family={space}",
            f"controller.type={name}", "evaluator.type=surrogate", f"evaluator.surrogate.noise={surrogate['noise']}",
            f"evaluator.surrogate.rate_spread={surrogate['rate_spread']}",
            f"evaluator.surrogate.target_seed={target_seed}"]
    over += [f"controller.ppo.{k}={json.dumps(v)}" for k, v in ppo.items()] if name == "ppo" else []
    if asha is not None:
        over += es.asha_overrides(asha)
    cfg = es.search_config(over)
    t0 = time.perf_counter()
    outcome, runner, done = es.run_search(cfg, es.surrogate_source(cfg), cost, budget_s=budget_s,
                                          converged_after=es.CONVERGED_AFTER)
    completed = [t for t in done if t.status == "completed"]
    best = max(completed, key=lambda t: t.reward)
    distinct = len({t.arch_key for t in done})
    return {"controller": name, "seed": seed, "setting": _label(asha),
            "budget_spent": runner.spent() >= budget_s, "trials": len(done), "completed": len(completed),
            "pruned": outcome.pruned, "cached": outcome.cached, "distinct_archs": distinct,
            "distinct_fraction": round(distinct / max(len(done), 1), 4), "trial_s": round(runner.spent(), 1),
            "best_reward": best.reward, "best_noiseless": best.metrics.get("ap_noiseless"),
            "best_key": best.arch_key, "wall_s": round(time.perf_counter() - t0, 1)}


def trial_seconds_part(
    *, space: str, budget: int, seeds: int, target_seed: int, asha: Sequence[Mapping[str, Any]],
    ppo: Mapping[str, Any],
) -> dict[str, Any]:
    from scripts.bench import early_stopping as es

    with open(os.path.join(RESULTS_DIR, "early_stopping_shape.json"), encoding="utf-8") as fh:
        chosen = json.load(fh)["chosen"]
    surrogate = {"noise": chosen["noise"], "rate_spread": chosen["rate_spread"]}
    cost = es.TrialCost.from_proxy_bench()
    budget_s = budget * cost.trial(cost.ref_flops, es.POOL_STEPS[-1], 1)
    runs = []
    for setting in (None, *asha):
        for name in CONTROLLERS:
            for seed in range(seeds):
                with _CpuLock():
                    r = _search_run(es, name, space=space, seed=seed, target_seed=target_seed, surrogate=surrogate,
                                    cost=cost, budget_s=budget_s, asha=setting, ppo=ppo)
                runs.append(r)
                logger.info("trial-seconds %-9s seed %d %s: best %.4f, %d trials (%.0f%% distinct, %d pruned)%s, "
                            "%.0f s", name, seed, r["setting"], r["best_reward"], r["trials"],
                            100 * r["distinct_fraction"], r["pruned"], "" if r["budget_spent"] else " CONVERGED",
                            r["wall_s"])
    summary: dict[str, Any] = {}
    for setting in (None, *asha):
        label = _label(setting)
        summary[label] = {}
        for name in CONTROLLERS:
            rs = [r for r in runs if r["controller"] == name and r["setting"] == label]
            summary[label][name] = {
                "median_best_reward": round(statistics.median(r["best_reward"] for r in rs), 5),
                "median_best_noiseless": round(statistics.median(r["best_noiseless"] for r in rs), 5),
                "median_trials": statistics.median(r["trials"] for r in rs),
                "median_distinct_fraction": round(statistics.median(r["distinct_fraction"] for r in rs), 4),
                "min_distinct_fraction": min(r["distinct_fraction"] for r in rs),
                "median_pruned": statistics.median(r["pruned"] for r in rs),
                "converged_runs": sum(not r["budget_spent"] for r in rs),
            }
    return {"surrogate": {**surrogate, "target_seed": target_seed}, "cost_model": dataclasses.asdict(cost),
            "budget_s": round(budget_s, 1),
            "budget": f"the trial-seconds of {budget} trials of the reference architecture trained to the end; a "
                      f"search also stops after {es.CONVERGED_AFTER} cached trials in a row (budget_spent false)",
            "summary": summary, "runs": runs}


# ------------------------------------------------------------------------------------------------ targets
def targets(doc: Mapping[str, Any], budget: int) -> dict[str, dict[str, Any]]:
    """Each target: met or not, the measured values and the margin (positive: by how much it is met)."""
    out: dict[str, dict[str, Any]] = {}
    prop = doc.get("proposals")
    if prop is not None:
        c = prop["controllers"]
        ppo_n, evo_n = c["ppo"]["proposals_to_random_best"], c["evolution"]["proposals_to_random_best"]
        ppo_v = float("inf") if ppo_n is None else ppo_n
        evo_v = float("inf") if evo_n is None else evo_n
        out["ppo_to_random_best_le_evolution"] = {
            "met": ppo_v <= evo_v, "ppo": ppo_n, "evolution": evo_n,
            "margin": None if ppo_n is None or evo_n is None else evo_n - ppo_n}
        for name in ("ppo", "evolution"):
            n = c[name]["proposals_to_random_best"]
            out[f"{name}_reaches_random_best_in_a_third"] = {
                "met": n is not None and n <= budget / 3, "value": n, "limit": round(budget / 3, 1),
                "margin": None if n is None else round(budget / 3 - n, 1)}
        s = c["ppo"]["seconds_per_100"]
        out["ppo_propose_feedback_100_under_1s"] = {"met": s < 1.0, "value": s, "margin": round(1.0 - s, 4)}
        out["ppo_distinct_ge_80pct_proposals"] = {
            "met": c["ppo"]["distinct_fraction"] >= DISTINCT_TARGET, "value": c["ppo"]["distinct_fraction"],
            "margin": round(c["ppo"]["distinct_fraction"] - DISTINCT_TARGET, 4)}
    ts = doc.get("trial_seconds")
    if ts is not None:
        for label, row in ts["summary"].items():
            tag = label.replace(" ", "_").replace(",", "-")
            ppo, evo = row["ppo"], row["evolution"]
            out[f"ppo_median_best_ge_evolution_{tag}"] = {
                "met": ppo["median_best_reward"] >= evo["median_best_reward"], "ppo": ppo["median_best_reward"],
                "evolution": evo["median_best_reward"],
                "margin": round(ppo["median_best_reward"] - evo["median_best_reward"], 5)}
            out[f"ppo_distinct_ge_80pct_budget_spent_{tag}"] = {
                "met": ppo["median_distinct_fraction"] >= DISTINCT_TARGET and ppo["converged_runs"] == 0,
                "value": ppo["median_distinct_fraction"], "min": ppo["min_distinct_fraction"],
                "converged_runs": ppo["converged_runs"],
                "margin": round(ppo["median_distinct_fraction"] - DISTINCT_TARGET, 4)}
    return out


def _parse_ppo(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(PPOConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            parser.error(f"--ppo: expected FIELD=VALUE with a PPOConfig field ({', '.join(sorted(fields))}), "
                         f"got {item!r}")
        out[key] = yaml.safe_load(value)
    try:
        PPOConfig(**out)
    except ValueError as e:
        parser.error(f"--ppo: {e}")
    return out


def _parse_asha(text: str, parser: argparse.ArgumentParser) -> tuple[dict[str, Any], ...]:
    if text == "none":
        return ()
    out = []
    for item in text.split(";"):
        rungs, _, eta = item.partition(":")
        try:
            out.append({"rungs": tuple(int(r) for r in rungs.split(",")), "eta": int(eta or 3)})
        except ValueError:
            parser.error(f"--asha: expected 'none' or settings RUNGS[:ETA] separated by ';' (e.g. 400:3;200,400:2), "
                         f"got {text!r}")
    return tuple(out)


def _print(doc: Mapping[str, Any], path: str) -> None:
    prop = doc.get("proposals")
    if prop is not None:
        print(f"proposals: space {doc['space']}, budget {doc['budget']}, {doc['seeds']} seeds, target seed "
              f"{doc['target_seed']}, noise {doc['noise']:g}; random search's final best {prop['random_best']:.4f} "
              f"(optimum {prop['optimum']:.3f})")
        cps = list(next(iter(prop["controllers"].values()))["best_at"])
        print(f"{'controller':<10} " + " ".join(f"{'@' + c:>8}" for c in cps)
              + f" {'to rnd best':>12} {'distinct':>9} {'s/100':>7}")
        for name, c in prop["controllers"].items():
            n = c["proposals_to_random_best"]
            print(f"{name:<10} " + " ".join(f"{c['best_at'][k]:8.4f}" for k in cps)
                  + f" {('-' if n is None else f'{n:g}'):>12} {c['distinct_fraction']:9.1%}"
                  + f" {c['seconds_per_100']:7.3f}")
    ts = doc.get("trial_seconds")
    if ts is not None:
        print(f"trial-seconds: {ts['budget_s']:.0f} trial-s ({doc['budget']} full trials), {doc['seeds']} seeds, "
              f"target seed {doc['target_seed']}, surrogate noise {ts['surrogate']['noise']:g}")
        print(f"{'setting':<22} {'controller':<10} {'best':>8} {'noiseless':>9} {'trials':>7} {'distinct':>9} "
              f"{'pruned':>7} {'converged':>9}")
        for label, row in ts["summary"].items():
            for name, r in row.items():
                print(f"{label:<22} {name:<10} {r['median_best_reward']:8.4f} {r['median_best_noiseless']:9.4f} "
                      f"{r['median_trials']:7g} {r['median_distinct_fraction']:9.1%} {r['median_pruned']:7g} "
                      f"{r['converged_runs']:9d}")
    for k, v in doc["targets"].items():
        margin = v.get("margin")
        print(f"{k}: {'met' if v['met'] else 'MISSED'}"
              + ("" if margin is None else f" (margin {margin:+g})")
              + "".join(f", {f} {v[f]}" for f in ("ppo", "evolution", "value", "min") if f in v))
    print(f"written to {os.path.relpath(path, ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="spinenet49", help="search-space family (default spinenet49)")
    parser.add_argument("--budget", type=int, default=2000,
                        help="proposals per run, and full trials' worth of trial-seconds per search (default 2000)")
    parser.add_argument("--seeds", type=int, default=5, help="runs per controller (default 5)")
    parser.add_argument("--target-seed", type=int, default=0,
                        help="the surrogate's hidden optimum (default 0, never used for tuning)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="std of the surrogate's AP noise in the proposals part (default 0)")
    parser.add_argument("--part", choices=("proposals", "trial-seconds", "all"), default="all",
                        help="which part to run (default all)")
    parser.add_argument("--asha", default="400:3",
                        help="the ASHA settings of the trial-seconds part, RUNGS[:ETA] separated by ';', or 'none' "
                             "(default 400:3)")
    parser.add_argument("--ppo", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="PPOConfig fields for PPO's runs (YAML values), e.g. learning_rate=0.01")
    parser.add_argument("--tag", default="", help="appended to the results file's name")
    parser.add_argument("--json", action="store_true", help="print the JSON summary instead of a table")
    args = parser.parse_args(argv)
    if args.budget < 1 or args.seeds < 1:
        parser.error(f"--budget and --seeds: expected integers >= 1, got {args.budget} and {args.seeds}")
    ppo = _parse_ppo(args.ppo, parser)
    asha = _parse_asha(args.asha, parser)
    # This script's progress lines only: the search driver's per-trial log lines would drown them.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)

    started = time.time()
    doc: dict[str, Any] = {
        **provenance(__file__, argv),
        "machine": machine(shared="2 cores shared with other developers' tests and benchmarks: timings indicative"),
        "space": args.space, "budget": args.budget, "seeds": args.seeds, "target_seed": args.target_seed,
        "noise": args.noise, "ppo_overrides": ppo, "ppo_config": dataclasses.asdict(PPOConfig(**ppo)),
    }
    if args.part in ("proposals", "all"):
        doc["proposals"] = proposals_part(space=args.space, budget=args.budget, seeds=args.seeds,
                                          target_seed=args.target_seed, noise=args.noise, ppo=ppo)
        doc["timing"] = (
            "seconds_per_100: propose + feedback only (evaluations excluded), proposals one at a time, over "
            f"proposals {WARMUP + 1}..budget (the TF import and graph tracing fall in the first {WARMUP}); median "
            "over seeds"
        )
    if args.part in ("trial-seconds", "all"):
        doc["trial_seconds"] = trial_seconds_part(space=args.space, budget=args.budget, seeds=args.seeds,
                                                  target_seed=args.target_seed, asha=asha, ppo=ppo)
    doc["targets"] = targets(doc, args.budget)
    doc["machine"]["loadavg_after"] = list(os.getloadavg())
    if "tensorflow" in sys.modules:
        doc["machine"]["tensorflow"] = sys.modules["tensorflow"].__version__
    doc["wall_s"] = round(time.time() - started, 1)

    os.makedirs(RESULTS_DIR, exist_ok=True)
    noise = f"{args.noise:g}".replace(".", "p")
    name = f"controllers_{args.space}_b{args.budget}_s{args.seeds}_t{args.target_seed}_n{noise}"
    name += "" if args.part == "all" else f"_{args.part}"
    name += f"_{args.tag}" if args.tag else ""
    path = os.path.join(RESULTS_DIR, name + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)

    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        _print(doc, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

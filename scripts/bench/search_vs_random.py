#!/usr/bin/env python
"""Does the search beat random search on the real proxy? PPO, evolution and random at equal trial-seconds.

Three searches of the demo preset (the real Model Garden RetinaNet proxy on the embedded data), one per controller,
same seed, on the local runner in the preset's layout (two one-core trials at a time). They grow in rounds of
`--chunk` trials each, round-robin, so that whenever the measurement is interrupted the three have had about the
same compute; `run` continues from wherever it stopped (each search through `spinenas search --resume NAME --trials
N`), so it can span sessions:

    python scripts/bench/search_vs_random.py run --rounds 8     # up to 8 x 10 trials each; safe to start again
    python scripts/bench/search_vs_random.py retrain            # each search's best at the reference length
    python scripts/bench/search_vs_random.py summarize          # -> results/search_vs_random.json and .png

`retrain` trains each search's best architecture at the demo calibration study's reference fidelity (3,200 steps of
the demo proxy as that study trained its references, all 300 validation images), where SpineNet-49 scored 0.654
(scripts/bench/results/calibration-demo.db), once per architecture (its result is kept in the JSON).
Evolution's population is the demo preset's, sized to such budgets (20, tournament 5). Searches of one seed can
propose the same architecture (random's and evolution's first one is the same); in one database the second search
to meet it reuses the first's result: `summarize` charges it the seconds of the training it reused and counts its
AP (`borrowed`), so a common proposal costs both the same.
`summarize` writes per search the running best AP against cumulative trial-seconds, the best at the compute all
three reached, the best after the trials all three reached (trial-seconds move with the machine's load; a count of
trials does not), distinct architectures, and the reference AP of each best. The live database is
runs/search-vs-random.db (`--db` another, e.g. to summarize from one checkout what another runs); `snapshot` copies it
to results/ (SQLite's backup API) so another checkout can continue.

Run it from a checkout nobody edits while it runs (every trial imports the tree's code).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from scripts.bench.common import live_database, machine, provenance, sqlite_backup  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results")
LIVE = os.path.join(ROOT, "runs", "search-vs-random.db")  # --db replaces it
SNAPSHOT = os.path.join(RESULTS, "search-vs-random.db")
OUT = os.path.join(RESULTS, "search_vs_random.json")
CONTROLLERS = ("ppo", "evolution", "random")
SEED = 0
# The demo calibration study's reference fidelity (how demo-cal trained its 3,200-step references).
REFERENCE_STEPS = 3200
REFERENCE_SETS = ("proxy.eval_images=0", "proxy.grappler=true", "proxy.batch_size=8", "proxy.learning_rate=0.002",
                  "proxy.warmup_steps=30", "proxy.lr_schedule=cosine")
SPINENET49_REFERENCE_AP = 0.654
# The evolution search restarted at population 20 under its own name; real-evolution-s0 (population 50) stays.
NAMES = {"ppo": f"real-ppo-s{SEED}", "evolution": f"real-evolution-p20-s{SEED}", "random": f"real-random-s{SEED}"}


def _name(controller: str) -> str:
    return NAMES[controller]


def _spinenas(*argv: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], cwd=ROOT, **kw)


def _finished(name: str) -> int | None:
    """Trials of search `name` that finished (None: no such search yet)."""
    if not os.path.exists(LIVE):
        return None
    with sqlite3.connect(f"file:{LIVE}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT id FROM searches WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return conn.execute("SELECT count(*) FROM trials WHERE search_id = ? AND status NOT IN ('queued', 'running')",
                            (row[0],)).fetchone()[0]


def run(rounds: int, chunk: int) -> int:
    upgraded = live_database(LIVE, SNAPSHOT)
    if upgraded != 0:
        return upgraded
    for r in range(1, rounds + 1):
        for controller in CONTROLLERS:
            name, target = _name(controller), r * chunk
            done = _finished(name)
            if done is not None and done >= target:
                continue
            print(f"round {r}: {name} to {target} trials", flush=True)
            if done is None:
                argv = ["search", "--preset", "demo", "--controller", controller, "--name", name, "--seed", str(SEED),
                        "--trials", str(target)]
            else:
                argv = ["search", "--resume", name, "--trials", str(target)]
            rc = _spinenas(*argv, "--db", LIVE, "--runner", "local", "--top", "0", "--plain").returncode
            if rc != 0:
                return rc
    return 0


def snapshot() -> None:
    sqlite_backup(LIVE, SNAPSHOT + ".tmp")
    os.replace(SNAPSHOT + ".tmp", SNAPSHOT)
    print(f"{os.path.relpath(LIVE, ROOT)} -> {os.path.relpath(SNAPSHOT, ROOT)}")


def _curves(reader: Any) -> dict[str, dict[str, Any]]:
    """Per search, in completion order: cumulative trial-seconds and the running best AP."""
    out = {}
    for controller in CONTROLLERS:
        name = _name(controller)
        try:
            trials = reader.trials(name)
        except Exception:  # noqa: BLE001 - a search not started yet
            continue
        done = sorted((t for t in trials if t.finish_order is not None), key=lambda t: t.finish_order)
        own = {t.id for t in trials}
        spent, best, best_key, points, borrowed = 0.0, None, None, [], 0
        for t in done:
            ap, cost = (t.metrics.get("ap"), t.wall_s) if t.status == "completed" else (None, t.wall_s)
            if t.status == "cached" and t.cached_from is not None and t.cached_from not in own:
                # Another search of this database trained it (one seed's searches can propose the same architecture):
                # this search pays what that training cost, and sees its AP.
                source = reader.get_trial(t.cached_from)
                ap, cost, borrowed = source.metrics.get("ap"), source.wall_s, borrowed + 1
            spent += float(cost or 0.0)  # a repeat of this search's own result costs nothing
            if ap is not None and (best is None or ap > best):
                best, best_key = float(ap), t.arch_key
            points.append([round(spent, 1), best])  # the n-th point: after n finished trials
        out[name] = {"controller": controller, "trials": len(done),
                     "distinct": len({t.arch_key for t in done if t.status in ("completed", "cached")}),
                     "cached": sum(t.status == "cached" for t in done), "borrowed": borrowed,
                     "trial_s": round(spent, 1), "best_ap": best, "best_key": best_key, "curve": points}
    return out


def _best_at(curve: list[list[Any]], seconds: float) -> float | None:
    best = None
    for spent, b in curve:
        if spent > seconds:
            break
        best = b
    return best


def _best_after(curve: list[list[Any]], trials: int) -> float | None:
    return curve[trials - 1][1] if 0 < trials <= len(curve) else None


def _load() -> dict[str, Any]:
    if os.path.exists(OUT):
        with open(OUT, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def retrain() -> int:
    from results_db import ResultReader

    doc = _load()
    done = doc.setdefault("reference", {})
    with ResultReader(LIVE) as reader:
        curves = _curves(reader)
        bests = {c["best_key"]: reader.get_arch(c["best_key"]).spec_json for c in curves.values() if c["best_key"]}
    for key, spec in bests.items():
        if key in done:
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            fh.write(spec)
        print(f"retraining {key} at {REFERENCE_STEPS} steps", flush=True)
        sets = [a for s in REFERENCE_SETS for a in ("--set", s)]
        res = _spinenas("proxy", "run", "--arch", fh.name, "--steps", str(REFERENCE_STEPS), "--seed", "0", *sets,
                        "--json", capture_output=True, text=True)
        os.unlink(fh.name)
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            return res.returncode
        result = json.loads(res.stdout)
        done[key] = {"ap": result.get("ap"), "steps": REFERENCE_STEPS, "error": result.get("error")}
        with open(OUT, "w", encoding="utf-8") as out:  # kept after every training: an interrupted retrain loses none
            json.dump(doc, out, indent=1)
    return 0


def summarize(argv: list[str]) -> dict[str, Any]:
    from results_db import ResultReader

    with ResultReader(LIVE if os.path.exists(LIVE) else SNAPSHOT) as reader:
        curves = _curves(reader)
    old = _load()
    reference = old.get("reference", {})
    everyone = len(curves) == len(CONTROLLERS)
    equal = min((c["trial_s"] for c in curves.values()), default=0.0) if everyone else None
    equal_trials = min((c["trials"] for c in curves.values()), default=0) if everyone else None
    searches = {}
    for name, c in curves.items():
        searches[name] = {**{k: v for k, v in c.items() if k != "curve"},
                          "best_ap_at_equal_trial_s": _best_at(c["curve"], equal) if equal is not None else None,
                          "best_ap_at_equal_trials": _best_after(c["curve"], equal_trials) if equal_trials else None,
                          "best_reference_ap": reference.get(c["best_key"] or "", {}).get("ap"), "curve": c["curve"]}
    doc = {**provenance(__file__, argv), "machine": machine(), "database": os.path.relpath(LIVE, ROOT),
           "equal_trial_s": equal, "equal_trials": equal_trials, "spinenet49_reference_ap": SPINENET49_REFERENCE_AP,
           "reference_fidelity": {"steps": REFERENCE_STEPS, "sets": list(REFERENCE_SETS)},
           "searches": searches, "reference": reference}
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    _plot(doc)
    return doc


def _plot(doc: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for name, s in doc["searches"].items():
        pts = [(t / 3600, b) for t, b in s["curve"] if b is not None]
        if pts:
            ax.step(*zip(*pts), where="post", label=f"{s['controller']} ({s['trials']} trials)")
    if doc["equal_trial_s"]:
        ax.axvline(doc["equal_trial_s"] / 3600, color="grey", lw=0.8, ls=":", label="equal compute")
    ax.set_xlabel("cumulative trial-hours")
    ax.set_ylabel("best proxy AP so far")
    ax.set_title("demo proxy: search vs random at equal compute", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "search_vs_random.png"))


def _print(doc: dict[str, Any]) -> None:
    eq = doc["equal_trial_s"]
    print(f"equal compute: {eq / 3600:.2f} trial-hours, {doc['equal_trials']} trials" if eq
          else "equal compute: not all three searches started")
    for name, s in doc["searches"].items():
        def ap(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"

        print(f"  {name:22} {s['trials']:4} trials ({s['distinct']} distinct, {s['cached']} cached) "
              f"{s['trial_s'] / 3600:5.2f} h  best AP {ap(s['best_ap'])}  at equal compute "
              f"{ap(s['best_ap_at_equal_trial_s'])} ({ap(s['best_ap_at_equal_trials'])} at equal trials)  "
              f"best's AP at {REFERENCE_STEPS} steps {ap(s['best_reference_ap'])} "
              f"(SpineNet-49 {SPINENET49_REFERENCE_AP})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="start or continue the three searches, round-robin")
    r.add_argument("--rounds", type=int, default=8, help="rounds of --chunk trials per search (default 8)")
    r.add_argument("--chunk", type=int, default=10, help="trials each search gains per round (default 10)")
    sub.add_parser("retrain", help="each search's best at the reference fidelity (once per architecture)")
    sub.add_parser("snapshot", help="copy the live database to results/")
    sub.add_parser("summarize", help="write results/search_vs_random.json and .png, and print them")
    for p in sub.choices.values():
        p.add_argument("--db", metavar="PATH", help="the live SQLite database (default runs/search-vs-random.db)")
    args = parser.parse_args(argv)
    global LIVE
    LIVE = os.path.abspath(args.db) if args.db else LIVE
    if args.what == "run":
        if args.rounds < 1 or args.chunk < 1:
            parser.error("--rounds and --chunk: expected integers >= 1")
        return run(args.rounds, args.chunk)
    if not os.path.exists(LIVE) and not (args.what == "summarize" and os.path.exists(SNAPSHOT)):
        parser.error(f"no database at {os.path.relpath(LIVE, ROOT)}: run 'run' first")
    if args.what == "retrain":
        return retrain()
    if args.what == "snapshot":
        snapshot()
        return 0
    _print(summarize(argv))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the search in flight keeps its unfinished trials for the next `run` or `retrain`
        print("interrupted: run the same command again to continue", file=sys.stderr)
        sys.exit(130)

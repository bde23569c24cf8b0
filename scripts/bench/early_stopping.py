#!/usr/bin/env python
"""Early stopping of poor trials: what ASHA buys on real demo learning curves, and what it does to
the controllers that learn from pruned trials.

    python scripts/bench/early_stopping.py pool --pool-db DB   # the pool of real curves (early-stopping-pool.json)
    python scripts/bench/early_stopping.py replay              # ASHA, median rule against full training on the pool
    python scripts/bench/early_stopping.py bound               # the lowest ratio the costs allow, per rung set
    python scripts/bench/early_stopping.py shape               # surrogate curve settings matching the demo's rung taus
    python scripts/bench/early_stopping.py controllers         # PPO and evolution with and without ASHA (surrogate)
    python scripts/bench/early_stopping.py demo [--minutes 30] # a real demo search with ASHA on this machine

**The pool** is every architecture trained to the pool's last step with its AP at each of the pool's steps (`pool
--steps`; by default 100, 200, 400 and 800: the 800-step demo proxy, the preset's until 12-07): the proxy-fidelity
trainings of a calibration study that end at the last step (by default results/calibration-demo.db's study
demo-cal, the first seed of each architecture) and a search of further random architectures with intermediate
evaluations, run as

    spinenas search --preset demo --controller random --trials 20 --name es-pool --seed 17 \\
        --set 'proxy.eval_at_steps=[100,200,400]' --db runs/es-pool.db     # (--resume es-pool continues it)

(its database as recorded, 20 trials in 80 minutes on 2 cores, is scripts/bench/results/es-pool.db, the default;
`--pool-db none` takes the calibration's curves alone). A study of variants (`spinenas calibrate --reference-from`)
trains several proxies on the same candidates: the pool takes one variant's trials, `--calibration-variant` (the
plan of the stored study says which trial is whose), which may be left out when only one variant trains to the
last step.

The 400-step demo proxy (the preset's since 12-07) has a pool of its own, AP at 100, 200 and 400: its calibration
curves are the steps400 variant of study demo-variants in scripts/bench/results/calibration-variants.db, and its
further random architectures a search of the preset as it is,

    spinenas search --preset demo --controller random --trials 20 --name es-pool-400 --seed 17 \\
        --set 'proxy.eval_at_steps=[100,200]' --db runs/es-pool-400.db
    python scripts/bench/early_stopping.py pool --steps 100,200,400 --pool-db runs/es-pool-400.db \\
        --pool-search es-pool-400 --calibration-db scripts/bench/results/calibration-variants.db \\
        --calibration-study demo-variants --calibration-variant steps400 \\
        --out scripts/bench/results/early-stopping-pool-400.json
    python scripts/bench/early_stopping.py replay --pool scripts/bench/results/early-stopping-pool-400.json \\
        --out scripts/bench/results/early_stopping_replay_400.json

A pool file records its steps; one without them (made before they were a choice) is the 800-step pool's.

**Replay** runs the real search driver (`SearchDriver`, its ASHA scheduler and its store, an SQLite file per
search) on `ReplayRunner`, a `nas.engine.runners.Runner` with a simulated clock: a submitted trial's reports and its end
are events at the times the cost model gives, and the recorded AP at each step is what the trial reports; the
runner's cooperative stop ends a trial at the report that stopped it. The controller proposes the pool's
architectures in a random order (`OrderController` on `PoolSpace`, the pool as one decision), 20 orders, on 1 and 4
simulated workers, once with every trial trained to the pool's last step and once per scheduler setting. Reported:
the trial-seconds spent (summed over workers) until the pool's best architecture (the highest AP at the last step)
has completed, its median over the orders, its ratio to full training's, and in how many orders ASHA pruned the best.
`replay --oracle` judges every rung on the curve's final AP instead (a perfect early ranking): its ratios are what
the cost model allows on a pool this small (ASHA's first eta trials at a rung always go on), so the gap to the
recorded curves' is what the early rungs' ranking costs. Each ASHA row also gives its ``large_search_bound``
(`asha_bound`): a long search's ratio at the cost model's prices, whatever its ranking (which decides only whether
the best survives).

**The settings replayed** are `REPLAY_SETTINGS`, those of the 800-step pool, as they are for an 800-step pool
(whose recorded replays they reproduce). A pool whose last step L is another gets them scaled (`replay_settings`):
each rung r becomes r * L / 800, a rung that is not one of the pool's steps before L is dropped, and a setting left
without a rung, or become one already replayed, is not replayed. A 400-step pool (100, 200, 400) so replays ASHA at
rung 200 (eta 3, 2 and 4) and at rungs 100,200 (eta 3 and 2; rungs 100,200,400 also become 100,200), and the
median rule at 200 and at 100,200.

**The cost model** (`TrialCost`, from results/proxy.json: an idle machine, warm workers, the README's `proxy.py` row): a
trial costs the warm worker's build and trace before its first step, one step time per step (the SpineNet-49 proxy's
steady step, scaled by the architecture's multiply-adds per image, `ProxyConfig.cost`), and one evaluation per
intermediate evaluation and at the end (the warm worker's evaluation; a pruned trial has no final one). Full training
evaluates only at the end; ASHA evaluates at its rungs.

**Controllers** run PPO and evolution on the surrogate evaluator (TF-free; its curve settings from `shape`, chosen so
that each rung ranks 200 random architectures against a 4x-longer training with the Kendall tau the demo's
calibration measured) through the same runner: without ASHA for 2,000 trials, then with ASHA until the same
trial-seconds are spent; 5 seeds each. Reported: the final best reward (observed and noiseless) and the proposals
evaluated.

**The demo** runs the real thing on this machine, for `--minutes` after its first trial starts, then stops it as
Ctrl-C does (the trial in flight is not counted):

    spinenas search --preset demo --set proxy.train_steps=800 --workers 1 --cpus-per-trial 2 \\
        --scheduler asha --rungs 400 --eta 3 --trials 100 --name asha-demo \\
        --db runs/asha-demo.db --run-dir runs/asha-demo --top 0 --plain

Reported: the architectures it evaluated (completed and pruned trials finished in the window), its best AP, beside
`make search`'s 6 architectures (PPO, no scheduler, the same seed and so the same first proposals; README figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import heapq
import json
import math
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.engine.runners.base import Runner, TrialOutcome  # noqa: E402 (stdlib only: no Ray, no TensorFlow)
from scripts.bench.common import machine, provenance  # noqa: E402

RESULTS = ROOT / "scripts" / "bench" / "results"
POOL = RESULTS / "early-stopping-pool.json"
CALIBRATION_DB = RESULTS / "calibration-demo.db"
CALIBRATION_STUDY = "demo-cal"
POOL_SEARCH = "es-pool"
# The default pool's steps, every curve's AP at them (800: the demo's last step until 12-07); a pool file without
# "steps" is of these.
POOL_STEPS = (100, 200, 400, 800)
CONVERGED_AFTER = 1000  # a controller search stops after this many cached trials in a row (see run_search)
# The ASHA settings of an 800-step pool (another pool's are these scaled: replay_settings): the rungs the
# calibration's verdict keeps (tau >= 0.6 from step 400) and the three intermediate evaluations of the pool; eta 3
# (the default).
ASHA_SETTINGS = ({"rungs": (400,), "eta": 3}, {"rungs": (200, 400), "eta": 3}, {"rungs": (100, 200, 400), "eta": 3})
# The replay is cheap: it also tries a gentler and a harsher reduction factor.
REPLAY_SETTINGS = (*ASHA_SETTINGS, {"rungs": (400,), "eta": 2}, {"rungs": (200, 400), "eta": 2},
                   {"rungs": (400,), "eta": 4},
                   # The median stopping rule (nas.engine.schedulers.median) at the same rungs, after Optuna's 5 trials.
                   {"scheduler": "median", "rungs": (400,), "warmup_trials": 5},
                   {"scheduler": "median", "rungs": (200, 400), "warmup_trials": 5})


# ------------------------------------------------------------------------------------------------ cost model
@dataclasses.dataclass(frozen=True)
class TrialCost:
    """Seconds a demo trial costs on the machine results/proxy.json measured (an idle one, warm workers).

    Attributes:
      setup_s: the warm worker's model build and first-step trace, before the first step.
      eval_s: one evaluation on the proxy-val split (at a rung, or at the end).
      step_s: one steady training step of the reference architecture (the SpineNet-49 proxy).
      ref_flops: the reference's multiply-adds per image; an architecture's step takes ``step_s * flops /
        ref_flops`` (``step_s`` when its FLOPs are unknown).
      source: where the figures come from.
    """

    setup_s: float
    eval_s: float
    step_s: float
    ref_flops: float
    source: str = ""

    def step(self, flops: float | None) -> float:
        return self.step_s * flops / self.ref_flops if flops else self.step_s

    def trial(self, flops: float | None, steps: int, evals: int) -> float:
        """A trial that trained `steps` steps and evaluated `evals` times."""
        return self.setup_s + steps * self.step(flops) + evals * self.eval_s

    @classmethod
    def from_proxy_bench(cls, path: Path = RESULTS / "proxy.json") -> TrialCost:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        warm = d["fixed_cost"]["warm"]

        def mean(part: str) -> float:
            return statistics.fmean(w["parts_s"][part] for w in warm)

        return cls(setup_s=mean("build_s") + mean("trace_s"), eval_s=mean("eval_s"), step_s=d["step"]["ours_step_s"],
                   ref_flops=float(d["demo_trial"]["flops_per_image"]),
                   source=f"{os.path.relpath(path, ROOT)} ({d.get('date_utc', '?')}, "
                          f"commit {d.get('commit', '?')[:7]})")


# ------------------------------------------------------------------------------------------------ the runner
class BudgetSpent(KeyboardInterrupt):
    """`ReplayRunner.poll` once the trial-seconds reach the runner's budget: the driver stops as on Ctrl-C (its
    unfinished trial stays open in the store and counts for nothing)."""


@dataclasses.dataclass
class Curve:
    """What a trial of one architecture reports: its AP at evaluation steps and its last-step result.

    Attributes:
      aps: step -> AP at that step's evaluation (the last step's included).
      metrics: the last step's metrics (``ap`` at least), unless `error`.
      flops, params: the detector's cost.
      error: a trial that fails at its last step (the surrogate's simulated failure).
    """

    aps: Mapping[int, float]
    metrics: Mapping[str, float]
    flops: int | None = None
    params: int | None = None
    error: str | None = None


CurveSource = Callable[[Any, int, int], Curve]  # (ArchSpec, seed, index) -> its curve


@dataclasses.dataclass
class _Run:
    task: Any
    curve: Curve
    start: float
    end: float  # scheduled end (moved up when it is stopped)
    steps: int
    evals: tuple[int, ...]
    stopped_at: int | None = None
    done: bool = False


class ReplayRunner(Runner):
    """A `Runner` on a simulated clock: each trial's reports and end are events at the times `cost` gives,
    carrying the APs `source` gives (recorded curves, or the surrogate's).

    `poll` advances the clock to the next event, calls ``on_report`` for a report (AP at an evaluation step) and
    returns a trial at its end; `stop` ends a trial at the report that asked for it (what a cooperative stop does
    in a real trial). No trial waits: the driver keeps ``search.workers`` in flight, so the clock advances as on
    that many workers. With `budget_s`, the first `poll` at which the trial-seconds spent (summed over trials)
    reach it raises `BudgetSpent`.
    """

    def __init__(self, *, spec: Any, source: CurveSource, cost: TrialCost, budget_s: float | None = None) -> None:
        super().__init__(None, spec=spec, on_report=lambda *a: None)
        self.source = source
        self.cost = cost
        self.budget_s = budget_s
        self.clock = 0.0
        self.runs: dict[int, _Run] = {}
        self._events: list[tuple[float, int, int, str, int]] = []  # (time, seq, trial id, 'report'|'end', step)
        self._seq = 0
        self._reporting: tuple[int, int] | None = None  # (trial id, step) of the report being delivered

    def _push(self, t: float, trial_id: int, kind: str, step: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, trial_id, kind, step))

    def submit(self, task: Any) -> None:
        from search_space import ArchSpec

        proxy = task.spec_dict(self.spec.to_dict())["proxy"]
        total = int(proxy["train_steps"])
        evals = tuple(sorted(int(s) for s in proxy.get("eval_at_steps") or () if int(s) < total))
        curve = self.source(ArchSpec.from_json(task.arch_json), task.seed, task.index)
        missing = [s for s in (*evals, total) if s not in curve.aps and curve.error is None]
        if missing:
            raise ValueError(f"ReplayRunner: trial {task.index}'s curve has no AP at steps {missing}")
        step_s = self.cost.step(curve.flops)
        t, prev = self.clock + self.cost.setup_s, 0
        for s in evals:
            t += (s - prev) * step_s + self.cost.eval_s
            self._push(t, task.trial_id, "report", s)
            prev = s
        t += (total - prev) * step_s + self.cost.eval_s
        self._push(t, task.trial_id, "end", total)
        self.runs[task.trial_id] = _Run(task, curve, self.clock, t, total, evals)

    def spent(self, at: float | None = None) -> float:
        """Trial-seconds spent by `at` (default: now), summed over trials."""
        at = self.clock if at is None else at
        return sum(max(0.0, min(r.end, at) - r.start) for r in self.runs.values())

    def poll(self, timeout: float) -> list[Any]:
        from proxy_task.result import ProxyResult

        if self.budget_s is not None and self.spent() >= self.budget_s:
            raise BudgetSpent(f"{self.spent():.0f} trial-seconds spent (budget {self.budget_s:.0f})")
        while self._events:
            t, _, trial_id, kind, step = heapq.heappop(self._events)
            run = self.runs.get(trial_id)
            if run is None or run.done or (kind == "report" and run.stopped_at is not None):
                continue
            if kind == "end" and run.stopped_at is not None and step != run.stopped_at:
                continue  # the end it had before it was stopped
            self.clock = t
            if kind == "report":
                self._reporting = (trial_id, step)
                try:
                    self.on_report(trial_id, step, {"ap": run.curve.aps[step]})
                finally:
                    self._reporting = None
                continue
            run.done = True
            c = run.curve
            if run.stopped_at is not None:
                result = ProxyResult(metrics={"ap": c.aps[run.stopped_at], "steps": float(run.stopped_at)},
                                     flops=c.flops, params=c.params, wall_s=run.end - run.start,
                                     stopped_at=run.stopped_at)
            elif c.error is not None:
                result = ProxyResult(metrics={}, flops=c.flops, params=c.params, wall_s=run.end - run.start,
                                     error=c.error)
            else:
                result = ProxyResult(metrics={**c.metrics, "steps": float(run.steps)}, flops=c.flops,
                                     params=c.params, wall_s=run.end - run.start)
            return [TrialOutcome(trial_id, {"result": result.to_dict(), "host": "replay", "pid": 0,
                                            "started": run.start})]
        return []

    def stop(self, trial_id: int) -> None:
        """Ends the trial at the report being delivered (as a real one does: it waits at a judged step for the
        answer)."""
        run = self.runs.get(trial_id)
        if run is None or run.done or run.stopped_at is not None:
            return
        if self._reporting is None or self._reporting[0] != trial_id:
            raise RuntimeError("ReplayRunner.stop outside the trial's own report: the scheduler stops at a report")
        run.stopped_at = self._reporting[1]
        run.end = self.clock
        self._push(self.clock, trial_id, "end", run.stopped_at)

    def cancel(self, trial_id: int) -> None:
        run = self.runs.pop(trial_id, None)
        if run is not None:
            run.done = True

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ pool controller
class PoolSpace:
    """The pool as a space of one decision: choice i is the pool's i-th architecture."""

    def __init__(self, archs: Sequence[Any]) -> None:
        self.archs = list(archs)
        self.num_choices = (len(self.archs),)

    def decode(self, decisions: Sequence[int]) -> Any:
        return self.archs[int(decisions[0])]


def order_controller(space: PoolSpace, order: Sequence[int]) -> Any:
    """A controller that proposes the pool's architectures in `order` (then again from the start)."""
    from controller.base import Controller
    from controller.config import RandomConfig

    class OrderController(Controller):
        name = "order"
        config_cls = RandomConfig

        def _setup(self) -> None:
            self._order = list(order)
            self._i = 0

        def _propose(self, n: int) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
            out = []
            for _ in range(n):
                out.append(((int(self._order[self._i % len(self._order)]),), {}))
                self._i += 1
            return out

        def _replay(self, decisions: tuple[int, ...]) -> None:
            self._i += 1

        def _feedback(self, trial_id: int, decisions: tuple[int, ...], reward: float) -> None:
            pass

        def _state_dict(self) -> dict[str, Any]:
            return {"i": self._i}

        def _load_state_dict(self, state: Mapping[str, Any]) -> None:
            self._i = int(state["i"])

    return OrderController(space, seed=0)


# ------------------------------------------------------------------------------------------------ one search
def search_config(overrides: Sequence[str], *, last_step: int = POOL_STEPS[-1]) -> Any:
    """The demo preset trained to `last_step` (a pool's last step), one trial at a time, with `overrides`."""
    from nas.config.schema import NasConfig
    from nas.config.codec import resolve
    from nas.config.presets import get_preset

    # The default pool's curves are of the 800-step demo proxy (the preset's until it moved to 400 steps, issue 31),
    # one trial at a time as the README's figures were measured.
    return resolve(NasConfig, get_preset("demo"), ["search.trial_timeout_s=0", f"proxy.train_steps={last_step}",
                                                   "search.workers=1", "search.cpus_per_trial=2", *overrides])


class Converged(KeyboardInterrupt):
    """The controller proposed only architectures with a result for a long run of trials: nothing new is trained."""


def run_search(cfg: Any, source: CurveSource, cost: TrialCost, *, budget_s: float | None = None,
               pool: Sequence[Any] | None = None, order: Sequence[int] | None = None,
               converged_after: int | None = None) -> tuple[Any, ReplayRunner, list[Any]]:
    """One search through `SearchDriver` on a `ReplayRunner` (a fresh SQLite store): (outcome, runner, trials in
    finish order). With `pool` and `order`, the controller proposes the pool's architectures in that order. With
    `converged_after`, the search stops (as on Ctrl-C) after that many cached trials in a row: a controller that
    has converged costs no trial-seconds, so a budget of them would never be spent."""
    from nas.engine.driver import SearchDriver, trial_spec
    from results_db import ResultStore

    tmp = tempfile.mkdtemp(prefix="spinenas-es-")
    try:
        store = ResultStore(f"sqlite:///{tmp}/r.db")
        runner = ReplayRunner(spec=trial_spec(cfg), source=source, cost=cost, budget_s=budget_s)
        cached_run = [0]

        def out(line: str) -> None:  # the driver's progress line of every finished trial
            if not line.startswith("["):
                return
            cached_run[0] = cached_run[0] + 1 if "(cached:" in line else 0
            if converged_after is not None and cached_run[0] >= converged_after:
                raise Converged(f"{converged_after} cached trials in a row")

        driver = SearchDriver(cfg, name="replay", store=store, run_dir=os.path.join(tmp, "run"), out=out,
                              runner=runner, tensorboard=False)
        if pool is not None:
            driver.space = PoolSpace(pool)
            driver.controller = order_controller(driver.space, order or range(len(pool)))
        driver.start()
        outcome = driver.run()
        trials = sorted((t for t in store.trials("replay") if t.finish_order is not None),
                        key=lambda t: t.finish_order)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return outcome, runner, trials


# ------------------------------------------------------------------------------------------------ the pool
class PoolError(ValueError):
    """A pool that cannot be built or read as asked: a missing study or search, a variant to choose, missing APs."""


@dataclasses.dataclass(frozen=True)
class Pool:
    """The replayed curves: every architecture's AP at the same steps.

    Attributes:
      steps: the steps every curve has an AP at, ascending; its trials train to the last.
      archs: per architecture ``{'key', 'source', 'arch' (an ArchSpec), 'ap' (step -> AP), 'flops'}``.
    """

    steps: tuple[int, ...]
    archs: Sequence[Mapping[str, Any]]

    @property
    def last_step(self) -> int:
        return self.steps[-1]

    def best(self) -> Mapping[str, Any]:
        """The architecture with the highest AP at the last step."""
        return max(self.archs, key=lambda r: r["ap"][self.last_step])


def _curve_from_reports(reports: Sequence[tuple[int, str]]) -> dict[int, float]:
    aps = {}
    for step, metrics in reports:
        ap = json.loads(metrics).get("ap")
        if ap is not None:
            aps[int(step)] = float(ap)
    return aps


def _variant_indices(con: sqlite3.Connection, search: str, last_step: int, variant: str | None) -> set[int] | None:
    """The indices of a calibration study's trials of one variant, when the study is one of variants (several
    proxies on the same candidates): `variant`'s, or those of its only variant that trains to `last_step`. The
    study's plan says whose a trial is (its indices follow the plan, as `nas.calibration.study.analyze` reads them).
    None: another study or a search, of one proxy at `last_step` (a calibration's reference trainings are of
    another step count).

    Raises:
      PoolError: no such search or study; a study this tree cannot read; a variant not in the study, or not of
        `last_step`; `variant` for a study without variants; none given where several variants train to
        `last_step`.
    """
    row = con.execute("SELECT kind, config FROM searches WHERE name = ?", (search,)).fetchone()
    if row is None:
        raise PoolError(f"no search or study {search!r} in the database")
    study = None
    if row[0] == "calibration":
        from nas.calibration.study import Study

        try:
            study = Study.from_yaml(row[1])
        except ValueError as e:  # CalibrationError: a study this tree cannot read
            raise PoolError(f"study {search!r}: {e}") from None
    if study is None or not study.variants:
        if variant is not None:
            raise PoolError(f"--calibration-variant {variant}: {search!r} is not a calibration study of variants")
        return None
    steps = {v.name: v.config.proxy.train_steps for v in study.variants}
    if variant is None:
        at = [name for name, s in steps.items() if s == last_step]
        if len(at) != 1:
            listed = ", ".join(f"{n}: {s} steps" for n, s in steps.items())
            raise PoolError(f"study {search!r} is of variants ({listed}) of which {len(at) or 'none'} train to step "
                            f"{last_step}: give --calibration-variant NAME of one")
        variant = at[0]
    if variant not in steps:
        raise PoolError(f"--calibration-variant {variant}: study {search!r} has variants {', '.join(steps)}")
    if steps[variant] != last_step:
        raise PoolError(f"--calibration-variant {variant} trains to step {steps[variant]}, not to the pool's last "
                        f"step {last_step}")
    return {p.index for p in study.plan if p.variant == variant}


def _pool_rows(db: Path, search: str, source: str, steps: Sequence[int] = POOL_STEPS,
               variant: str | None = None) -> list[dict[str, Any]]:
    """The curves of `search`'s completed trials that trained to ``steps[-1]`` with an AP at each of `steps` (in a
    calibration study of variants, one variant's: `_variant_indices`)."""
    last = steps[-1]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        kept = _variant_indices(con, search, last, variant)
        rows = con.execute(
            'SELECT t.id, t."index", t.arch_key, t.metrics, a.spec_json FROM trials t JOIN searches s ON s.id = '
            "t.search_id JOIN archs a ON a.key = t.arch_key WHERE s.name = ? AND t.status = 'completed' "
            'ORDER BY t."index"', (search,)).fetchall()
        out = []
        for tid, index, key, metrics, spec_json in rows:
            m = json.loads(metrics or "{}")
            if int(m.get("steps", 0)) != last or (kept is not None and index not in kept):
                continue  # a calibration's reference training (another fidelity), or another variant's
            aps = _curve_from_reports(con.execute("SELECT step, metrics FROM trial_reports WHERE trial_id = ?",
                                                  (tid,)).fetchall())
            aps[last] = float(m["ap"])
            if not all(s in aps for s in steps):
                continue
            out.append({"key": key, "source": f"{source}:{index}", "arch": json.loads(spec_json),
                        "ap": {str(s): aps[s] for s in steps}})
        return out
    finally:
        con.close()


def _rel(path: Path) -> str:
    """`path` from the repository's root, when it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def build_pool(pool_db: Path | None, out: Path = POOL, *, steps: Sequence[int] = POOL_STEPS,
               pool_search: str = POOL_SEARCH, calibration_db: Path = CALIBRATION_DB,
               calibration_study: str = CALIBRATION_STUDY, calibration_variant: str | None = None) -> dict[str, Any]:
    """The pool: the calibration's curves at the pool's last step (first seed per architecture; one variant's in a
    study of variants), then those of the `pool_search` search in `pool_db` (None: the calibration's alone).

    Raises:
      PoolError: see `_variant_indices`; no architecture at all.
    """
    from proxy_task.data import num_classes_of
    from search_space import ArchSpec

    steps = tuple(steps)
    cfg = search_config([], last_step=steps[-1])
    classes = num_classes_of(cfg.proxy.data)
    study = f"{_rel(calibration_db)}, study {calibration_study}"
    sources = [(calibration_db, calibration_study, "calibration", calibration_variant,
                study + (f", variant {calibration_variant}" if calibration_variant else ""))]
    if pool_db is not None:
        sources.append((pool_db, pool_search, pool_search, None, f"{_rel(pool_db)}, search {pool_search}"))
    archs: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for db, search, source, variant, _ in sources:
        counts[source] = 0  # the architectures it adds (a repeat, or one already in the pool, adds none)
        for row in _pool_rows(db, search, source, steps, variant):
            if row["key"] not in archs:
                row["flops"] = cfg.proxy.cost(ArchSpec.from_json(json.dumps(row["arch"])), classes).flops
                archs[row["key"]] = row
                counts[source] += 1
    if not archs:
        raise PoolError(f"no completed trial trained to step {steps[-1]} with an AP at each of {list(steps)} in "
                        + " or ".join(what for *_, what in sources))
    doc = {**provenance(__file__, None), "steps": list(steps), "sources": {s: what for _, _, s, _, what in sources},
           "counts": counts, "archs": list(archs.values())}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    return doc


def load_pool(path: Path = POOL) -> Pool:
    """A pool file (`build_pool`'s); one without "steps" is of `POOL_STEPS`.

    Raises:
      PoolError: a curve without an AP at one of the pool's steps.
    """
    from search_space import ArchSpec

    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    steps = tuple(int(s) for s in doc.get("steps") or POOL_STEPS)
    archs = []
    for row in doc["archs"]:
        ap = {int(s): float(v) for s, v in row["ap"].items()}
        missing = [s for s in steps if s not in ap]
        if missing:
            raise PoolError(f"{path}: {row.get('source', row.get('key'))} has no AP at steps {missing} of the pool's "
                            f"{list(steps)}")
        archs.append({**row, "arch": ArchSpec.from_json(json.dumps(row["arch"])), "ap": ap})
    return Pool(steps, archs)


def pool_source(pool: Pool, *, oracle: bool = False) -> CurveSource:
    """The pool's curves; with `oracle`, each curve reports its last step's AP at every step (a perfect early
    ranking), so what a schedule still costs is what the cost model alone allows."""
    by_key = {row["arch"].key: row for row in pool.archs}

    def source(arch: Any, seed: int, index: int) -> Curve:
        row = by_key[arch.key]
        final = row["ap"][pool.last_step]
        aps = {s: final for s in row["ap"]} if oracle else row["ap"]
        return Curve(aps=aps, metrics={"ap": final}, flops=row["flops"])

    return source


# ------------------------------------------------------------------------------------------------ replay
def _median(values: Sequence[float]) -> float | None:
    """The median, with a never-reached run counted as infinitely late (None when the median is such a run)."""
    m = statistics.median(sorted(values))
    return None if math.isinf(m) else m


def asha_overrides(setting: Mapping[str, Any]) -> list[str]:
    """The ``--set`` overrides of a scheduler setting: ASHA's ``{'rungs': (...), 'eta': n}``, or another scheduler's
    ``{'scheduler': name, 'rungs': (...), field: value, ...}``."""
    name = setting.get("scheduler", "asha")
    fields = {k: v for k, v in setting.items() if k != "scheduler"}
    return [f"scheduler.type={name}"] + [f"scheduler.{name}.{k}={list(v) if isinstance(v, tuple) else v}"
                                         for k, v in fields.items()]


def replay_settings(steps: Sequence[int], settings: Sequence[Mapping[str, Any]] = REPLAY_SETTINGS,
                    ) -> tuple[dict[str, Any], ...]:
    """`settings` (of an 800-step pool) for a pool of `steps`: each rung r becomes ``r * steps[-1] / 800``; a rung
    that is not one of the pool's steps before its last is dropped, and so is a setting left without a rung or
    become one kept before it. For an 800-step pool they stay `settings` (each of their rungs is one of its steps).

    Example::

        replay_settings((100, 200, 400))[:2]  # ({'rungs': (200,), 'eta': 3}, {'rungs': (100, 200), 'eta': 3})
    """
    last, ref = steps[-1], POOL_STEPS[-1]
    judged = set(steps[:-1])
    out: list[dict[str, Any]] = []
    for setting in settings:
        rungs = tuple(r * last // ref for r in setting["rungs"] if r * last % ref == 0 and r * last // ref in judged)
        scaled = {**setting, "rungs": rungs}
        if rungs and all(_label(scaled) != _label(o) for o in out):
            out.append(scaled)
    return tuple(out)


def asha_bound(cost: TrialCost, last_step: int, rungs: Sequence[int], eta: int) -> float:
    """ASHA's trial-seconds per trial over full training's in a long search (the reference architecture's costs):
    every trial pays the setup, the steps to the first rung and its evaluation; a fraction eta^-k goes on past rung
    k, whatever the ranking (a good one only keeps the best). What the cost model allows at these rungs in the long
    run; a short search promotes more (its first trials at a rung go on)."""
    bounds = (0, *sorted(rungs), last_step)
    per_trial = cost.setup_s
    for k in range(len(bounds) - 1):
        segment = (bounds[k + 1] - bounds[k]) * cost.step(cost.ref_flops) + cost.eval_s
        per_trial += segment / eta**k
    return per_trial / cost.trial(cost.ref_flops, last_step, 1)


# The rung sets `bound` tabulates, per last step: the replayed ones (`replay_settings`) and one a step further down.
BOUND_RUNGS = {400: ((200,), (100, 200), (50, 100, 200)), 800: ((400,), (200, 400), (100, 200, 400))}


def bound_table(out: Path) -> dict[str, Any]:
    """`asha_bound` for the 400- and 800-step demo proxies at `BOUND_RUNGS`, eta 2 to 4: at results/proxy.json's
    costs, at issue 31's target fixed part (20 s: a 13-s setup and a 7-s evaluation) and with no fixed part."""
    cost = TrialCost.from_proxy_bench()
    costs = {"proxy.json": cost, "fixed part 20 s (13 + 7)": dataclasses.replace(cost, setup_s=13.0, eval_s=7.0),
             "no fixed part": dataclasses.replace(cost, setup_s=0.0, eval_s=0.0)}
    rows = [{"costs": name, "last_step": last, "rungs": list(rungs), "eta": eta,
             "bound": asha_bound(c, last, rungs, eta)}
            for name, c in costs.items() for last, sets in BOUND_RUNGS.items() for rungs in sets for eta in (2, 3, 4)]
    doc = {**provenance(__file__, sys.argv[1:]), "cost_model": dataclasses.asdict(cost), "rows": rows}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    return doc


def replay_one(pool: Pool, order: Sequence[int], cost: TrialCost, *, workers: int,
               asha: Mapping[str, Any] | None, oracle: bool = False) -> dict[str, Any]:
    """One simulated search over the pool in `order`, its trials trained to the pool's last step: when the pool's
    best completed, and what it cost."""
    over = [f"search.trials={len(order)}", f"search.workers={workers}", "controller.type=random"]
    if asha is not None:
        over += asha_overrides(asha)
    cfg = search_config(over, last_step=pool.last_step)
    outcome, runner, trials = run_search(cfg, pool_source(pool, oracle=oracle), cost,
                                         pool=[r["arch"] for r in pool.archs], order=order)
    best_key = pool.best()["arch"].key
    best = next(t for t in trials if t.arch_key == best_key)
    found = best.status == "completed"
    at = runner.runs[best.id].end
    completed = [t for t in trials if t.status == "completed"]
    return {
        "found_best": found,
        "best_status": best.status,
        "best_rung": best.metrics.get("rung"),
        "trial_s_to_best": runner.spent(at) if found else math.inf,
        "clock_s_to_best": at if found else math.inf,
        "trial_s_total": runner.spent(math.inf),
        "clock_s_total": runner.clock,
        "best_found_ap": max((t.reward for t in completed), default=None),
        "pruned": outcome.pruned,
        "steps": sum(int(t.metrics.get("steps", 0)) for t in trials),
    }


def replay(orders: int, seed: int, out: Path, pool_path: Path = POOL,
           reprice: Mapping[str, float | None] | None = None, oracle: bool = False) -> dict[str, Any]:
    """ASHA and the median rule (`replay_settings` of the pool's steps) against full training on the pool;
    `reprice` (setup_s, eval_s, step_s) replaces those of results/proxy.json's cost model, e.g. by a faster proxy's
    measured ones (the curves stay the pool's); `oracle` judges every rung on the final AP (`pool_source`), which
    separates what the costs allow from what the early rungs' ranking loses."""
    import numpy as np

    pool = load_pool(pool_path)
    settings = replay_settings(pool.steps)
    cost = TrialCost.from_proxy_bench()
    given = {k: float(v) for k, v in (reprice or {}).items() if v is not None}
    if given:
        cost = dataclasses.replace(cost, **given, source=f"{cost.source}, re-priced: {given}")
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(len(pool.archs)).tolist() for _ in range(orders)]
    best = pool.best()
    doc: dict[str, Any] = {**provenance(__file__, sys.argv[1:]), "machine": machine(), "cost_model": {
        **dataclasses.asdict(cost), "full_trial_s_reference": cost.trial(cost.ref_flops, pool.last_step, 1)},
        "pool": {"archs": len(pool.archs), "file": _rel(pool_path), "steps": list(pool.steps),
                 "best_key": best["arch"].key, "best_source": best["source"], "best_ap": best["ap"][pool.last_step]},
        "orders": orders, "order_seed": seed, "oracle": oracle, "settings": {}}
    t0 = time.perf_counter()
    for workers in (1, 4):
        full = [replay_one(pool, p, cost, workers=workers, asha=None, oracle=oracle) for p in perms]
        full_median = _median([r["trial_s_to_best"] for r in full])
        rows = {"none": {"runs": full, "median_trial_s_to_best": full_median,
                         "median_trial_s_total": statistics.median(r["trial_s_total"] for r in full)}}
        for asha in settings:
            runs = [replay_one(pool, p, cost, workers=workers, asha=asha, oracle=oracle) for p in perms]
            med = _median([r["trial_s_to_best"] for r in runs])
            lost = sum(not r["found_best"] for r in runs)
            rows[_label(asha)] = {
                "scheduler": {k: list(v) if isinstance(v, tuple) else v for k, v in asha.items()}, "runs": runs,
                "median_trial_s_to_best": med,
                "ratio_to_full": med / full_median if med is not None and full_median else None,
                "median_trial_s_total": statistics.median(r["trial_s_total"] for r in runs),
                "total_ratio_to_full": statistics.median(r["trial_s_total"] for r in runs)
                / rows["none"]["median_trial_s_total"],
                "lost_best": lost,
                "median_pruned": statistics.median(r["pruned"] for r in runs),
                "large_search_bound": None if "scheduler" in asha else asha_bound(
                    cost, pool.last_step, asha["rungs"], asha["eta"]),
                "targets_met": {"ratio_at_most_1_3": med is not None and full_median is not None
                                and med <= full_median / 3, "lost_at_most_1_of_20": lost <= orders / 20},
            }
        doc["settings"][f"{workers} workers"] = rows
    doc["wall_s"] = time.perf_counter() - t0
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    return doc


def print_replay(doc: Mapping[str, Any]) -> None:
    p = doc["pool"]
    steps = p.get("steps", POOL_STEPS)
    print(f"pool: {p['archs']} architectures trained to step {steps[-1]} (AP at {', '.join(map(str, steps))}), best "
          f"{p['best_key']} ({p['best_source']}) AP {p['best_ap']:.4f}; {doc['orders']} orders"
          + ("; oracle: every rung judged on the final AP" if doc.get("oracle") else ""))
    for workers, rows in doc["settings"].items():
        print(f"{workers}:")
        for name, row in rows.items():
            med = row["median_trial_s_to_best"]
            line = f"  {name:38s} median trial-s to the best {med:8.0f}" if med is not None else \
                f"  {name:38s} median trial-s to the best    never"
            if "ratio_to_full" in row:
                ratio = row["ratio_to_full"]
                line += (f" ({ratio:.2f} of full)" if ratio is not None else "") + \
                    f", lost the best in {row['lost_best']}/{doc['orders']}, whole pool " \
                    f"{row['total_ratio_to_full']:.2f} of full, pruned {row['median_pruned']:.0f}"
                if row.get("large_search_bound") is not None:
                    line += f"; bound {row['large_search_bound']:.2f}"
            print(line)


# ------------------------------------------------------------------------------------------------ surrogate shape
def surrogate_taus(*, noise: float, rate_spread: float, steps: Sequence[int], reference: int, archs: int,
                   seed: int = 0) -> dict[int, float]:
    """Kendall tau of the surrogate's AP at each of `steps` (seed 0) against its AP after `reference` steps (another
    seed: another training), over `archs` random architectures of the demo's family."""
    import numpy as np
    from scipy.stats import kendalltau

    from nas.engine.trial import build_trial_evaluator
    from nas.engine.driver import trial_spec

    cfg = search_config(["evaluator.type=surrogate", f"evaluator.surrogate.noise={noise}",
                         f"evaluator.surrogate.rate_spread={rate_spread}", f"search.seed={seed}"])
    ev = build_trial_evaluator(trial_spec(cfg).to_dict(), 0)
    from search_space import SearchSpace

    space = SearchSpace(cfg.search.family, window=cfg.search.window or None)
    rng = np.random.default_rng(seed + 1000)
    at: dict[int, list[float]] = {s: [] for s in steps}
    ref = []
    for _ in range(archs):
        arch = space.decode([int(rng.integers(n)) for n in space.num_choices])
        clean, rate = ev.landscape.ap(arch), ev.rate(arch)
        noise_a = ev.landscape.to_dict()["noise"] * ev.landscape._draws(arch, 0)[1]
        noise_b = ev.landscape.to_dict()["noise"] * ev.landscape._draws(arch, 1)[1]
        for s in steps:
            at[s].append(ev._ap(clean, rate, s, noise_a))
        ref.append(ev._ap(clean, rate, reference, noise_b))
    return {s: float(kendalltau(at[s], ref).statistic) for s in steps}


def calibration_taus() -> dict[int, float]:
    with open(RESULTS / "calibration-demo.json", encoding="utf-8") as fh:
        study = json.load(fh)
    return {int(r["step"]): float(r["all"]["tau"]) for r in study["rungs"]}


def shape(out: Path) -> dict[str, Any]:
    target = calibration_taus()
    steps = sorted(target)
    grid = []
    for noise in (0.0025, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05):
        for spread in (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5):
            taus = surrogate_taus(noise=noise, rate_spread=spread, steps=steps, reference=4 * steps[-1], archs=200)
            err = math.sqrt(statistics.fmean((taus[s] - target[s]) ** 2 for s in steps))
            grid.append({"noise": noise, "rate_spread": spread, "taus": {str(s): taus[s] for s in steps},
                         "rms_error": err})
    chosen = min(grid, key=lambda g: g["rms_error"])
    doc = {**provenance(__file__, sys.argv[1:]), "target_taus": {str(s): t for s, t in target.items()},
           "target_source": "results/calibration-demo.json, all candidates", "chosen": chosen, "grid": grid}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    return doc


# ------------------------------------------------------------------------------------------------ controllers
def surrogate_source(cfg: Any) -> CurveSource:
    from nas.engine.driver import trial_spec
    from nas.engine.trial import build_trial_evaluator

    ev = build_trial_evaluator(trial_spec(cfg).to_dict(), 0)

    def source(arch: Any, seed: int, index: int) -> Curve:
        aps: dict[int, float] = {}

        def report(step: int, metrics: Mapping[str, float]) -> bool:
            if metrics.get("ap") is not None:
                aps[step] = float(metrics["ap"])
            return False

        result = ev.evaluate(arch, seed=seed, report=report)
        return Curve(aps=aps, metrics=dict(result.metrics), flops=result.flops, params=result.params,
                     error=result.error)

    return source


def controller_run(controller: str, seed: int, cost: TrialCost, surrogate: Mapping[str, float], *,
                   trials: int, asha: Mapping[str, Any] | None, budget_s: float | None,
                   last_step: int = POOL_STEPS[-1]) -> dict[str, Any]:
    over = [f"search.trials={trials}", "search.workers=1", f"search.seed={seed}", f"controller.type={controller}",
            "evaluator.type=surrogate", f"evaluator.surrogate.noise={surrogate['noise']}",
            f"evaluator.surrogate.rate_spread={surrogate['rate_spread']}"]
    if asha is not None:
        over += asha_overrides(asha)
    cfg = search_config(over, last_step=last_step)
    t0 = time.perf_counter()
    outcome, runner, done = run_search(cfg, surrogate_source(cfg), cost, budget_s=budget_s,
                                       converged_after=CONVERGED_AFTER)
    completed = [t for t in done if t.status == "completed"]
    best = max(completed, key=lambda t: t.reward)
    return {"controller": controller, "seed": seed, "asha": dict(asha) if asha else None,
            "budget_spent": budget_s is None or runner.spent() >= budget_s, "trials": len(done),
            "completed": len(completed), "pruned": outcome.pruned, "cached": outcome.cached,
            "distinct_archs": len({t.arch_key for t in done}), "trial_s": runner.spent(),
            "best_reward": best.reward, "best_noiseless": best.metrics.get("ap_noiseless"),
            "best_key": best.arch_key, "wall_s": time.perf_counter() - t0}


def _label(setting: Mapping[str, Any] | None) -> str:
    if setting is None:
        return "none"
    name = setting.get("scheduler", "asha")
    rest = " ".join(f"{k} {v}" for k, v in setting.items() if k not in ("scheduler", "rungs"))
    return f"{name} rungs " + ",".join(map(str, setting["rungs"])) + (f" {rest}" if rest else "")


def controllers(seeds: int, trials: int, out: Path, settings: Sequence[Mapping[str, Any]], *,
                last_step: int = POOL_STEPS[-1]) -> dict[str, Any]:
    """PPO and evolution on the surrogate trained to `last_step` (the 800-step demo proxy's, whose rung taus `shape`
    matched), without a scheduler and with each of `settings`, on the budget of `trials` full trials."""
    with open(RESULTS / "early_stopping_shape.json", encoding="utf-8") as fh:
        chosen = json.load(fh)["chosen"]
    surrogate = {"noise": chosen["noise"], "rate_spread": chosen["rate_spread"]}
    cost = TrialCost.from_proxy_bench()
    doc: dict[str, Any] = {**provenance(__file__, sys.argv[1:]), "machine": machine(), "surrogate": surrogate,
                           "cost_model": dataclasses.asdict(cost), "seeds": seeds,
                           "last_step": last_step, "budget_s": trials * cost.trial(cost.ref_flops, last_step, 1),
                           "budget": f"what {trials} trials of the reference architecture trained to the end cost; "
                                     f"a search also stops after {CONVERGED_AFTER} cached trials in a row "
                                     "(converged: budget_spent false)", "runs": [], "summary": {}}

    def save() -> None:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)

    for controller in ("evolution", "ppo"):
        for seed in range(seeds):
            full = controller_run(controller, seed, cost, surrogate, trials=trials * 50, asha=None,
                                  budget_s=doc["budget_s"], last_step=last_step)
            doc["runs"].append({**full, "setting": "none"})
            print(f"{controller} seed {seed} none: best {full['best_reward']:.4f} ({full['trials']} trials, "
                  f"{full['wall_s']:.0f} s)", flush=True)
            for asha in settings:
                run = controller_run(controller, seed, cost, surrogate, trials=trials * 50, asha=asha,
                                     budget_s=doc["budget_s"], last_step=last_step)
                doc["runs"].append({**run, "asha": {**asha, "rungs": list(asha["rungs"])}, "setting": _label(asha)})
                print(f"{controller} seed {seed} {_label(asha)}: best {run['best_reward']:.4f} ({run['trials']} "
                      f"trials, {run['pruned']} pruned, {run['wall_s']:.0f} s)", flush=True)
            save()
        rows = {}
        for label in ("none", *map(_label, settings)):
            runs = [r for r in doc["runs"] if r["controller"] == controller and r["setting"] == label]
            rows[label] = {
                "median_best_reward": statistics.median(r["best_reward"] for r in runs),
                "median_best_noiseless": statistics.median(r["best_noiseless"] for r in runs),
                "median_trials": statistics.median(r["trials"] for r in runs),
                "median_distinct_archs": statistics.median(r["distinct_archs"] for r in runs),
                "median_pruned": statistics.median(r["pruned"] for r in runs),
                "converged_runs": sum(not r["budget_spent"] for r in runs)}
            if label != "none":
                rows[label]["target_met"] = rows[label]["median_best_reward"] >= rows["none"]["median_best_reward"]
        doc["summary"][controller] = rows
    save()
    return doc


# ------------------------------------------------------------------------------------------------ a real demo search
# The 800-step demo proxy, one trial at a time, as its recorded figures were measured (the preset's until 12-07).
DEMO_SEARCH = ("--preset", "demo", "--set", "proxy.train_steps=800", "--workers", "1", "--cpus-per-trial", "2",
               "--scheduler", "asha", "--rungs", "400", "--eta", "3", "--trials", "100")
# make search (PPO, no scheduler, the same preset and seed: the same first proposals) from a fresh clone, README:
# its 6 trials' minutes (without setup and export) and its best AP.
MAKE_SEARCH = {"archs": 6, "best_ap": 0.469, "trial_minutes": [27.7, 32.4], "dates": ["2026-12-01", "2026-12-02"],
               "source": "README, Start here: make search from a fresh clone (the 6 trials of the demo preset)"}


def run_demo(db: Path, name: str, minutes: float) -> dict[str, Any]:
    """Run the demo search with ASHA (`DEMO_SEARCH`) for `minutes` after its first trial started (plus its start-up),
    then stop it as Ctrl-C does; whatever happens, its process group (the driver and its Ray) is gone on return."""
    cmd = [sys.executable, "-m", "nas.cli", "search", *DEMO_SEARCH, "--name", name, "--db", str(db),
           "--run-dir", str(db.with_suffix("")), "--top", "0", "--plain"]
    start = time.monotonic()
    with open(db.with_suffix(".log"), "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # The search's start-up (Ray, the dataset) is not the trials' time: the window opens at the first start.
            while proc.poll() is None and _first_start(db, name) is None:
                time.sleep(5)
            try:
                proc.wait(timeout=minutes * 60 + 5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)  # the search stores what finished; the trial in flight is not counted
                proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    if proc.returncode not in (0, 130):
        raise SystemExit(f"early_stopping.py demo: the search exited with {proc.returncode}; see "
                         f"{db.with_suffix('.log')}")
    return {"returncode": proc.returncode, "run_s": round(time.monotonic() - start, 1)}


def _first_start(db: Path, name: str) -> datetime.datetime | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT MIN(t.started_at) FROM trials t JOIN searches s ON s.id = t.search_id "
                              "WHERE s.name = ?", (name,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:  # not yet created, or being created
        return None
    return datetime.datetime.fromisoformat(row[0]) if row and row[0] else None


def summarize_demo(db: Path, name: str, minutes: float) -> dict[str, Any]:
    """What a real search evaluated in its first `minutes` of trials (from its first trial's start): the completed
    and pruned trials that finished by then. A failed trial is counted apart (it cost time, evaluated nothing)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            'SELECT t."index", t.arch_key, t.status, t.reward, t.metrics, t.wall_s, t.finished_at, t.started_at '
            'FROM trials t JOIN searches s ON s.id = t.search_id WHERE s.name = ? ORDER BY t."index"',
            (name,)).fetchall()
    finally:
        con.close()
    starts = [datetime.datetime.fromisoformat(r[7]) for r in rows if r[7]]
    if not starts:
        raise SystemExit(f"early_stopping.py demo: search {name!r} in {db} has no trial that started")
    first = min(starts)
    trials, failed = [], 0
    for index, key, status, reward, metrics, wall_s, finished, _ in rows:
        # Both times are naive UTC as the store writes them: their difference needs no time zone.
        elapsed = (datetime.datetime.fromisoformat(finished) - first).total_seconds() if finished else None
        if elapsed is None or elapsed > minutes * 60:
            continue
        if status == "failed":
            failed += 1
        if status not in ("completed", "pruned"):
            continue
        m = json.loads(metrics or "{}")
        trials.append({"index": index, "key": key, "status": status, "ap": m.get("ap"), "reward": reward,
                       "steps": m.get("steps"), "wall_s": wall_s, "finished_min": round(elapsed / 60, 2)})
    completed = [t for t in trials if t["status"] == "completed"]
    best = max(completed, key=lambda t: t["ap"], default=None)
    return {"search": name, "minutes": minutes, "first_trial_start_utc": first.isoformat(),
            "search_command": "spinenas search " + " ".join(DEMO_SEARCH) + f" --name {name}",
            "archs_evaluated": len(trials), "completed": len(completed), "pruned": len(trials) - len(completed),
            "failed": failed, "best_ap": best["ap"] if best else None, "best_key": best["key"] if best else None,
            "trial_s": sum(t["wall_s"] or 0.0 for t in trials), "trials": trials, "make_search": MAKE_SEARCH}


# ------------------------------------------------------------------------------------------------ main
def _steps_arg(text: str) -> tuple[int, ...]:
    """`--steps`: ascending positive steps, at least one before the last (a rung needs one)."""
    try:
        steps = tuple(int(s) for s in text.split(","))
    except ValueError:
        steps = ()
    if len(steps) < 2 or steps[0] <= 0 or list(steps) != sorted(set(steps)):
        raise argparse.ArgumentTypeError(f"expected at least two ascending positive steps such as 100,200,400, "
                                         f"got {text!r}")
    return steps


def _db_arg(text: str) -> Path | None:
    return None if text.lower() == "none" else Path(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line (its defaults are those the recorded results were made with)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pool", help="the pool of real curves -> results/early-stopping-pool.json")
    p.add_argument("--steps", type=_steps_arg, default=POOL_STEPS,
                   help="the steps every curve needs an AP at, the last the one its trials train to (default "
                   + ",".join(map(str, POOL_STEPS)) + ")")
    p.add_argument("--pool-db", type=_db_arg, default=RESULTS / "es-pool.db",
                   help="the database of the pool search, or none: the calibration's curves alone (default "
                   "scripts/bench/results/es-pool.db, the one results/early-stopping-pool.json was made from)")
    p.add_argument("--pool-search", default=POOL_SEARCH, help=f"the pool search's name (default {POOL_SEARCH})")
    p.add_argument("--calibration-db", type=Path, default=CALIBRATION_DB,
                   help=f"the calibration study's database (default {_rel(CALIBRATION_DB)})")
    p.add_argument("--calibration-study", default=CALIBRATION_STUDY,
                   help=f"the calibration study (default {CALIBRATION_STUDY}); a study of variants works too")
    p.add_argument("--calibration-variant", default=None,
                   help="in a study of variants, the variant whose curves are taken (needed when several train to "
                   "the last step)")
    p.add_argument("--out", type=Path, default=POOL, help=f"the pool file (default {_rel(POOL)})")
    r = sub.add_parser("replay", help="ASHA and the median rule against full training on the pool")
    r.add_argument("--orders", type=int, default=20)
    r.add_argument("--seed", type=int, default=0, help="draws the orders")
    r.add_argument("--pool", type=Path, default=POOL, help="the pool (default results/early-stopping-pool.json)")
    r.add_argument("--out", type=Path, default=RESULTS / "early_stopping_replay.json")
    for part, what in (("setup", "a warm trial's build and trace"), ("eval", "one evaluation"),
                       ("step", "the reference architecture's step")):
        r.add_argument(f"--{part}-s", type=float, default=None,
                       help=f"re-price: seconds of {what} (default: results/proxy.json's)")
    r.add_argument("--oracle", action="store_true",
                   help="judge every rung on the curve's final AP (a perfect early ranking): the ratio the costs "
                   "alone allow")
    b = sub.add_parser("bound", help="ASHA's long-search bound (its per-trial cost over full training's) per rung set "
                       "and eta, at results/proxy.json's costs and re-priced -> results/early_stopping_bound.json")
    b.add_argument("--out", type=Path, default=RESULTS / "early_stopping_bound.json")
    s = sub.add_parser("shape", help="the surrogate's curve settings whose rung taus match the demo calibration's")
    s.add_argument("--out", type=Path, default=RESULTS / "early_stopping_shape.json")
    c = sub.add_parser("controllers", help="PPO and evolution on the surrogate, with and without ASHA")
    c.add_argument("--seeds", type=int, default=5)
    c.add_argument("--trials", type=int, default=2000, help="the budget: what this many full trials cost")
    c.add_argument("--out", type=Path, default=RESULTS / "early_stopping_controllers.json")
    d = sub.add_parser("demo", help="a real demo search with ASHA for --minutes, then what it evaluated")
    d.add_argument("--minutes", type=float, default=30.0)
    d.add_argument("--db", type=Path, default=ROOT / "runs" / "asha-demo.db",
                   help="its database (default runs/asha-demo.db; its run folder and log beside it)")
    d.add_argument("--name", default="asha-demo")
    d.add_argument("--summarize", action="store_true",
                   help="do not run: summarize the search already in --db (e.g. one run by hand with the command "
                   "in --help, stopped by Ctrl-C)")
    d.add_argument("--out", type=Path, default=RESULTS / "early_stopping_demo.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.what == "demo":
        if args.summarize and not args.db.exists():
            parser.error(f"no database at {args.db}: run without --summarize first")
        if not args.summarize and args.db.exists():
            parser.error(f"{args.db} exists: remove it, or add --summarize to read it")
        ran = None
        if not args.summarize:
            args.db.parent.mkdir(parents=True, exist_ok=True)
            ran = run_demo(args.db, args.name, args.minutes)
        doc = {**provenance(__file__, argv), "machine": machine(), "run": ran,
               **summarize_demo(args.db, args.name, args.minutes)}
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        low, high = MAKE_SEARCH["trial_minutes"]
        print(f"{args.name}: {doc['archs_evaluated']} architectures in {args.minutes:g} min ({doc['completed']} "
              f"completed, {doc['pruned']} pruned, {doc['failed']} failed), best AP {doc['best_ap']}; make search: "
              f"{MAKE_SEARCH['archs']} in {low}-{high} min, best AP {MAKE_SEARCH['best_ap']} -> "
              f"{os.path.relpath(args.out, ROOT)}")
        return 0
    if args.what == "pool":
        if args.pool_db is not None and not args.pool_db.exists():
            parser.error(f"no database at {args.pool_db}: run the pool search first (see --help), or --pool-db none")
        if not args.calibration_db.exists():
            parser.error(f"no database at {args.calibration_db}")
        try:
            doc = build_pool(args.pool_db, args.out, steps=args.steps, pool_search=args.pool_search,
                             calibration_db=args.calibration_db, calibration_study=args.calibration_study,
                             calibration_variant=args.calibration_variant)
        except PoolError as e:
            parser.error(str(e))
        counts = ", ".join(f"{n} from {s}" for s, n in doc["counts"].items())
        print(f"pool: {len(doc['archs'])} architectures ({counts}) at steps {','.join(map(str, doc['steps']))} -> "
              f"{_rel(args.out)}")
        return 0
    if args.what == "replay":
        for part in ("setup_s", "eval_s", "step_s"):
            if getattr(args, part) is not None and not getattr(args, part) >= 0:
                parser.error(f"--{part.replace('_', '-')}: expected seconds >= 0, got {getattr(args, part)}")
        print_replay(replay(args.orders, args.seed, args.out, args.pool,
                            {k: getattr(args, k) for k in ("setup_s", "eval_s", "step_s")}, oracle=args.oracle))
        return 0
    if args.what == "bound":
        doc = bound_table(args.out)
        for row in doc["rows"]:
            print(f"{row['costs']:34s} {row['last_step']:4d} steps, rungs {','.join(map(str, row['rungs'])):12s} "
                  f"eta {row['eta']}: {row['bound']:.2f}")
        return 0
    if args.what == "shape":
        doc = shape(args.out)
        print(f"target taus {doc['target_taus']}; chosen noise {doc['chosen']['noise']} rate_spread "
              f"{doc['chosen']['rate_spread']}: {doc['chosen']['taus']} (rms {doc['chosen']['rms_error']:.3f})")
        return 0
    doc = controllers(args.seeds, args.trials, args.out, ASHA_SETTINGS)
    print(json.dumps(doc["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

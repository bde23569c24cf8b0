"""The search job's driver: propose, dedup, run trials on Ray, record every result at once, learn, checkpoint.

One driver process owns the controller, the Ray submissions and the database writes (STYLE.md: only `nas` writes,
from one process). The loop:

1. keeps `workers` trials in flight: asks the controller for a proposal, decodes it, and either reuses a stored
   result for its key (a 'cached' trial, fed back at once), waits for the same key already in flight, or submits a
   Ray task;
2. collects results with `ray.wait` as they come; each is written to the store in one transaction with its status,
   then fed back to the controller; the controller's state is checkpointed after an update it makes (at most one
   per `checkpoint_interval_s`, and once more when the search ends);
3. cancels trials that outlive `trial_timeout_s` and stores them as failed; a worker that dies is retried by Ray.

Every checkpoint records how many feedbacks the controller had received; feedback order is the store's completion
order, so a resume loads the last checkpoint and replays exactly the trials finished after it (see `_restore`).
That replay is why checkpoints need not follow every update: the controller is a deterministic function of its
seed and the feedback sequence, which the store holds trial by trial. A real search updates every few minutes and
stores every update; a fast one stores its ~2 MB PPO state about once a second instead of every 10 trials.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from nas.config import NasConfig
from nas.config_io import to_dict, to_yaml
from nas.ray_runner import EvaluatorSpec, remote_trial
from nas.reward import compute_reward
from proxy_task.result import ProxyResult
from search_space import ArchSpec, SearchSpace

logger = logging.getLogger(__name__)

HEARTBEAT_S = 60.0
# Placeholder result fingerprint (results_db schema 0002) until the driver computes the real one from the evaluator,
# the score-changing proxy settings and the reward function: every search this driver writes stores and looks up
# this one, so stored results are reused across searches exactly as before fingerprints existed.
RESULT_FINGERPRINT = "placeholder"


@dataclasses.dataclass
class _InFlight:
    trial_id: int  # database id
    index: int  # index within the search (seeds the trial)
    ctrl_id: int  # the controller's trial id
    key: str
    arch: ArchSpec
    decisions: tuple[int, ...]
    submitted: float
    ref: Any = None


@dataclasses.dataclass
class SearchOutcome:
    """What a finished (or interrupted) search did."""

    name: str
    trials: int
    completed: int
    failed: int
    cached: int
    best_reward: float | None
    best_key: str | None
    wall_s: float
    interrupted: bool = False
    checkpoints: int = 0  # controller checkpoints this run stored


def evaluator_spec(cfg: NasConfig, faults: dict[str, Any] | None = None, fault_dir: str = "") -> EvaluatorSpec:
    """The plain-data evaluator description sent with every trial."""
    s = cfg.search
    return EvaluatorSpec(
        kind=s.evaluator,
        proxy=to_dict(cfg.proxy),
        surrogate={"target_seed": s.seed, "noise": s.surrogate_noise, "family": s.family,
                   "window": s.window or None},
        duration_s=s.surrogate_duration_s,
        cpus=s.cpus_per_trial,
        faults=faults or {},
        fault_dir=fault_dir,
    )


class SearchDriver:
    """Runs one search to its trial budget.

    Args:
      cfg: the resolved config.
      name: the search's name.
      store: an open `results_db.ResultStore` (writer).
      run_dir: where TensorBoard scalars and the log go.
      resume: continue the stored search `name` instead of creating it.
      faults: fault injection for tests and benchmarks (see `nas.ray_runner.EvaluatorSpec`).
      out: where progress lines go (print by default).
    """

    def __init__(
        self,
        cfg: NasConfig,
        *,
        name: str,
        store: Any,
        run_dir: str,
        resume: bool = False,
        faults: dict[str, Any] | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        from controller import build_controller, get_config_class

        self.cfg = cfg
        self.name = name
        self.store = store
        self.run_dir = run_dir
        self.resume = resume
        self.out = out
        s = cfg.search
        self.space = SearchSpace(s.family, window=s.window or None)
        config_cls = get_config_class(s.controller)
        ctrl_config = config_cls(reward_for_failure=s.reward_for_failure) if _has_field(
            config_cls, "reward_for_failure") else config_cls()
        self.controller = build_controller(s.controller, self.space, seed=s.seed, config=ctrl_config)
        self.spec = evaluator_spec(cfg, faults, fault_dir=os.path.join(run_dir, "faults"))
        self.inflight: dict[Any, _InFlight] = {}
        self.waiting: dict[str, list[_InFlight]] = {}  # key -> trials waiting for the same key in flight
        self.requeue: list[_InFlight] = []
        self.finished = 0
        self.counts = {"completed": 0, "failed": 0, "cached": 0}
        self.best: tuple[float, str] | None = None
        self.wall_times: list[float] = []
        self._updates_seen = _num_updates(self.controller)
        self._feedbacks = 0  # feedbacks given, in the store's completion order
        self._stored_feedbacks = 0  # feedbacks the last stored checkpoint includes
        self._last_checkpoint = time.monotonic()
        self.checkpoints = 0  # controller checkpoints written by this driver
        # For benchmarks: seconds blocked in ray.wait, worker-side (start, end) of every trial, submit times.
        self.stats: dict[str, Any] = {"wait_s": 0.0, "intervals": [], "submits": []}
        self._next_index = 0
        self._t0 = time.time()
        self._last_heartbeat = time.time()
        self._tb: Any = None

    # ------------------------------------------------------------------------------------------- setup
    def start(self) -> None:
        """Creates the search row, or restores a resumed search's controller and in-flight trials."""
        s = self.cfg.search
        if self.resume:
            self._restore()
        else:
            self.store.create_search(self.name, config=to_yaml(self.cfg), seed=s.seed, controller=s.controller,
                                     family=s.family, fingerprint=RESULT_FINGERPRINT)
        from nas.tensorboard import ScalarWriter

        os.makedirs(self.run_dir, exist_ok=True)
        self._tb = ScalarWriter(os.path.join(self.run_dir, "tensorboard"))

    def _restore(self) -> None:
        """Controller from its last checkpoint plus the trials finished after it; in-flight trials re-queued."""
        trials = self.store.trials(self.name)
        done = sorted((t for t in trials if t.status in ("completed", "failed", "cached")),
                      key=lambda t: t.finish_order or 0)
        ckpt = self.store.load_checkpoint(self.name)
        fed = 0
        if ckpt is not None:
            self.controller.load_state_dict(ckpt.state["controller"])
            fed = int(ckpt.state["feedbacks"])
        again = [t for t in sorted(trials, key=lambda t: t.index) if t.status in ("running", "queued")]
        proposals = self.controller.recover([(t.decisions, t.reward) for t in done[fed:]],
                                            pending=[t.decisions for t in again])
        self._feedbacks = len(done)
        self._stored_feedbacks = fed
        self._next_index = max((t.index for t in trials), default=-1) + 1
        self._updates_seen = _num_updates(self.controller)
        for t in done:
            self.finished += 1
            self.counts[t.status] += 1
            if t.reward is not None and (self.best is None or t.reward > self.best[0]):
                self.best = (t.reward, t.arch_key)
            if t.wall_s and t.status != "cached":
                self.wall_times.append(t.wall_s)
        for t, p in zip(again, proposals):
            arch = ArchSpec.from_json(self.store.get_arch(t.arch_key).spec_json)
            self.requeue.append(_InFlight(t.id, t.index, p.trial_id, t.arch_key, arch, tuple(t.decisions), 0.0))
        self.store.set_search_status(self.name, "running")
        self.out(f"resuming search {self.name!r}: {self.finished} trials done, {len(self.requeue)} to run again; "
                 f"controller from {'its update ' + str(ckpt.step) + ' checkpoint' if ckpt else 'the history'}, "
                 f"{len(done) - fed} trials replayed")

    # ------------------------------------------------------------------------------------------- loop
    def run(self) -> SearchOutcome:
        """Runs until `search.trials` trials have finished (Ctrl-C stops cleanly; resume later)."""
        import ray

        budget = self.cfg.search.trials
        interrupted = False
        try:
            for item in self.requeue:
                self._submit(item, restart=True)
            self.requeue = []
            while self.finished < budget:
                issued = self.finished + len(self.inflight) + sum(len(w) for w in self.waiting.values())
                while len(self.inflight) < self.cfg.search.workers and issued < budget:
                    self._propose_one()
                    issued = self.finished + len(self.inflight) + sum(len(w) for w in self.waiting.values())
                if not self.inflight:
                    if self.finished < budget and issued >= budget:
                        raise RuntimeError("internal error: trials waiting with nothing in flight")
                    continue
                t_wait = time.perf_counter()
                refs = list(self.inflight)
                ready, rest = ray.wait(refs, num_returns=1, timeout=1.0)
                if ready and rest:  # take every result that is already there, not just the first
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                self.stats["wait_s"] += time.perf_counter() - t_wait
                for ref in ready:
                    self._collect(ref)
                self._check_timeouts()
                self._heartbeat()
        except KeyboardInterrupt:
            interrupted = True
            self.out(f"interrupted: {len(self.inflight)} running trials stay 'running' and run again on "
                     f"'spinenas search --resume {self.name}'")
            for ref in list(self.inflight):
                ray.cancel(ref, force=True)
            # No checkpoint here: Ctrl-C may have landed inside the controller's propose() or feedback(), so its
            # state may not match the feedback count; the stored checkpoint plus replay is exact instead.
            self.store.set_search_status(self.name, "stopped")
        else:
            self._final_checkpoint()
            self.store.set_search_status(self.name, "completed")
        finally:
            if self._tb is not None:
                self._tb.close()
        return SearchOutcome(
            name=self.name,
            trials=self.finished,
            completed=self.counts["completed"],
            failed=self.counts["failed"],
            cached=self.counts["cached"],
            best_reward=self.best[0] if self.best else None,
            best_key=self.best[1] if self.best else None,
            wall_s=time.time() - self._t0,
            interrupted=interrupted,
            checkpoints=self.checkpoints,
        )

    def _propose_one(self) -> None:
        from results_db.records import NewTrial

        [proposal] = self.controller.propose(1)
        arch = self.space.decode(proposal.decisions)
        key = self.store.register_arch(arch, family=self.cfg.search.family)
        known = self.store.find_result(key, fingerprint=RESULT_FINGERPRINT)
        in_flight = known is None and any(f.key == key for f in self.inflight.values())
        run_now = known is None and not in_flight
        # A trial that runs now is stored as running at once (one transaction); the others wait as queued.
        [trial_id] = self.store.add_trials(self.name, [NewTrial(key, proposal.decisions)],
                                           status="running" if run_now else "queued", fingerprint=RESULT_FINGERPRINT)
        index = self._next_index
        self._next_index += 1
        item = _InFlight(trial_id, index, proposal.trial_id, key, arch, tuple(proposal.decisions), time.time())
        if known is not None:
            self._finish_cached(item, known.reward, known.trial_id, known.metrics)
        elif in_flight:
            self.waiting.setdefault(key, []).append(item)
        else:
            self._submit(item, started=True)

    def _submit(self, item: _InFlight, restart: bool = False, started: bool = False) -> None:
        s = self.cfg.search
        if not started:
            self.store.start_trial(item.trial_id, host=None)
        seed = self.cfg.proxy.seed + item.index
        options: dict[str, Any] = {"num_cpus": s.cpus_per_trial}
        if s.gpus_per_trial:
            options["num_gpus"] = s.gpus_per_trial
        item.submitted = time.time()
        self.stats["submits"].append(item.submitted)
        fresh = not (s.reuse_workers and s.evaluator == "surrogate")
        item.ref = remote_trial(fresh).options(**options).remote(dataclasses.asdict(self.spec), item.arch.to_json(),
                                                            item.index, seed)
        self.inflight[item.ref] = item
        logger.info("[trial %d] submitted %s%s", item.index, item.key, " (again)" if restart else "")

    def _collect(self, ref: Any) -> None:
        import ray

        item = self.inflight.pop(ref)
        host = None
        try:
            payload = ray.get(ref)
            result = ProxyResult.from_dict(payload["result"])
            host = payload.get("host")
            self.stats["intervals"].append((payload["started"], payload["started"] + result.wall_s))
        except Exception as e:  # noqa: BLE001 - a worker that died past its retries, a cancelled task
            result = ProxyResult(metrics={}, wall_s=time.time() - item.submitted,
                                 error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500])
        self._finish(item, result, host)

    def _finish(self, item: _InFlight, result: ProxyResult, host: str | None) -> None:
        reward = compute_reward(result, self.cfg.search)
        status = "completed" if reward is not None else "failed"
        error = result.error
        if status == "failed" and error is None:
            error = f"no usable AP (ap={result.metrics.get('ap')})"
        metrics = {k: v for k, v in result.metrics.items() if v is None or math.isfinite(v)}
        self.store.finish_trial(item.trial_id, status=status, reward=reward, metrics=metrics, error=error,
                                wall_s=result.wall_s, flops=result.flops, params=result.params, host=host)
        self._feedback(item, reward)
        self._record(item, status, reward, result.wall_s, error)
        for other in self.waiting.pop(item.key, []):
            if status == "completed":
                self._finish_cached(other, reward, item.trial_id, metrics)
            else:
                self._submit(other)

    def _finish_cached(self, item: _InFlight, reward: float | None, source: int | None,
                       metrics: dict[str, Any] | None) -> None:
        self.store.finish_trial(item.trial_id, status="cached", reward=reward, metrics=metrics or {}, wall_s=0.0,
                                cached_from=source)
        self._feedback(item, reward)
        self._record(item, "cached", reward, 0.0, None)

    def _feedback(self, item: _InFlight, reward: float | None) -> None:
        self.controller.feedback(item.ctrl_id, reward)
        self._feedbacks += 1
        self._note_updates()

    def _note_updates(self) -> None:
        n = _num_updates(self.controller)
        if n != self._updates_seen:
            self._updates_seen = n
            if time.monotonic() - self._last_checkpoint >= self.cfg.search.checkpoint_interval_s:
                self._save_checkpoint()
            # The PPO controller's last update: mean entropy of its policy, in nats per decision.
            entropy = (getattr(self.controller, "last_update_stats", None) or {}).get("entropy")
            if entropy is not None and self._tb is not None:
                self._tb.scalar("controller/policy_entropy", entropy, n)

    def _final_checkpoint(self) -> None:
        # What the last interval held back: a resume after a clean end (a longer budget) then replays nothing.
        if self._feedbacks != self._stored_feedbacks:
            self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        state = {"controller": self.controller.state_dict(), "feedbacks": self._feedbacks}
        self.store.save_checkpoint(self.name, self._updates_seen, state)
        self._stored_feedbacks = self._feedbacks
        self._last_checkpoint = time.monotonic()
        self.checkpoints += 1

    def _check_timeouts(self) -> None:
        import ray

        limit = self.cfg.search.trial_timeout_s
        if not limit:
            return
        now = time.time()
        for ref, item in list(self.inflight.items()):
            if now - item.submitted > limit:
                ray.cancel(ref, force=True)
                self.inflight.pop(ref)
                self._finish(item, ProxyResult(metrics={}, wall_s=now - item.submitted,
                                               error=f"timeout: still running after {limit:.0f} s"), None)

    # ------------------------------------------------------------------------------------------- progress
    def _record(self, item: _InFlight, status: str, reward: float | None, wall_s: float, error: str | None) -> None:
        self.finished += 1
        self.counts[status] += 1
        if reward is not None and (self.best is None or reward > self.best[0]):
            self.best = (reward, item.key)
        if status != "cached" and wall_s:
            self.wall_times.append(wall_s)
        step = self.finished
        if self._tb is not None:
            if reward is not None:
                self._tb.scalar("search/reward", reward, step)
            if self.best is not None:
                self._tb.scalar("search/best_reward", self.best[0], step)
            if status != "cached":
                self._tb.scalar("search/trial_seconds", wall_s, step)
            self._tb.flush()
        budget = self.cfg.search.trials
        what = f"reward {reward:.4f}" if reward is not None else f"FAILED ({error})"
        if status == "cached":
            what += " (cached: this architecture already has a result)"
        self.out(f"[{step}/{budget}] trial {item.index} {item.key} {what} {wall_s:.0f} s | {self._status_line()}")
        self._last_heartbeat = time.time()

    def _status_line(self) -> str:
        budget = self.cfg.search.trials
        best = f"{self.best[0]:.4f}" if self.best else "-"
        line = (f"done {self.counts['completed']} failed {self.counts['failed']} cached {self.counts['cached']} "
                f"running {len(self.inflight)} | best {best}")
        if self.wall_times:
            per = sum(self.wall_times) / len(self.wall_times)
            left = budget - self.finished
            eta = per * math.ceil(left / max(1, self.cfg.search.workers))
            line += f" | {per:.0f} s/trial | ETA {_duration(eta)}"
        return line

    def _heartbeat(self) -> None:
        if time.time() - self._last_heartbeat < HEARTBEAT_S:
            return
        self._last_heartbeat = time.time()
        ages = ", ".join(f"trial {i.index} {time.time() - i.submitted:.0f} s" for i in self.inflight.values())
        self.out(f"  ... running: {ages} | {self._status_line()}")


def _has_field(cls: type, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(cls)}


def _num_updates(controller: Any) -> int:
    return int(getattr(controller, "num_updates", controller.num_rewards))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"

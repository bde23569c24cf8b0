"""The search job's driver: propose, dedup, run trials on a runner, record every report and result at once, learn.

One driver process owns the controller, the runner and the database writes (STYLE.md: only `nas` writes, from one
process). The loop:

1. keeps `workers` trials in flight: asks the controller for a proposal, decodes it, and either rejects it when
   its FLOPs are over ``search.max_flops`` (a 'rejected' trial, fed back at once as a failure, never trained),
   reuses a stored result for its key and fingerprint (a 'cached' trial, fed back at once), waits for the same key
   already in flight, or submits it to the runner (`nas.engine.runners`: Ray tasks by default, child processes with
   ``local``);
2. takes what the runner hands back as it comes: a trial's reports (its learning curve: loss every
   ``proxy.log_every`` steps, AP at ``proxy.eval_at_steps``) are stored, shown and written to TensorBoard while
   it runs; a finished trial is written to the store in one transaction with its status and its last reports,
   then fed back to the controller; the controller's state is checkpointed after an update it makes (at most one
   per `checkpoint_interval_s`, and once more when the search ends);
3. cancels trials that outlive `trial_timeout_s` and stores them as failed; a worker that dies is retried by the
   runner;
4. gives every running trial's intermediate reward at a rung to the scheduler (`nas.engine.schedulers`: ``asha``,
   ``median``; ``none`` has no rungs) and stops the trials it says to through the runner's cooperative stop: such a
   trial is stored as 'pruned' with its rung and its metrics so far, and fed back with the reward the scheduler's
   `pruned_reward` gives, which is stored with it (a resume feeds the stored value). Every finished trial is told
   to the scheduler, and so are a resumed search's stored ones and a cached trial's source, with their stored
   curves. An architecture with a pruned trial is known to the dedup, as a completed one is, unless
   ``search.retry_pruned``.

Every checkpoint records how many feedbacks the controller had received; feedback order is the store's completion
order, so a resume loads the last checkpoint and replays exactly the trials finished after it (see `_restore`).
That replay is why checkpoints need not follow every update: the controller is a deterministic function of its
seed and the feedback sequence, which the store holds trial by trial. A real search updates every few minutes and
stores every update; a fast one stores its ~2 MB PPO state about once a second instead of every 10 trials.

A stored result is reused only from a trial with the same fingerprint (`nas.engine.fingerprint`): the same evaluator,
score-changing settings and reward function.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from nas.config.schema import NasConfig, controller_config, scheduler_rungs, trial_proxy
from nas.config.codec import to_dict, to_yaml
from nas.cli.console import PlainView
from nas.engine.fingerprint import fingerprint
from nas.engine.reward import compute_reward
from nas.engine.lease import LeaseLostError
from nas.engine.runners import Runner, TrialSpec
from nas.engine.schedulers import Decision, build_scheduler
from nas.engine.trial_loop import InFlight, TrialLoop
from proxy_task.result import ProxyResult
from results_db.status import FINISHED_STATUSES, OPEN_STATUSES, SearchStatus, TrialStatus
from search_space import ArchSpec, SearchSpace

logger = logging.getLogger(__name__)


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
    rejected: int = 0  # over search.max_flops: stored, fed back as failures, never trained
    pruned: int = 0  # stopped at a rung by the scheduler


def trial_spec(cfg: NasConfig, faults: Mapping[str, Any] | None = None, fault_dir: str = "",
               log_path: str = "") -> TrialSpec:
    """The plain-data description every trial of the search evaluates with."""
    s = cfg.search
    section = cfg.evaluator.get()
    return TrialSpec(
        evaluator=cfg.evaluator.type,
        settings=to_dict(section) if section is not None else {},
        proxy=to_dict(trial_proxy(cfg)),
        context={"family": s.family, "window": s.window or None, "search_seed": s.seed, "cpus": s.cpus_per_trial,
                 "gpus": s.gpus_per_trial},
        faults=dict(faults or {}),
        fault_dir=fault_dir,
        log_path=log_path,
    )


class SearchDriver(TrialLoop):
    """Runs one search to its trial budget.

    Args:
      cfg: the resolved config.
      name: the search's name.
      store: an open `results_db.ResultStore` (writer).
      run_dir: where TensorBoard scalars and the log go.
      resume: continue the stored search `name` instead of creating it.
      faults: fault injection for tests and benchmarks (`nas.engine.faults`).
      out: where progress lines go (print by default), unless `view` is given.
      view: the console view (`nas.cli.console`); default a `PlainView` on `out`.
      runner: the runner to use; default the one ``cfg.runner`` names, built in `start` (the ray runner needs
        `nas.engine.runners.ray_runner.init_ray` first).
      tensorboard: write TensorBoard scalars (the search's and every trial's curve) under `run_dir`.
    """

    def __init__(
        self,
        cfg: NasConfig,
        *,
        name: str,
        store: Any,
        run_dir: str,
        resume: bool = False,
        faults: Mapping[str, Any] | None = None,
        out: Callable[[str], None] = print,
        view: Any = None,
        runner: Runner | None = None,
        tensorboard: bool = True,
    ) -> None:
        from controller import build_controller

        s = cfg.search
        super().__init__(cfg, name=name, store=store, run_dir=run_dir,
                         spec=trial_spec(cfg, faults, fault_dir=os.path.join(run_dir, "faults"),
                                         log_path=os.path.join(run_dir, "search.log")),
                         view=view if view is not None else PlainView(out), runner=runner, tensorboard=tensorboard)
        self.resume = resume
        self.space = SearchSpace(s.family, window=s.window or None)
        self.controller = build_controller(cfg.controller.type, self.space, seed=s.seed,
                                           config=controller_config(cfg))
        self.fingerprint = fingerprint(cfg)
        self.waiting: dict[str, list[InFlight]] = {}  # key -> trials waiting for the same key in flight
        self.requeue: list[InFlight] = []
        self.finished = 0
        self.counts = {TrialStatus.COMPLETED: 0, TrialStatus.FAILED: 0, TrialStatus.CACHED: 0,
                       TrialStatus.REJECTED: 0, TrialStatus.PRUNED: 0}
        self.max_flops = s.max_flops
        self._num_classes: int | None = None  # the detector's, for its FLOPs (read at their first use)
        self._flops: dict[str, tuple[int, int]] = {}  # key -> (flops, params) of the proposals over the limit
        self.best: tuple[float, str] | None = None
        self.wall_times: list[float] = []
        self._updates_seen = _num_updates(self.controller)
        self._feedbacks = 0  # feedbacks given, in the store's completion order
        self._stored_feedbacks = 0  # feedbacks the last stored checkpoint includes
        self._last_checkpoint = time.monotonic()
        self.checkpoints = 0  # controller checkpoints written by this driver
        self._next_index = 0
        self._t0 = time.time()
        self.scheduler = build_scheduler(cfg.scheduler.type, cfg.scheduler.get(), scheduler_rungs(cfg))
        self._prune: dict[int, tuple[int, float]] = {}  # trial id -> (rung, reward there) of a trial told to stop
        self._arch_flops: dict[str, float | None] = {}  # key -> FLOPs, for an intermediate 'ap-flops' reward

    # ------------------------------------------------------------------------------------------- setup
    def prepare(self) -> None:
        """Creates the search row, or restores a resumed search's controller and in-flight trials (no runner yet: a
        driver killed between the two leaves a search that resumes)."""
        s = self.cfg.search
        if self.resume:
            self._restore()
        else:
            self.store.create_search(self.name, config=to_yaml(self.cfg), seed=s.seed,
                                     controller=self.cfg.controller.type, family=s.family,
                                     fingerprint=self.fingerprint)

    def start_runner(self) -> None:
        """The runner the config names (the ray runner needs Ray up: `ray_runner.init_ray`), with warm
        workers when the search reuses them."""
        self._start_runner(trials_per_worker=worker_calls(self.cfg))

    def _restore(self) -> None:
        """Controller from its last checkpoint plus the trials finished after it; in-flight trials re-queued."""
        record = self.store.open_search(self.name)
        if getattr(record, "fingerprint", None) is None:
            self.store.set_search_fingerprint(self.name, self.fingerprint)  # a search stored before fingerprints
        elif record.fingerprint != self.fingerprint:
            # What a fingerprint holds changed since the search began: its trials keep the one they started with,
            # so they still dedup against each other and `top --search` still ranks them together.
            logger.warning("search %r: keeping its stored fingerprint %s (today's rule gives %s)", self.name,
                           record.fingerprint, self.fingerprint)
            self.fingerprint = record.fingerprint
        trials = self.store.trials(self.name)
        done = sorted((t for t in trials if t.status in FINISHED_STATUSES), key=lambda t: t.finish_order or 0)
        ckpt = self.store.load_checkpoint(self.name)
        fed = 0
        if ckpt is not None:
            self.controller.load_state_dict(ckpt.state["controller"])
            fed = int(ckpt.state["feedbacks"])
        again = [t for t in sorted(trials, key=lambda t: t.index) if t.status in OPEN_STATUSES]
        proposals = self.controller.recover([(t.decisions, t.reward) for t in done[fed:]],
                                            pending=[t.decisions for t in again])
        self._feedbacks = len(done)
        self._stored_feedbacks = fed
        self._next_index = max((t.index for t in trials), default=-1) + 1
        self._updates_seen = _num_updates(self.controller)
        for t in done:
            self.finished += 1
            self.counts[TrialStatus(t.status)] += 1
            if t.reward is not None and t.status != TrialStatus.PRUNED and (self.best is None
                                                                              or t.reward > self.best[0]):
                self.best = (t.reward, t.arch_key)
            if t.wall_s and t.status not in (TrialStatus.CACHED, TrialStatus.REJECTED):
                self.wall_times.append(t.wall_s)
        if self.scheduler.rungs:
            self._tell_stored(done)
        for t, p in zip(again, proposals):
            arch = ArchSpec.from_json(self.store.get_arch(t.arch_key).spec_json)
            self.requeue.append(self._item(t.id, t.index, t.arch_key, arch, p.trial_id, tuple(t.decisions)))
        self.store.set_search_status(self.name, SearchStatus.RUNNING)
        self.view.line(f"resuming search {self.name!r}: {self.finished} trials done, {len(self.requeue)} to run "
                       f"again; controller from "
                       f"{'its update ' + str(ckpt.step) + ' checkpoint' if ckpt else 'the history'}, "
                       f"{len(done) - fed} trials replayed")

    # ------------------------------------------------------------------------------------------- loop
    def run(self) -> SearchOutcome:
        """Runs until `search.trials` trials have finished (Ctrl-C stops cleanly; resume later)."""
        if self.runner is None:
            raise RuntimeError("SearchDriver.run() before start()")
        budget = self.cfg.search.trials
        interrupted = False
        workers = self.cfg.search.workers
        try:
            # The trials a resume re-queued finish first, even past a budget lowered since (the controller has
            # proposed them; left alone they would stay 'running'), `workers` at a time, like new proposals.
            while self.finished < budget or self.requeue or self.inflight or any(self.waiting.values()):
                while len(self.inflight) < workers and self.requeue:
                    self._run_again(self.requeue.pop(0))
                issued = self.finished + len(self.inflight) + sum(len(w) for w in self.waiting.values())
                while len(self.inflight) < workers and not self.requeue and issued < budget:
                    self._propose_one()
                    issued = self.finished + len(self.inflight) + sum(len(w) for w in self.waiting.values())
                if not self.inflight:
                    if self.requeue:
                        continue  # re-queued trials that finished from the store: more of them next
                    if any(self.waiting.values()) or (self.finished < budget and issued >= budget):
                        raise RuntimeError("internal error: trials waiting with nothing in flight")
                    continue
                self._turn()
        except LeaseLostError:
            raise  # fenced out: no write more; the trials stop as the runner closes; the CLI says so in one line
        except KeyboardInterrupt:
            interrupted = True
            unfinished = len(self.inflight) + len(self.requeue) + sum(len(w) for w in self.waiting.values())
            self.view.line(f"interrupted: {unfinished} unfinished trials stay as they are and run again on "
                           f"'{self.RESUME.format(name=self.name)}'")
            self.runner.close()
            # No checkpoint here: Ctrl-C may have landed inside the controller's propose() or feedback(), so its
            # state may not match the feedback count; the stored checkpoint plus replay is exact instead.
            self.store.set_search_status(self.name, SearchStatus.STOPPED)
        else:
            self._final_checkpoint()
            self.store.set_search_status(self.name, SearchStatus.COMPLETED)
        finally:
            self._close()
        return SearchOutcome(
            name=self.name,
            trials=self.finished,
            completed=self.counts[TrialStatus.COMPLETED],
            failed=self.counts[TrialStatus.FAILED],
            cached=self.counts[TrialStatus.CACHED],
            rejected=self.counts[TrialStatus.REJECTED],
            pruned=self.counts[TrialStatus.PRUNED],
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
        cost = self._over_limit(arch, key)
        if cost is not None:  # before any lookup: a stored result of it is no reason to accept it
            [trial_id] = self.store.add_trials(self.name, [NewTrial(key, proposal.decisions)],
                                               status=TrialStatus.QUEUED, fingerprint=self.fingerprint)
            index = self._next_index
            self._next_index += 1
            self._finish_rejected(self._item(trial_id, index, key, arch, proposal.trial_id,
                                             tuple(proposal.decisions)), cost)
            return
        known = self._known(key)
        in_flight = known is None and any(f.key == key for f in self.inflight.values())
        run_now = known is None and not in_flight
        # A trial that runs now is stored as running at once (one transaction); the others wait as queued.
        [trial_id] = self.store.add_trials(self.name, [NewTrial(key, proposal.decisions)],
                                           status=TrialStatus.RUNNING if run_now else TrialStatus.QUEUED,
                                           fingerprint=self.fingerprint)
        index = self._next_index
        self._next_index += 1
        item = self._item(trial_id, index, key, arch, proposal.trial_id, tuple(proposal.decisions))
        if known is not None:
            self._finish_cached(item, known.reward, known.trial_id, known.metrics)
        elif in_flight:
            self.waiting.setdefault(key, []).append(item)
        else:
            self._submit(item, started=True)

    def _run_again(self, item: InFlight) -> None:
        """A trial a resume re-queued: from the store when its architecture finished meanwhile (another trial of
        the same key, before the crash), waiting when that key is in flight, else submitted again; rejected when it
        is over the FLOPs limit (a driver that died between storing a rejected proposal and its rejection)."""
        cost = self._over_limit(item.arch, item.key)
        if cost is not None:
            self._finish_rejected(item, cost)
            return
        known = self._known(item.key)
        if known is not None:
            self._finish_cached(item, known.reward, known.trial_id, known.metrics)
        elif any(f.key == item.key for f in self.inflight.values()):
            self.waiting.setdefault(item.key, []).append(item)
        else:
            self._submit(item, restart=True)

    def _item(self, trial_id: int, index: int, key: str, arch: ArchSpec, ctrl_id: int,
              decisions: tuple[int, ...]) -> InFlight:
        return InFlight(trial_id, index, key, arch, seed=self.cfg.proxy.seed + index,
                        total_steps=self.cfg.proxy.train_steps, ctrl_id=ctrl_id, decisions=decisions,
                        fingerprint=self.fingerprint)

    def _known(self, key: str) -> Any:
        """A stored result of `key` under the search's fingerprint: a completed trial's, else a pruned one's (unless
        ``search.retry_pruned``), else None."""
        return self.store.find_result(key, fingerprint=self.fingerprint,
                                      include_pruned=not self.cfg.search.retry_pruned)

    def _finish(self, item: InFlight, result: ProxyResult, host: str | None) -> None:
        pruned = self._prune.pop(item.trial_id, None)
        if pruned is not None and result.error is None and result.stopped_at is not None \
                and result.stopped_at < self.cfg.proxy.train_steps:
            self._finish_pruned(item, result, host, *pruned)
            return
        reward = compute_reward(result, self.cfg.search)
        status = TrialStatus.COMPLETED if reward is not None else TrialStatus.FAILED
        error = result.error
        if status == TrialStatus.FAILED and error is None:
            error = f"no usable AP (ap={result.metrics.get('ap')})"
        metrics = {k: v for k, v in result.metrics.items() if v is None or math.isfinite(v)}
        self.store.finish_trial(item.trial_id, status=status, reward=reward, metrics=metrics, error=error,
                                wall_s=result.wall_s, flops=result.flops, params=result.params, host=host,
                                precision=result.precision, reports=self._take_reports(item))
        self.scheduler.on_complete(item.trial_id, final_reward=reward if status == TrialStatus.COMPLETED else None)
        self._feedback(item, reward)
        self._record(item, status, reward, result.wall_s, error)
        for other in self.waiting.pop(item.key, []):
            if status == TrialStatus.COMPLETED:
                self._finish_cached(other, reward, item.trial_id, metrics)
            else:
                self._submit(other)

    def _finish_pruned(self, item: InFlight, result: ProxyResult, host: str | None, rung: int,
                       rung_reward: float) -> None:
        """A trial the scheduler stopped at `rung`: stored as pruned with its metrics so far, fed the scheduler's
        `pruned_reward`."""
        reward = self.scheduler.pruned_reward(rung, rung_reward)
        metrics = {k: v for k, v in result.metrics.items() if v is None or math.isfinite(v)}
        metrics.update(rung=rung, rung_reward=rung_reward, stopped_at=result.stopped_at)
        metrics.setdefault("steps", float(result.stopped_at))
        self.store.finish_trial(item.trial_id, status=TrialStatus.PRUNED, reward=reward, metrics=metrics,
                                wall_s=result.wall_s, flops=result.flops, params=result.params, host=host,
                                precision=result.precision, reports=self._take_reports(item))
        logger.info("[trial %d] pruned at step %d (rung reward %.4f, fed %.4f)", item.index, rung, rung_reward,
                    reward)
        self.scheduler.on_complete(item.trial_id, final_reward=None)
        self._feedback(item, reward)
        self._record(item, TrialStatus.PRUNED, reward, result.wall_s, None, rung=rung)
        for other in self.waiting.pop(item.key, []):
            if self.cfg.search.retry_pruned:
                self._submit(other)
            else:
                self._finish_cached(other, reward, item.trial_id, metrics)

    # ------------------------------------------------------------------------------------------- scheduler
    def _on_report(self, trial_id: int, step: int, metrics: Mapping[str, Any]) -> None:
        super()._on_report(trial_id, step, metrics)
        if step not in self.scheduler.rungs or trial_id in self._prune:
            return
        item = self.inflight.get(trial_id)
        ap = metrics.get("ap")
        if item is None or not isinstance(ap, (int, float)) or not math.isfinite(ap):
            return
        reward = self._rung_reward(float(ap), item.key, item.arch)
        if reward is None:
            return
        if self.scheduler.on_report(trial_id, step, reward) == Decision.STOP:
            self._prune[trial_id] = (step, reward)
            logger.info("[trial %d] the %s scheduler stops it at step %d (reward %.4f)", item.index,
                        self.cfg.scheduler.type, step, reward)
            self.runner.stop(trial_id)

    def _rung_reward(self, ap: float, key: str, arch: ArchSpec | None) -> float | None:
        """The reward an intermediate AP stands for (the search's reward function at that step)."""
        flops = None
        if self.cfg.search.reward != "ap":
            if key not in self._arch_flops:
                stored = self.store.get_arch(key).flops
                if stored is None and arch is not None:
                    stored = self._detector_cost(arch).flops
                self._arch_flops[key] = stored
            flops = self._arch_flops[key]
        return compute_reward(ProxyResult(metrics={"ap": ap}, wall_s=0.0, flops=flops), self.cfg.search)

    def _tell_source(self, trial_id: int | None) -> None:
        """Tells the scheduler of a cached trial's source, with its stored curve (it counts a trial once)."""
        if not self.scheduler.rungs or trial_id is None or self.scheduler.told(trial_id):
            return
        source = self.store.get_trial(trial_id)
        self._tell_stored_trial(source, self.store.reports([trial_id])[trial_id])

    def _tell_stored_trial(self, t: Any, reports: Any) -> None:
        completed = t.status == TrialStatus.COMPLETED and t.reward is not None
        self.scheduler.on_complete(t.id, final_reward=t.reward if completed else None,
                                   curve=self._stored_curve(t.arch_key, reports))

    def _stored_curve(self, key: str, reports: Any) -> dict[int, float]:
        curve = {}
        for r in reports:
            ap = r.metrics.get("ap")
            if r.step in self.scheduler.rungs and ap is not None:
                reward = self._rung_reward(float(ap), key, None)
                if reward is not None:
                    curve[r.step] = reward
        return curve

    def _tell_stored(self, done: list[Any]) -> None:
        """Tells the scheduler of a resumed search's finished trials, as it was told of them while they ran."""
        own = [t for t in done if t.status in (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED)]
        curves = self.store.reports([t.id for t in own]) if own else {}
        for t in own:
            self._tell_stored_trial(t, curves.get(t.id, []))
        for t in done:
            if t.status == TrialStatus.CACHED:
                self._tell_source(t.cached_from)

    def _finish_cached(self, item: InFlight, reward: float | None, source: int | None,
                       metrics: Mapping[str, Any] | None) -> None:
        self._tell_source(source)
        self.store.finish_trial(item.trial_id, status=TrialStatus.CACHED, reward=reward, metrics=metrics or {},
                                wall_s=0.0, cached_from=source)
        self._feedback(item, reward)
        self._record(item, TrialStatus.CACHED, reward, 0.0, None)

    def _detector_cost(self, arch: ArchSpec) -> Any:
        """What a trial of this proxy stores as the cost of `arch` (`ProxyConfig.cost`, for the surrogate too), with
        the dataset's class count read once."""
        if self._num_classes is None:
            from proxy_task.data import num_classes_of

            self._num_classes = num_classes_of(self.cfg.proxy.data)
        return self.cfg.proxy.cost(arch, self._num_classes)

    def _over_limit(self, arch: ArchSpec, key: str) -> tuple[int, int] | None:
        """(flops, params) of `arch` (whose key is `key`) when its FLOPs are over ``search.max_flops``, else None
        (and None without a limit). The FLOPs are what a trial of this proxy stores (`ProxyConfig.cost`, for the
        surrogate too)."""
        if not self.max_flops:
            return None
        known = self._flops.get(key)
        if known is not None:  # an architecture rejected before: no second count
            return known
        cost = self._detector_cost(arch)
        if cost.flops <= self.max_flops:
            return None
        self._flops[key] = (cost.flops, cost.params)
        return self._flops[key]

    def _finish_rejected(self, item: InFlight, cost: tuple[int, int]) -> None:
        flops, params = cost
        error = f"rejected: {flops:.4g} FLOPs is over max_flops {self.max_flops:.4g}"
        self.store.finish_trial(item.trial_id, status=TrialStatus.REJECTED, reward=None,
                                metrics={"flops": flops, "params": params, "max_flops": self.max_flops}, error=error,
                                wall_s=0.0, flops=flops, params=params)
        logger.info("[trial %d] %s %s", item.index, item.key, error)
        self._feedback(item, None)  # the controller's failure rule: reward_for_failure, or skipped when None
        self._record(item, TrialStatus.REJECTED, None, 0.0, error)

    def _feedback(self, item: InFlight, reward: float | None) -> None:
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

    # ------------------------------------------------------------------------------------------- progress
    def _record(self, item: InFlight, status: TrialStatus, reward: float | None, wall_s: float,
                error: str | None, rung: int | None = None) -> None:
        self.finished += 1
        self.counts[status] += 1
        # A pruned trial's reward is fed, not measured at the last step: it is no candidate for the best.
        if reward is not None and status != TrialStatus.PRUNED and (self.best is None or reward > self.best[0]):
            self.best = (reward, item.key)
        if status not in (TrialStatus.CACHED, TrialStatus.REJECTED) and wall_s:
            self.wall_times.append(wall_s)
        step = self.finished
        if self._tb is not None:
            if reward is not None:
                self._tb.scalar("search/reward", reward, step)
            if self.best is not None:
                self._tb.scalar("search/best_reward", self.best[0], step)
            if status not in (TrialStatus.CACHED, TrialStatus.REJECTED):
                self._tb.scalar("search/trial_seconds", wall_s, step)
            self._tb.flush()
        budget = self.cfg.search.trials
        what = f"reward {reward:.4f}" if reward is not None else f"FAILED ({error})"
        if status == TrialStatus.REJECTED:
            what = f"REJECTED untrained ({error.removeprefix('rejected: ') if error else 'over max_flops'})"
        if status == TrialStatus.PRUNED:
            what = f"PRUNED at step {rung} (fed reward {reward:.4f})"
        if status == TrialStatus.CACHED:
            what += " (cached: this architecture already has a result)"
        self.view.line(f"[{step}/{budget}] trial {item.index} {item.key} {what} {wall_s:.0f} s | "
                       f"{self._status_line()}")

    def _status_line(self) -> str:
        from nas.cli.console import duration

        budget = self.cfg.search.trials
        best = f"{self.best[0]:.4f}" if self.best else "-"
        c = self.counts
        rejected = f"rejected {c[TrialStatus.REJECTED]} " if self.max_flops or c[TrialStatus.REJECTED] else ""
        pruned = f"pruned {c[TrialStatus.PRUNED]} " if self.scheduler.rungs or c[TrialStatus.PRUNED] else ""
        line = (f"done {c[TrialStatus.COMPLETED]} failed {c[TrialStatus.FAILED]} cached {c[TrialStatus.CACHED]} "
                f"{rejected}{pruned}running {len(self.inflight)} | best {best}")
        if self.wall_times:
            per = sum(self.wall_times) / len(self.wall_times)
            left = budget - self.finished
            eta = per * math.ceil(left / max(1, self.cfg.search.workers))
            line += f" | {per:.0f} s/trial | ETA {duration(eta)}"
        return line


def worker_calls(cfg: NasConfig) -> int:
    """Trials a Ray worker process runs before it exits: 1 (a fresh process per trial), a bound, or 0 (no bound).

    Warm workers (``search.reuse_workers``) on CPU; a GPU trial always gets a fresh process, and TensorFlow trials
    at most ``search.trials_per_worker`` in one process.
    """
    s = cfg.search
    if not s.reuse_workers or (s.gpus_per_trial > 0 and uses_tensorflow(cfg)):
        return 1
    return s.trials_per_worker if uses_tensorflow(cfg) else 0


def uses_tensorflow(cfg: NasConfig) -> bool:
    """Whether the config's evaluator trains with TensorFlow (its trials need processes, CPUs and GPUs of their
    own)."""
    from proxy_task.evaluator import uses_tensorflow as evaluator_uses_tensorflow

    return evaluator_uses_tensorflow(cfg.evaluator.type)


def _num_updates(controller: Any) -> int:
    return int(getattr(controller, "num_updates", controller.num_rewards))

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
from nas.engine.rungs import RungFeed
from nas.engine.schedulers import build_scheduler
from nas.engine.tally import Tally
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
    """The plain-data description every trial of the search evaluates with (its plug-ins imported here, to know
    where they are found)."""
    from search_space.registry import import_plugins, plugin_roots

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
        plugins=cfg.plugins,
        plugin_paths=plugin_roots(import_plugins(cfg.plugins)),
        judged_steps=tuple(scheduler_rungs(cfg)),
    )


class SearchDriver(TrialLoop):
    """Runs one search to its trial budget: propose, dedup, submit, report, finish, learn.

    Args:
      cfg: the resolved config.
      name: the search's name.
      store: an open `results_db.ResultStore` (writer).
      run_dir: where TensorBoard scalars and the log go.
      resume: continue the stored search `name` instead of creating it.
      faults: fault injection for tests and benchmarks (`nas.engine.faults`).
      out: where progress lines go (print by default), unless `view` is given.
      view: the console view (`nas.cli.console`); default a `PlainView` on `out`.
      runner: the runner to use; default the one ``cfg.runner`` names, built in `start` (after its backend is up:
        `nas.engine.runners.build_backend`; the ray runner needs Ray, `ray_runner.init_ray`).
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
        self.scheduler = build_scheduler(cfg.scheduler.type, cfg.scheduler.get(), scheduler_rungs(cfg))
        self.rungs = RungFeed(self.scheduler, s, store, self._detector_cost)
        self.tally = Tally(budget=s.trials, workers=s.workers)
        self.max_flops = s.max_flops
        self.waiting: dict[str, list[InFlight]] = {}  # key -> trials waiting for the same key in flight
        self.requeue: list[InFlight] = []  # a resume's unfinished trials, to run again first
        self.checkpoints = 0  # controller checkpoints written by this driver
        self._prune: dict[int, tuple[int, float]] = {}  # trial id -> (rung, reward there) of a trial told to stop
        self._cuts: dict[int, float | None] = {}  # trial id -> the rung's cut when it was told to stop
        self._num_classes: int | None = None  # the detector's, for its FLOPs (read at their first use)
        self._flops: dict[str, tuple[int, int]] = {}  # key -> (flops, params) of the proposals over the limit
        self._updates_seen = _num_updates(self.controller)
        self._feedbacks = 0  # feedbacks given, in the store's completion order
        self._stored_feedbacks = 0  # feedbacks the last stored checkpoint includes
        self._last_checkpoint = time.monotonic()
        self._next_index = 0
        self._t0 = time.time()

    @property
    def finished(self) -> int:
        """Trials finished so far, this run's and a resumed search's stored ones."""
        return self.tally.finished

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
        """The runner the config names (its backend up first: the ray runner needs Ray, `ray_runner.init_ray`),
        with warm workers when the search reuses them."""
        self._start_runner(trials_per_worker=worker_calls(self.cfg))

    def _restore(self) -> None:
        """Controller from its last checkpoint plus the trials finished after it; in-flight trials re-queued."""
        self._keep_stored_fingerprint()
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
            self.tally.add(TrialStatus(t.status), t.reward, t.arch_key, t.wall_s)
        self.rungs.stored(done)
        for t, p in zip(again, proposals):
            arch = ArchSpec.from_json(self.store.get_arch(t.arch_key).spec_json)
            self.requeue.append(self._item(t.id, t.index, t.arch_key, arch, p.trial_id, tuple(t.decisions)))
        self.store.set_search_status(self.name, SearchStatus.RUNNING)
        self.view.line(f"resuming search {self.name!r}: {self.finished} trials done, {len(self.requeue)} to run "
                       f"again; controller from "
                       f"{'its update ' + str(ckpt.step) + ' checkpoint' if ckpt else 'the history'}, "
                       f"{len(done) - fed} trials replayed")

    def _keep_stored_fingerprint(self) -> None:
        """A resumed search keeps the fingerprint its trials started with (stored before fingerprints: today's)."""
        record = self.store.open_search(self.name)
        if getattr(record, "fingerprint", None) is None:
            self.store.set_search_fingerprint(self.name, self.fingerprint)
        elif record.fingerprint != self.fingerprint:
            # What a fingerprint holds changed since the search began: its trials keep the one they started with,
            # so they still dedup against each other and `top --search` still ranks them together.
            logger.warning("search %r: keeping its stored fingerprint %s (today's rule gives %s)", self.name,
                           record.fingerprint, self.fingerprint)
            self.fingerprint = record.fingerprint

    # ------------------------------------------------------------------------------------------- the loop
    def run(self) -> SearchOutcome:
        """Runs until `search.trials` trials have finished (Ctrl-C stops cleanly; resume later)."""
        if self.runner is None:
            raise RuntimeError("SearchDriver.run() before start()")
        interrupted = False
        try:
            self._loop()
        except LeaseLostError:
            raise  # fenced out: no write more; the trials stop as the runner closes; the CLI says so in one line
        except KeyboardInterrupt:
            interrupted = True
            self.view.line(f"interrupted: {self._unfinished()} unfinished trials stay as they are and run again on "
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
        return self._outcome(interrupted)

    def _loop(self) -> None:
        """Keeps `workers` trials in flight until the budget has finished. The trials a resume re-queued finish
        first, even past a budget lowered since (the controller has proposed them; left alone they would stay
        'running'), `workers` at a time, like new proposals."""
        budget, workers = self.cfg.search.trials, self.cfg.search.workers
        while self.finished < budget or self.requeue or self.inflight or any(self.waiting.values()):
            while len(self.inflight) < workers and self.requeue:
                self._run_again(self.requeue.pop(0))
            while len(self.inflight) < workers and not self.requeue and self._issued() < budget:
                self._propose_one()
            if not self.inflight:
                if self.requeue:
                    continue  # re-queued trials that finished from the store: more of them next
                if any(self.waiting.values()) or (self.finished < budget and self._issued() >= budget):
                    raise RuntimeError("internal error: trials waiting with nothing in flight")
                continue
            self._turn()

    def _issued(self) -> int:
        """Trials finished, in flight and waiting on a key in flight."""
        return self.finished + len(self.inflight) + sum(len(w) for w in self.waiting.values())

    def _unfinished(self) -> int:
        return len(self.inflight) + len(self.requeue) + sum(len(w) for w in self.waiting.values())

    def _outcome(self, interrupted: bool) -> SearchOutcome:
        c, best = self.tally.counts, self.tally.best
        return SearchOutcome(
            name=self.name, trials=self.finished, completed=c[TrialStatus.COMPLETED],
            failed=c[TrialStatus.FAILED], cached=c[TrialStatus.CACHED], rejected=c[TrialStatus.REJECTED],
            pruned=c[TrialStatus.PRUNED], best_reward=best[0] if best else None, best_key=best[1] if best else None,
            wall_s=time.time() - self._t0, interrupted=interrupted, checkpoints=self.checkpoints)

    # ------------------------------------------------------------------------------------------- propose, dedup
    def _propose_one(self) -> None:
        """One proposal: rejected over the FLOPs limit, cached from a stored result, waiting on the same key in
        flight, or submitted."""
        from results_db.records import NewTrial

        [proposal] = self.controller.propose(1)
        arch = self.space.decode(proposal.decisions)
        key = self.store.register_arch(arch, family=self.cfg.search.family)
        cost = self._over_limit(arch, key)
        if cost is not None:  # before any lookup: a stored result of it is no reason to accept it
            [trial_id] = self.store.add_trials(self.name, [NewTrial(key, proposal.decisions)],
                                               status=TrialStatus.QUEUED, fingerprint=self.fingerprint)
            self._finish_rejected(self._new_item(trial_id, key, arch, proposal), cost)
            return
        known = self._known(key)
        in_flight = known is None and self._in_flight(key)
        run_now = known is None and not in_flight
        # A trial that runs now is stored as running at once (one transaction); the others wait as queued.
        [trial_id] = self.store.add_trials(self.name, [NewTrial(key, proposal.decisions)],
                                           status=TrialStatus.RUNNING if run_now else TrialStatus.QUEUED,
                                           fingerprint=self.fingerprint)
        item = self._new_item(trial_id, key, arch, proposal)
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
        elif self._in_flight(item.key):
            self.waiting.setdefault(item.key, []).append(item)
        else:
            self._submit(item, restart=True)

    def _new_item(self, trial_id: int, key: str, arch: ArchSpec, proposal: Any) -> InFlight:
        """The next index's trial of a proposal."""
        index = self._next_index
        self._next_index += 1
        return self._item(trial_id, index, key, arch, proposal.trial_id, tuple(proposal.decisions))

    def _item(self, trial_id: int, index: int, key: str, arch: ArchSpec, ctrl_id: int,
              decisions: tuple[int, ...]) -> InFlight:
        return InFlight(trial_id, index, key, arch, seed=trial_seed(self.cfg, index),
                        total_steps=self.cfg.proxy.train_steps, ctrl_id=ctrl_id, decisions=decisions,
                        fingerprint=self.fingerprint)

    def _known(self, key: str) -> Any:
        """A stored result of `key` under the search's fingerprint: a completed trial's, else a pruned one's (unless
        ``search.retry_pruned``), else None."""
        return self.store.find_result(key, fingerprint=self.fingerprint,
                                      include_pruned=not self.cfg.search.retry_pruned)

    def _in_flight(self, key: str) -> bool:
        return any(f.key == key for f in self.inflight.values())

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

    def _detector_cost(self, arch: ArchSpec) -> Any:
        """What a trial of this proxy stores as the cost of `arch` (`ProxyConfig.cost`, for the surrogate too), with
        the dataset's class count read once."""
        if self._num_classes is None:
            from proxy_task.data import num_classes_of

            self._num_classes = num_classes_of(self.cfg.proxy.data)
        return self.cfg.proxy.cost(arch, self._num_classes)

    # ------------------------------------------------------------------------------------------- reports
    def _on_report(self, trial_id: int, step: int, metrics: Mapping[str, Any]) -> None:
        """A running trial's report: stored and shown (`TrialLoop`), then judged at a rung; a trial the scheduler
        stops is asked to stop through the runner."""
        super()._on_report(trial_id, step, metrics)
        item = self.inflight.get(trial_id)
        if item is None or trial_id in self._prune:
            return
        reward = self.rungs.judge(trial_id, step, metrics, item.key, item.arch)
        if reward is not None:
            self._prune[trial_id] = (step, reward)
            self._cuts[trial_id] = self.scheduler.cut(step)
            logger.info("[trial %d] the %s scheduler stops it at step %d (reward %.4f, the rung's cut %s)",
                        item.index, self.cfg.scheduler.type, step, reward, self._cuts[trial_id])
            self.runner.stop(trial_id)

    # ------------------------------------------------------------------------------------------- finish
    def _finish(self, item: InFlight, result: ProxyResult, host: str | None) -> None:
        """A trial the runner handed back: pruned when the scheduler stopped it short, else completed or failed."""
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
        metrics = _finite(result.metrics)
        self.store.finish_trial(item.trial_id, status=status, reward=reward, metrics=metrics, error=error,
                                wall_s=result.wall_s, flops=result.flops, params=result.params, host=host,
                                precision=result.precision, reports=self._take_reports(item))
        self.rungs.finished(item.trial_id, reward if status == TrialStatus.COMPLETED else None)
        self._feedback(item, reward)
        self._record(item, status, reward, result.wall_s, error, ap=metrics.get("ap"))
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
        metrics = _finite(result.metrics)
        metrics.update(rung=rung, rung_reward=rung_reward, stopped_at=result.stopped_at)
        metrics.setdefault("steps", float(result.stopped_at))
        self.store.finish_trial(item.trial_id, status=TrialStatus.PRUNED, reward=reward, metrics=metrics,
                                wall_s=result.wall_s, flops=result.flops, params=result.params, host=host,
                                precision=result.precision, reports=self._take_reports(item))
        logger.info("[trial %d] pruned at step %d (rung reward %.4f, fed %.4f)", item.index, rung, rung_reward,
                    reward)
        self.rungs.finished(item.trial_id, None)
        self._feedback(item, reward)
        ap = metrics.get("ap")
        why = _why_pruned(ap, rung_reward, self._cuts.pop(item.trial_id, None), self.cfg.search.reward == "ap")
        self._record(item, TrialStatus.PRUNED, reward, result.wall_s, None, rung=rung, ap=ap, why=why)
        for other in self.waiting.pop(item.key, []):
            if self.cfg.search.retry_pruned:
                self._submit(other)
            else:
                self._finish_cached(other, reward, item.trial_id, metrics)

    def _finish_cached(self, item: InFlight, reward: float | None, source: int | None,
                       metrics: Mapping[str, Any] | None) -> None:
        """A trial answered from a stored result of its architecture (`source`), without training."""
        self.rungs.source(source)
        self.store.finish_trial(item.trial_id, status=TrialStatus.CACHED, reward=reward, metrics=metrics or {},
                                wall_s=0.0, cached_from=source)
        self._feedback(item, reward)
        self._record(item, TrialStatus.CACHED, reward, 0.0, None, ap=(metrics or {}).get("ap"))

    def _finish_rejected(self, item: InFlight, cost: tuple[int, int]) -> None:
        """A proposal over the FLOPs limit: stored, fed back as a failure, never trained."""
        flops, params = cost
        error = f"rejected: {flops:.4g} FLOPs is over max_flops {self.max_flops:.4g}"
        self.store.finish_trial(item.trial_id, status=TrialStatus.REJECTED, reward=None,
                                metrics={"flops": flops, "params": params, "max_flops": self.max_flops}, error=error,
                                wall_s=0.0, flops=flops, params=params)
        logger.info("[trial %d] %s %s", item.index, item.key, error)
        self._feedback(item, None)  # the controller's failure rule: reward_for_failure, or skipped when None
        self._record(item, TrialStatus.REJECTED, None, 0.0, error)

    # ------------------------------------------------------------------------------------------- learn
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
                error: str | None, rung: int | None = None, ap: float | None = None, why: str = "") -> None:
        """Counts a finished trial, writes the search's TensorBoard scalars and the trial's HParams session, and
        prints its console line."""
        self.tally.add(status, reward, item.key, wall_s)
        if self._tb is not None:
            self._search_scalars(status, reward, wall_s)
        if self._tensorboard:  # its HParams session; a space of a benchmark's own may not name its decisions
            label = getattr(self.space, "label", lambda i: f"d{i}")
            self._write_session(item, status, reward=reward, ap=ap, step=rung or self.cfg.proxy.train_steps,
                                hparams={label(i): d for i, d in enumerate(item.decisions)})
        what = f"reward {reward:.4f}" if reward is not None else f"FAILED ({error})"
        if status == TrialStatus.REJECTED:
            what = f"REJECTED untrained ({error.removeprefix('rejected: ') if error else 'over max_flops'})"
        if status == TrialStatus.PRUNED:
            what = f"PRUNED at step {rung} ({why + '; ' if why else ''}fed reward {reward:.4f})"
        if status == TrialStatus.CACHED:
            what += " (cached: this architecture already has a result)"
        self.view.line(f"[{self.finished}/{self.cfg.search.trials}] trial {item.index} {item.key} {what} "
                       f"{wall_s:.0f} s", status=self._status_line())

    def _search_scalars(self, status: TrialStatus, reward: float | None, wall_s: float) -> None:
        step = self.finished
        if reward is not None:
            self._tb.scalar("search/reward", reward, step)
        if self.tally.best is not None:
            self._tb.scalar("search/best_reward", self.tally.best[0], step)
        if status not in (TrialStatus.CACHED, TrialStatus.REJECTED):
            self._tb.scalar("search/trial_seconds", wall_s, step)
        self._tb.flush()

    def _status_line(self) -> str:
        return self.tally.status_line(running=len(self.inflight), show_rejected=bool(self.max_flops),
                                      show_pruned=self.rungs.active)


def trial_seed(cfg: NasConfig, index: int) -> int:
    """Trial `index`'s seed: the proxy's seed plus its index (the only place a search's trial seed is made)."""
    return cfg.proxy.seed + index


def _why_pruned(ap: Any, rung_reward: float, cut: float | None, reward_is_ap: bool) -> str:
    """'AP 0.0312 < the rung's cut 0.0450' (with the reward when it is not the AP): what a pruned trial's line
    says of its rung."""
    what = f"AP {ap:.4f}" if isinstance(ap, (int, float)) else ""
    if not reward_is_ap:
        what += f"{', ' if what else ''}reward {rung_reward:.4f}"
    return what if cut is None else f"{what} < the rung's cut {cut:.4f}"


def _finite(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    """Metrics without NaN or infinities (stored as JSON, which has neither)."""
    return {k: v for k, v in metrics.items() if v is None or math.isfinite(v)}


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

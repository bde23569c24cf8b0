"""What every job that runs trials shares: a runner, reports as they come, results written at once, timeouts, the
console. The search driver (`driver.SearchDriver`) and the calibration study (`calibration.study.CalibrationStudy`)
are its two subclasses: they decide which trials to run and what a finished trial means.

A turn of the loop (`_turn`): wait on the runner; store what finished (`_finish`, the subclass's); store the
reports of trials still running; cancel trials past their timeout; redraw the console. A trial's reports are kept
for the store, shown on its live line and written to its TensorBoard curve as they arrive; a finished trial's last
reports go to the store in the same transaction as its result.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from nas.engine import signals
from nas.config.schema import NasConfig
from nas.cli.console import PlainView, TrialProgress
from nas.engine.runners import Runner, TrialOutcome, TrialSpec, TrialTask, build_runner
from proxy_task.result import ProxyResult
from search_space import ArchSpec

logger = logging.getLogger(__name__)

# Seconds the loop waits on the runner per turn (timeouts and the console are checked between turns).
POLL_S = 1.0


@dataclasses.dataclass
class InFlight:
    """A trial the loop has handed to the runner (or holds to hand over).

    Attributes:
      trial_id: its database id.
      index: its index within its search (tags logs; with the search's seed, its seed).
      key: the arch's key.
      arch: the architecture.
      seed: the trial's seed.
      total_steps: the steps it trains (its console line's N).
      submitted: when it was handed to the runner.
      ctrl_id, decisions: the controller's trial id and decisions (searches).
      spec: a spec of its own (a calibration's reference fidelity), or None for the loop's.
      fingerprint: its result fingerprint.
      timeout_s: its own timeout (0: none), or None for the config's ``search.trial_timeout_s``.
    """

    trial_id: int
    index: int
    key: str
    arch: ArchSpec
    seed: int
    total_steps: int
    submitted: float = 0.0
    ctrl_id: int = -1
    decisions: tuple[int, ...] = ()
    spec: TrialSpec | None = None
    fingerprint: str | None = None
    timeout_s: float | None = None
    progress: TrialProgress | None = None
    tb: Any = None  # the trial's TensorBoard curve writer, opened at its first report


class TrialLoop(abc.ABC):
    """Runs trials on a runner and records them; subclasses choose the trials and what a result means.

    Args:
      cfg: the config whose runner, resources, timeout and proxy the trials use.
      name: the search's name.
      store: an open `results_db.ResultStore` (writer).
      run_dir: where TensorBoard scalars and the log go.
      spec: what the trials evaluate with (unless a trial has a spec of its own).
      view: the console view (`nas.cli.console`); default a `PlainView` on print.
      runner: the runner to use; default the one ``cfg.runner`` names, built in `_start_runner` (after its backend
        is up, `nas.engine.runners.build_backend`: the ray runner needs `nas.engine.runners.ray_runner.init_ray`).
      tensorboard: write TensorBoard scalars (the job's and every trial's curve) under `run_dir`.
    """

    #: The command that continues this kind of job, with `{name}`.
    RESUME = "spinenas search --resume {name}"

    def __init__(self, cfg: NasConfig, *, name: str, store: Any, run_dir: str, spec: TrialSpec, view: Any = None,
                 runner: Runner | None = None, tensorboard: bool = True) -> None:
        self.cfg = cfg
        self.name = name
        self.store = store
        self.run_dir = run_dir
        self.spec = spec
        self.view = view if view is not None else PlainView(print)
        self.runner = runner
        self._tensorboard = tensorboard
        self.inflight: dict[int, InFlight] = {}  # trial id -> trial
        self._reports: dict[int, list[tuple[int, dict[str, float | None]]]] = {}  # not stored yet, by trial id
        self._tb: Any = None
        self.last_turn = time.monotonic()  # the lease's heartbeat stops when the loop stops turning
        self.lease: Any = None  # the `nas.engine.lease.LeaseKeeper` holding the search, if any

    # ------------------------------------------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def _finish(self, item: InFlight, result: ProxyResult, host: str | None) -> None:
        """Records a trial that ended (completed, failed, stopped, or timed out: `result.error` says)."""

    @abc.abstractmethod
    def _status_line(self) -> str:
        """The console's summary line."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Creates the job's rows, or finds what a resumed job has left (before any runner: a job killed between the
        two leaves rows that resume)."""

    def start_runner(self) -> None:
        """The runner the config names (its backend up first: the ray runner needs Ray,
        `nas.engine.runners.ray_runner.init_ray`)."""
        self._start_runner()

    def start(self) -> None:
        """`prepare`, then `start_runner`."""
        self.prepare()
        self.start_runner()

    # ------------------------------------------------------------------------------------------- setup
    def _start_runner(self, **kwargs: Any) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        if self._tensorboard:
            from nas.engine.tensorboard import ScalarWriter

            self._tb = ScalarWriter(os.path.join(self.run_dir, "tensorboard"))
        if self.runner is None:
            self.runner = build_runner(self.cfg.runner.type, self.cfg.runner.get(), spec=self.spec,
                                       on_report=self._on_report, **kwargs)
        else:
            self.runner.on_report = self._on_report

    def _close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        for item in self.inflight.values():
            if item.tb is not None:
                item.tb.close()
        if self._tb is not None:
            self._tb.close()
        self.view.close()

    # ------------------------------------------------------------------------------------------- trials
    def _submit(self, item: InFlight, restart: bool = False, started: bool = False) -> None:
        if not started:
            self.store.start_trial(item.trial_id, host=None)
        item.submitted = time.time()
        item.progress = TrialProgress(item.index, item.key, item.submitted, item.total_steps)
        self.inflight[item.trial_id] = item
        self.runner.submit(TrialTask(item.trial_id, item.index, item.arch.to_json(), item.seed, spec=item.spec))
        logger.info("[trial %d] submitted %s%s", item.index, item.key, " (again)" if restart else "")

    def _turn(self) -> None:
        """One turn of the loop: wait on the runner, record what finished, store reports, timeouts, console."""
        self.last_turn = time.monotonic()
        signals.reassert()  # ours, whatever a library the trials or the runner loaded did to it
        if self.lease is not None and self.lease.lost:
            from nas.engine.lease import LeaseLostError

            raise LeaseLostError(f"another driver took over {self.name!r}: this one stops without writing more")
        for outcome in self.runner.poll(self._wait_s()):
            self._collect(outcome)
        self._store_reports()
        self._check_timeouts()
        self._refresh()

    def _on_report(self, trial_id: int, step: int, metrics: Mapping[str, Any]) -> None:
        """A running trial's report: kept for the store, shown, and written to its TensorBoard curve."""
        self.last_turn = time.monotonic()  # a long trial in the driver's own process still shows a live loop
        item = self.inflight.get(trial_id)
        if item is None:  # a cancelled trial's late report
            return
        clean = {str(k): (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None)
                 for k, v in metrics.items()}
        self._reports.setdefault(trial_id, []).append((int(step), clean))
        if item.progress is not None:
            item.progress.update(step, clean, time.time())
        if self._tensorboard:
            if item.tb is None:
                from nas.engine.tensorboard import ScalarWriter

                item.tb = ScalarWriter(self._trial_run(item))
            for k, v in clean.items():
                if v is not None:
                    item.tb.scalar(f"curve/{k}", v, step)

    def _trial_run(self, item: InFlight) -> str:
        from nas.engine.tensorboard import trial_run_name

        return os.path.join(self.run_dir, "tensorboard", "trials", trial_run_name(item.index, item.key))

    def _write_session(self, item: InFlight, status: str, *, reward: float | None, ap: float | None, step: int,
                       hparams: Mapping[str, Any]) -> None:
        """The ended trial's HParams session in its TensorBoard run: `hparams` with its key and status as
        hyper-parameters, its reward and AP as metrics (TensorBoard's HParams tab)."""
        if not self._tensorboard:
            return
        from nas.engine.tensorboard import ScalarWriter

        tb = ScalarWriter(self._trial_run(item))
        tb.session({**hparams, "key": item.key, "status": str(status)}, {"reward": reward, "ap": ap},
                   status=str(status), start_time_s=item.submitted or time.time(), step=step)
        tb.close()

    def _store_reports(self) -> None:
        """Writes the reports of trials still running (a finished trial's go with its result, in one transaction)."""
        for trial_id in [t for t in self._reports if t in self.inflight]:
            self.store.add_reports(trial_id, self._reports.pop(trial_id))
            tb = self.inflight[trial_id].tb
            if tb is not None:
                tb.flush()

    def _take_reports(self, item: InFlight) -> list[tuple[int, dict[str, float | None]]] | None:
        """The reports of a finishing trial not stored yet (for its finish's transaction); closes its curve."""
        if item.tb is not None:
            item.tb.close()
            item.tb = None
        return self._reports.pop(item.trial_id, None)

    def _collect(self, outcome: TrialOutcome) -> None:
        item = self.inflight.pop(outcome.trial_id, None)
        if item is None:  # cancelled (timed out) before its result came
            return
        host = None
        if outcome.payload is not None:
            payload = outcome.payload
            result = ProxyResult.from_dict(payload["result"])
            host = payload.get("host")
        else:
            result = ProxyResult(metrics={}, wall_s=time.time() - item.submitted, error=outcome.error)
        self._finish(item, result, host)

    def _limit(self, item: InFlight) -> float:
        return self.cfg.search.trial_timeout_s if item.timeout_s is None else item.timeout_s

    def _wait_s(self) -> float:
        """How long a turn waits on the runner: `POLL_S`, or less when a trial's timeout falls sooner (a result that
        arrived during a longer wait would be kept although its trial had outlived its limit)."""
        now = time.time()
        deadlines = [item.submitted + self._limit(item) for item in self.inflight.values() if self._limit(item)]
        return max(0.0, min([POLL_S, *(d - now for d in deadlines)]))

    def _check_timeouts(self) -> None:
        now = time.time()
        for trial_id, item in list(self.inflight.items()):
            limit = self._limit(item)
            if limit and now - item.submitted > limit:
                self.runner.cancel(trial_id)
                self.inflight.pop(trial_id)
                self._finish(item, ProxyResult(metrics={}, wall_s=now - item.submitted,
                                               error=f"timeout: still running after {limit:g} s"), None)

    def _refresh(self) -> None:
        running = [i.progress for i in sorted(self.inflight.values(), key=lambda i: i.index) if i.progress]
        self.view.refresh(running, self._status_line())


__all__ = ["InFlight", "POLL_S", "TrialLoop"]

"""The ``local`` runner: trials in child processes of the driver, or in the driver itself, without Ray.

Child processes are started with ``spawn`` (a fresh interpreter: the driver may hold TensorFlow, whose state a
fork would copy), one per trial, as the Ray runner gives every real trial a fresh worker. A trial's reports and
result come back over a pipe; a stop request goes down it and is read at the trial's next report. A child that
exits without a result (a crash, an OOM kill) is started again up to ``worker_retries`` times, as Ray retries a dead
worker; `cancel` kills it (timeouts). The child's own output (TensorFlow's C++ logs) is appended to the spec's
``log_path``, the search's log file, and stays off the driver's console.

With ``in_process`` the trials run inside the driver's process, one at a time, in `poll`: no process start, and a
debugger or profiler sees the trial. Only TF-free evaluators may (the config refuses others), faults that end the
process are refused, and a timeout cannot interrupt a trial that is running (it is checked between trials).
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from nas.engine.runners.base import JUDGE_WAIT_S, Runner, TrialOutcome, TrialTask, check_cpus_here

logger = logging.getLogger(__name__)


def _child_main(log_path: str, conn: Connection) -> None:
    """A child process: runs the trials it is sent, one at a time, until told to exit (or the pipe closes).

    Messages down the pipe: ``("task", spec, task)``, ``("stop", trial_id)`` (read at the trial's next report; one
    for a trial that has ended is dropped), ``("judged", trial_id, step)`` (the driver has answered the report of a
    judged step, which the trial waits for), ``("exit",)``. Up: ``("report", step, metrics)`` and
    ``("result", payload)``.
    """
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nas.engine.trial import run_trial_body

    while True:
        try:
            message = conn.recv()
        except EOFError:  # the driver is gone
            return
        if message[0] == "exit":
            break
        if message[0] != "task":  # a stop for a trial that has ended
            continue
        _, spec, task = message
        tid = int(task["trial_id"])
        judged = frozenset(int(s) for s in spec.get("judged_steps") or ())
        stop = False

        def report(step: int, metrics: Mapping[str, float], tid: int = tid) -> bool:
            nonlocal stop
            conn.send(("report", int(step), dict(metrics)))
            deadline = time.monotonic() + JUDGE_WAIT_S if int(step) in judged else 0.0
            while True:
                wait_s = max(0.0, deadline - time.monotonic())
                if not conn.poll(wait_s):
                    return stop  # nothing more (or no answer in time: train on)
                message = tuple(conn.recv())
                if message == ("stop", tid):
                    stop = True
                elif message == ("judged", tid, int(step)):
                    deadline = 0.0  # the driver's answer: what arrived before it is read, then on

        payload = run_trial_body(spec, task, report)
        conn.send(("result", payload))
    conn.close()


class _Child:
    """A child process and the trial it runs (None while it waits, warm, for the next)."""

    def __init__(self, task: TrialTask, process: Any, conn: Connection) -> None:
        self.task: TrialTask | None = task
        self.process = process
        self.conn = conn
        self.attempts = 1
        self.trials = 1  # trials sent to this process
        self.result: dict[str, Any] | None = None
        self.judged: frozenset[int] = frozenset()  # the steps whose report the trial waits at for an answer


class LocalRunner(Runner):
    """Runs trials without Ray: child processes of the driver (default) or the driver's own process."""

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        if settings.in_process:
            from nas.engine.faults import PROCESS_FAULTS

            bad = [k for k in PROCESS_FAULTS if self.spec.faults.get(k)]
            if bad:
                raise ValueError(f"the in-process runner cannot inject {', '.join(bad)} (it would end or block the "
                                 "driver); use a child-process runner")
        self._ctx = multiprocessing.get_context("spawn")
        self._children: dict[int, _Child] = {}  # trial id -> the child running it
        self._idle: list[_Child] = []  # warm children waiting for a trial
        self._queue: collections.deque[TrialTask] = collections.deque()  # in-process: waiting to run
        self._stops: set[int] = set()
        self._spec = self.spec.to_dict()

    @classmethod
    def check_request(cls, cfg: Any, *, address: str | None = None) -> Sequence[str]:
        """The local runner's resources are this machine's (and it hands out no GPUs, and joins no cluster).

        Returns:
          A warning when more workers than CPUs will share this machine's cores.
        """
        from nas.cli.ui import UserError

        check_cpus_here(cfg)
        s = cfg.search
        cpus = os.cpu_count() or 1
        if s.gpus_per_trial:
            raise UserError("the local runner does not hand out GPUs; use the ray runner for --gpus-per-trial")
        if address:
            raise UserError("--address names a Ray cluster; it does not apply to --runner local")
        if s.workers > cpus:
            return (f"--workers {s.workers} on this machine's {cpus} CPUs: the local runner runs every trial here, "
                    "so they will share cores and each take longer (their seconds and the cost model's fit with them)",)
        return ()

    # ------------------------------------------------------------------------------------------- interface
    def submit(self, task: TrialTask) -> None:
        if self.settings.in_process:
            self._queue.append(task)
        else:
            self._start(task)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        if self.settings.in_process:
            return self._run_next_in_process()
        return self._poll_children(timeout)

    def stop(self, trial_id: int) -> None:
        self._stops.add(trial_id)
        child = self._children.get(trial_id)
        if child is not None:
            try:
                child.conn.send(("stop", trial_id))
            except (BrokenPipeError, OSError):
                pass

    def cancel(self, trial_id: int) -> None:
        child = self._children.pop(trial_id, None)
        if child is not None:
            _kill(child)
        self._queue = collections.deque(t for t in self._queue if t.trial_id != trial_id)
        self._stops.discard(trial_id)

    def close(self) -> None:
        for trial_id in list(self._children):
            self.cancel(trial_id)
        while self._idle:
            _retire(self._idle.pop())
        self._queue.clear()

    # ------------------------------------------------------------------------------------------- in-process
    def _run_next_in_process(self) -> list[TrialOutcome]:
        if not self._queue:
            return []
        from nas.engine.trial import run_trial_body

        task = self._queue.popleft()
        tid = task.trial_id

        def report(step: int, metrics: Mapping[str, float]) -> bool:
            self.on_report(tid, int(step), dict(metrics))
            return tid in self._stops

        payload = run_trial_body(task.spec_dict(self._spec), task.to_dict(), report)
        self._stops.discard(tid)
        return [TrialOutcome(tid, payload)]

    # ------------------------------------------------------------------------------------------- children
    def _start(self, task: TrialTask, attempts: int = 1) -> None:
        spec = task.spec_dict(self._spec)
        child = self._warm_child()
        if child is None:
            parent, child_end = self._ctx.Pipe()
            process = self._ctx.Process(target=_child_main, args=(spec.get("log_path") or "", child_end),
                                        name=f"spinenas-trial-{task.index}", daemon=True)
            process.start()
            child_end.close()
            child = _Child(task, process, parent)
        else:
            child.task = task
            child.trials += 1
            child.result = None
        child.attempts = attempts
        child.judged = frozenset(int(s) for s in spec.get("judged_steps") or ())
        self._children[task.trial_id] = child
        try:
            child.conn.send(("task", spec, task.to_dict()))
        except (BrokenPipeError, OSError):
            pass  # it died: `_poll_children` sees its sentinel and starts the trial again
        if task.trial_id in self._stops:
            self.stop(task.trial_id)

    def _warm_child(self) -> _Child | None:
        """An idle child that may run another trial, if any (those that died while idle are let go)."""
        while self._idle:
            child = self._idle.pop()
            if child.process.is_alive():
                return child
            _retire(child)
        return None

    def _poll_children(self, timeout: float) -> list[TrialOutcome]:
        if not self._children:
            time.sleep(min(timeout, 0.05))
            return []
        waitables: dict[Any, _Child] = {}
        for child in self._children.values():
            waitables[child.conn] = child
            waitables[child.process.sentinel] = child
        ready = wait(list(waitables), timeout)
        outcomes = []
        for child in {id(waitables[r]): waitables[r] for r in ready}.values():
            self._drain(child)
            if child.result is not None:
                outcomes.append(self._finish(child, TrialOutcome(child.task.trial_id, child.result)))
            elif not child.process.is_alive():
                self._drain(child)  # what it sent before it died
                if child.result is not None:
                    outcomes.append(self._finish(child, TrialOutcome(child.task.trial_id, child.result)))
                    continue
                code = child.process.exitcode
                self._children.pop(child.task.trial_id, None)
                child.conn.close()
                if child.attempts <= self.settings.worker_retries:
                    logger.warning("[trial %d] its process died (exit code %s); starting it again (attempt %d)",
                                   child.task.index, code, child.attempts + 1)
                    self._start(child.task, attempts=child.attempts + 1)
                else:
                    outcomes.append(TrialOutcome(child.task.trial_id, None, error=(
                        f"WorkerCrashedError: the trial's process died (exit code {code}) "
                        f"{child.attempts} times")))
                    self._stops.discard(child.task.trial_id)
        return outcomes

    def _drain(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if message[0] == "report":
                    self.on_report(child.task.trial_id, message[1], message[2])
                    if message[1] in child.judged:  # after on_report: a stop it asked for is already on its way
                        child.conn.send(("judged", child.task.trial_id, message[1]))
                elif message[0] == "result":
                    child.result = message[1]
        except (EOFError, OSError):
            pass

    def _finish(self, child: _Child, outcome: TrialOutcome) -> TrialOutcome:
        assert child.task is not None
        self._children.pop(child.task.trial_id, None)
        self._stops.discard(child.task.trial_id)
        bound = self.trials_per_worker
        child.task = None
        child.result = None
        if child.process.is_alive() and (bound == 0 or child.trials < bound):
            self._idle.append(child)
        else:
            _retire(child)
        return outcome


def _retire(child: _Child) -> None:
    """Asks a child to exit, and kills it if it has not within 10 s."""
    try:
        child.conn.send(("exit",))
    except (BrokenPipeError, OSError):
        pass
    child.process.join(timeout=10)
    if child.process.is_alive():
        _kill(child)
    else:
        child.conn.close()


def _kill(child: _Child) -> None:
    try:
        child.process.kill()
        child.process.join(timeout=10)
    except (OSError, ValueError):
        pass
    try:
        child.conn.close()
    except OSError:
        pass


"""The runner interface: submit a trial; its reports while it runs; a cooperative stop; cancel.

A runner knows nothing of controllers or the database: it runs `TrialTask`s of one `TrialSpec` (plain data) with
the evaluator the spec names, forwards each ``report(step, metrics)`` the evaluator makes to the driver's
``on_report`` callback as soon as it arrives (in `poll`, or at once for the in-process mode), and hands back each
finished trial as a `TrialOutcome`. Compare PyGlove's tuning backends (`pyglove/core/tuning/backend.py`): the loop
talks to an interface, registered by name, and the execution engine is one implementation of it.

Semantics every runner keeps:
- `submit` starts the trial (or queues it while all its slots are busy; the driver keeps at most ``workers`` in
  flight);
- `poll(timeout)` waits up to `timeout` seconds for something to happen and returns the trials that finished,
  after calling ``on_report`` for every report that arrived;
- `stop(trial_id)` asks a running trial to stop at its next report: the evaluator returns what it has (its
  outcome has ``stopped_at``) and its worker stays usable (warm, for the next trial, when workers are reused);
- with ``trials_per_worker`` other than 1 a worker process runs several trials one after another;
- `cancel(trial_id)` kills it (a timeout): no outcome is returned for it;
- a worker process that dies is started again up to ``worker_retries`` times; after that the outcome carries the
  error.

What a runner needs around a job is its class's too, so a command knows nothing of any runner (no Ray in the CLI):
`Runner.check_request` checks the job's per-trial request against the machine or cluster its trials will run on,
before anything of the job is created, and `Runner.backend` is a `Backend`, the context manager that brings up what
the runner needs for the job (a Ray started here or a cluster joined) and takes down only what it started. A runner
that defines neither has nothing to check and nothing to start.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: ``on_report(trial_id, step, metrics)``: the driver's callback for a trial's report.
OnReport = Callable[[int, int, Mapping[str, float]], None]

#: Seconds a trial waits at a judged step for the driver's answer before it trains on (a driver that is gone or
#: stuck must not hold its trials forever).
JUDGE_WAIT_S = 120.0


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """What every trial of a search evaluates with (plain data: crosses process boundaries as a dict).

    Attributes:
      evaluator: the registered evaluator's name.
      settings: its settings section as a dict (empty when it has none).
      proxy: the `ProxyConfig` as a dict.
      context: the `proxy_task.evaluator.TrialContext` fields (without the label) as a dict.
      faults: fault injection for tests and the fault benchmark only (`nas.engine.faults`); empty in a real search.
      fault_dir: where the fault injector keeps its markers.
      log_path: a file the trial's own output (TensorFlow's C++ logs, warnings) is appended to, for runners whose
        trials run in processes of their own ('' keeps it where the process's output goes).
      plugins: the search's plug-in modules, imported by the trial before it looks its evaluator up (a worker
        process has only the built-in entries until it does).
      plugin_paths: the ``sys.path`` entries the driver found them under (`search_space.registry.plugin_roots`),
        put first on a worker's path where missing, so a worker started without the driver's PYTHONPATH (a Ray
        worker) imports them too.
      judged_steps: the steps whose report the driver judges (its scheduler's rungs): there the trial waits for
        the driver's answer (continue or stop) before it trains on, so a trial stopped at a rung trains no step past
        it, whatever the runner (the driver answers every such report, up to `JUDGE_WAIT_S`).
    """

    evaluator: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    proxy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    faults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fault_dir: str = ""
    log_path: str = ""
    plugins: tuple[str, ...] = ()
    plugin_paths: tuple[str, ...] = ()
    judged_steps: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain dicts."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrialTask:
    """One trial to run.

    Attributes:
      trial_id: the trial's database id (the runner's handle for it).
      index: its index within the search (tags logs; the fault injector's key).
      arch_json: `ArchSpec.to_json()` of the architecture.
      seed: the trial's seed.
      spec: a spec of its own (another fidelity of the proxy, as a calibration study's reference trials have), or
        None for the runner's.
    """

    trial_id: int
    index: int
    arch_json: str
    seed: int
    spec: TrialSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task as the trial body takes it (without its spec)."""
        return {"trial_id": self.trial_id, "index": self.index, "arch_json": self.arch_json, "seed": self.seed}

    def spec_dict(self, default: dict[str, Any]) -> dict[str, Any]:
        """Its own spec as a dict, or `default` (the runner's)."""
        return self.spec.to_dict() if self.spec is not None else default


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """A trial that ended.

    Attributes:
      trial_id: the trial.
      payload: what the trial body returned (`nas.engine.trial.run_trial_body`): ``result`` (a `ProxyResult` dict),
        ``host``, ``pid``, ``started``; None when the trial produced none.
      error: why there is no payload (a worker that died past its retries), else None.
    """

    trial_id: int
    payload: Mapping[str, Any] | None
    error: str | None = None


class Backend:
    """What a runner needs up while one job runs (a cluster it starts or joins), as a context manager: entered
    before the runner is built and exited after the job, it takes down only what it started. Building one starts
    nothing. This one needs nothing: the default of a runner that supplies no backend.

    The job's frame (`nas.cli.commands.jobs.trial_job`) enters it at one of two points, as `before_writes` says:
    - before the job writes anything (True): for a start that only reaches something already there (a cluster to
      join), which may fail on the user's input and must then leave nothing behind;
    - after the job's rows and lease (False): for a start that makes something and takes a while (a local Ray), so
      that an interrupt while it starts finds a job that resumes.

    Attributes:
      before_writes: where it is entered (above).
    """

    before_writes: bool = False

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def check_cpus_here(cfg: Any, hint: str = "") -> None:
    """That a trial's CPUs (``cfg.search.cpus_per_trial``) fit this machine, for a runner whose trials run here.

    Raises:
      nas.cli.ui.UserError: they do not ('... more than this machine's N CPUs', then `hint`).
    """
    import os

    from nas.cli.ui import UserError

    cpus = os.cpu_count() or 1
    if cfg.search.cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {cfg.search.cpus_per_trial:g} is more than this machine's {cpus} CPUs{hint}")


class Runner(abc.ABC):
    """Runs the trials of one search. Built by `nas.engine.runners.build_runner`.

    Args:
      settings: the runner's settings section (``runner.<type>``).
      spec: what every trial evaluates with.
      on_report: the driver's callback for reports.
      trials_per_worker: trials one worker process runs before it exits: 1 (a fresh process per trial, the
        default), n, or 0 (no bound); see `nas.engine.driver.worker_calls`.
    """

    def __init__(self, settings: Any, *, spec: TrialSpec, on_report: OnReport, trials_per_worker: int = 1) -> None:
        if isinstance(trials_per_worker, bool) or not isinstance(trials_per_worker, int) or trials_per_worker < 0:
            raise ValueError(f"trials_per_worker must be an integer >= 0 (0: no bound), got {trials_per_worker!r}")
        self.settings = settings
        self.spec = spec
        # What each trial holds: its context says it (the evaluator reads the same numbers for its threads and GPU).
        self.cpus = float(spec.context.get("cpus", 1.0))
        self.gpus = float(spec.context.get("gpus", 0.0))
        self.on_report = on_report
        self.trials_per_worker = trials_per_worker

    @abc.abstractmethod
    def submit(self, task: TrialTask) -> None:
        """Starts a trial."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Waits up to `timeout` s; calls ``on_report`` for the reports that arrived; returns finished trials."""

    @abc.abstractmethod
    def stop(self, trial_id: int) -> None:
        """Asks a running trial to end at its next report (it returns what it has); no-op for an unknown id."""

    @abc.abstractmethod
    def cancel(self, trial_id: int) -> None:
        """Kills a trial (no outcome follows); no-op for an unknown id."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Cancels what still runs and frees the runner's resources."""

    # ------------------------------------------------------------------------------------------- around a job
    @classmethod
    def check_request(cls, cfg: Any, *, address: str | None = None) -> Sequence[str]:
        """Checks a job's per-trial request (``cfg.search``: CPUs and GPUs per trial, workers) against where this
        runner's trials would run, before anything of the job is created: no folder, no database, no backend.
        Called by `nas.engine.runners.check_request`; the default checks nothing.

        Args:
          cfg: the job's `NasConfig` (its runner section is this runner's).
          address: the cluster the user named (``--address``), or None.

        Returns:
          Warnings to show; the job goes on.

        Raises:
          nas.cli.ui.UserError: a request this runner cannot serve, in one line.
        """
        return ()

    @classmethod
    def backend(cls, cfg: Any, *, say: Callable[[str], None], address: str | None = None) -> Backend:
        """What this runner needs up for a job (see `Backend`), not started yet. The default needs nothing.

        Args:
          cfg: the job's `NasConfig`.
          say: shows a line to the user (a notice while it starts).
          address: the cluster the user named (``--address``), or None.
        """
        return Backend()


__all__ = ["Backend", "OnReport", "check_cpus_here", "Runner", "TrialOutcome", "TrialSpec", "TrialTask"]

"""Settings of the runners (``runner.ray``, ``runner.local``): stdlib dataclasses, importable without Ray."""

from __future__ import annotations

import dataclasses

from proxy_task.config import check_number

# `worker_retries` stops here: a trial whose worker keeps dying is a fault to look at, not to retry for ever.
MAX_WORKER_RETRIES = 100


@dataclasses.dataclass(frozen=True)
class RayRunnerConfig:
    """Trials as Ray tasks, on this machine (a local Ray started by the search) or a cluster (``--address``).

    Attributes:
      worker_retries: a trial whose worker process dies (OOM kill, segfault, a lost node) is run again this many
        times before it is stored as failed.
    """

    worker_retries: int = 2

    def __post_init__(self) -> None:
        check_number("worker_retries", self.worker_retries, integer=True, low=0, high=MAX_WORKER_RETRIES)


@dataclasses.dataclass(frozen=True)
class LocalRunnerConfig:
    """Trials in child processes of the driver, without Ray (debugging, tests, a machine without Ray).

    Attributes:
      in_process: run each trial inside the driver's own process, one at a time, instead of in a child process
        (TF-free evaluators only, such as the surrogate: no process start, a debugger sees the trial).
      worker_retries: a child process that dies before it returns a result is started again this many times
        before the trial is stored as failed (as the Ray runner retries a dead worker).
    """

    in_process: bool = False
    worker_retries: int = 2

    def __post_init__(self) -> None:
        check_number("worker_retries", self.worker_retries, integer=True, low=0, high=MAX_WORKER_RETRIES)

"""Trials as Ray tasks: one fresh worker process per trial, plain data across the boundary, failures as data.

The task function imports the evaluator inside the worker (TensorFlow and Model Garden only there), sizes TF's
thread pools to the task's CPUs, and returns a plain dict. A worker that dies (OOM kill, segfault, a lost node) is
retried by Ray (`max_retries`); the driver sees one result either way. An exception inside the trial is caught and
returned as `ProxyResult.error`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# Ray's switch for its single-node (loopback) mode; see `init_ray`.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray retries a task whose worker process died this many times before reporting the failure.
WORKER_RETRIES = 2


@dataclasses.dataclass(frozen=True)
class EvaluatorSpec:
    """What a trial task evaluates with (plain data: crosses the Ray boundary).

    Attributes:
      kind: 'retinanet' (the proxy task) or 'surrogate' (TF-free structural reward).
      proxy: the `ProxyConfig` as a dict (retinanet).
      surrogate: keyword arguments of `proxy_task.surrogate.SurrogateEvaluator` (surrogate).
      duration_s: simulated seconds per surrogate trial.
      cpus: the CPUs the task holds (TF's intra-op threads).
      faults: test and benchmark fault injection, by trial index: {'raise': [i], 'nan': [i], 'crash_once': [i],
        'hang': [i]}; 'crash_once' exits the worker process once (a marker file under `fault_dir` remembers it).
      fault_dir: folder for the crash_once markers.
    """

    kind: str
    proxy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    surrogate: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    duration_s: float = 0.0
    cpus: float = 1.0
    faults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fault_dir: str = ""


def _inject_faults(spec: EvaluatorSpec, index: int) -> str | None:
    faults = spec.faults or {}
    if index in faults.get("crash_once", ()):
        os.makedirs(spec.fault_dir or "/tmp", exist_ok=True)
        marker = os.path.join(spec.fault_dir or "/tmp", f"crashed-{index}")
        if not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
            os._exit(1)  # the worker process dies: Ray retries the task
    if index in faults.get("hang", ()):
        time.sleep(10**6)
    if index in faults.get("raise", ()):
        raise RuntimeError(f"injected failure in trial {index}")
    if index in faults.get("nan", ()):
        return "nan"
    return None


def run_trial_task(spec_dict: Mapping[str, Any], arch_json: str, index: int, seed: int) -> dict[str, Any]:
    """The body of one trial (runs inside a Ray worker; also callable directly for tests).

    Returns:
      {'result': ProxyResult.to_dict(), 'host': hostname, 'pid': worker pid, 'started': unix time}
    """
    from proxy_task.result import ProxyResult
    from search_space import ArchSpec

    spec = EvaluatorSpec(**spec_dict)
    started = time.time()
    host = socket.gethostname()
    try:
        arch = ArchSpec.from_json(arch_json)
        injected = _inject_faults(spec, index)
        if spec.kind == "surrogate":
            from proxy_task.surrogate import SurrogateEvaluator

            if spec.duration_s:
                time.sleep(spec.duration_s)
            result = SurrogateEvaluator(**dict(spec.surrogate)).evaluate(arch, seed=seed)
        elif spec.kind == "retinanet":
            from nas.config_io import from_dict
            from proxy_task.config import ProxyConfig
            from proxy_task.data import ensure_dataset
            from proxy_task.trainer import run_trial

            cfg = from_dict(ProxyConfig, dict(spec.proxy))
            cfg = dataclasses.replace(cfg, seed=seed, threads=max(1, int(math.floor(spec.cpus))))
            dataset = ensure_dataset(cfg.data)
            result = run_trial(arch, cfg, dataset, trial_label=f"trial {index}")
        else:
            raise ValueError(f"unknown evaluator {spec.kind!r}")
        if injected == "nan":
            result = dataclasses.replace(result, metrics={**result.metrics, "ap": float("nan")})
        # The trial's time as the search sees it (a surrogate's simulated duration included).
        result = dataclasses.replace(result, wall_s=max(result.wall_s, time.time() - started))
    except Exception as e:  # noqa: BLE001 - a failed trial is data
        logger.error("[trial %d] failed:\n%s", index, traceback.format_exc())
        result = ProxyResult(metrics={}, wall_s=time.time() - started,
                             error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
    return {"result": result.to_dict(), "host": host, "pid": os.getpid(), "started": started}


_REMOTE: dict[bool, Any] = {}


def remote_trial(fresh_process: bool = True) -> Any:
    """The Ray remote function of a trial.

    Args:
      fresh_process: run every trial in a new worker process (`max_calls=1`): TensorFlow keeps graphs and memory
        for the life of a process, so real proxy trials always do. TF-free surrogate trials may reuse workers.
    """
    if fresh_process not in _REMOTE:
        import ray

        _REMOTE[fresh_process] = ray.remote(
            max_calls=1 if fresh_process else 0, max_retries=WORKER_RETRIES, retry_exceptions=False
        )(run_trial_task)
    return _REMOTE[fresh_process]


def init_ray(address: str | None, *, num_cpus: float | None = None, log_to_driver: bool = False) -> bool:
    """Connects to a Ray cluster (`address`) or starts a local one on loopback.

    Returns:
      True when this call started a local cluster (the caller shuts it down).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address:
        # A local cluster stays on loopback: Ray 2.60 turns 127.0.0.1 given as the node address into the
        # machine's network address, except in its single-node mode, which this variable selects (it must be set
        # before Ray is imported; Ray's workers inherit it).
        os.environ.setdefault(LOOPBACK_ENV, "0")
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
        return False
    ray.init(
        num_cpus=int(num_cpus) if num_cpus else None,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=log_to_driver,
        configure_logging=False,
    )
    return True

"""The body of one trial, the same in every runner: build the evaluator, score the architecture, failures as data.

It runs where the runner puts it (a Ray worker, a child process, or the driver's own process), imports the search's
plug-ins and the evaluator's module there (TensorFlow and Model Garden only for the retinanet evaluator), and returns
a plain dict.
An exception inside the trial is caught and returned as `ProxyResult.error`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import traceback
from collections.abc import Mapping
from typing import Any

from proxy_task.evaluator import Reporter, no_report

logger = logging.getLogger(__name__)


def build_trial_evaluator(spec: Mapping[str, Any], index: int) -> Any:
    """The evaluator a `TrialSpec` (as a dict) names, wrapped by the fault injector when the spec lists faults; the
    spec's plug-ins are imported first (from the driver's paths where this process lacks them)."""
    from nas.config.codec import from_dict
    from proxy_task.config import ProxyConfig
    from proxy_task.evaluator import TrialContext, build_evaluator, get_evaluator_entry
    from search_space.registry import import_plugins

    import_plugins(spec.get("plugins") or (), paths=spec.get("plugin_paths") or ())
    name = spec["evaluator"]
    entry = get_evaluator_entry(name)
    settings = from_dict(entry.config_cls, dict(spec.get("settings") or {})) if entry.config_cls else None
    proxy = from_dict(ProxyConfig, dict(spec.get("proxy") or {}))
    context = TrialContext(**{**dict(spec.get("context") or {}), "label": f"trial {index}"})
    evaluator = build_evaluator(name, settings=settings, proxy=proxy, context=context)
    if spec.get("faults"):
        from nas.engine.faults import FaultInjector

        evaluator = FaultInjector(evaluator, spec["faults"], index=index, fault_dir=spec.get("fault_dir", ""))
    return evaluator


def run_trial_body(spec: Mapping[str, Any], task: Mapping[str, Any], report: Reporter = no_report) -> dict[str, Any]:
    """Scores one trial.

    Args:
      spec: a `TrialSpec` as a dict.
      task: a `TrialTask` as a dict.
      report: the evaluator's progress callback.

    Returns:
      {'result': ProxyResult.to_dict(), 'host': hostname, 'pid': process id, 'started': unix time}
    """
    from proxy_task.result import ProxyResult
    from search_space import ArchSpec

    started = time.time()
    index = int(task["index"])

    def timed_report(step: int, metrics: Any) -> bool:
        # The seconds since the trial body started, on the worker's clock (a rung's cost, as wall_s is the trial's).
        return report(step, {**metrics, "elapsed_s": time.time() - started})

    try:
        arch = ArchSpec.from_json(task["arch_json"])
        evaluator = build_trial_evaluator(spec, index)
        result = evaluator.evaluate(arch, seed=int(task["seed"]), report=timed_report)
        # The trial's time as the search sees it (a surrogate's simulated duration included).
        result = dataclasses.replace(result, wall_s=max(result.wall_s, time.time() - started))
    except Exception as e:  # noqa: BLE001 - a failed trial is data
        logger.error("[trial %d] failed:\n%s", index, traceback.format_exc())
        result = ProxyResult(metrics={}, wall_s=time.time() - started,
                             error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
    return {"result": result.to_dict(), "host": socket.gethostname(), "pid": os.getpid(), "started": started}

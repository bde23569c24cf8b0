"""Fault injection for tests and `scripts/bench/faults.py`: an evaluator wrapper, never part of a real search.

A search gets it only through `spinenas search`'s hidden ``--inject-faults`` flag (JSON, by trial index)::

  {"raise": [i], "nan": [i], "crash_once": [i], "hang": [i]}

'raise' makes the trial raise inside its body (a failed trial); 'nan' turns its AP into NaN (a failed trial);
'crash_once' kills the worker process the first time the trial runs (a marker file under `fault_dir` remembers it,
so the runner's retry succeeds); 'hang' sleeps until the trial is cancelled (a timeout).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxy_task.evaluator import Evaluator, Reporter, no_report

if TYPE_CHECKING:
    from proxy_task.result import ProxyResult
    from search_space import ArchSpec

FAULT_KINDS = ("raise", "nan", "crash_once", "hang")
#: Faults that end the process or never return: runners whose trials run in the driver's process refuse them.
PROCESS_FAULTS = ("crash_once", "hang")


def check_faults(faults: Any) -> dict[str, list[int]]:
    """The fault table, validated.

    Raises:
      ValueError: not a mapping of known kinds to lists of trial indices.
    """
    if not isinstance(faults, Mapping):
        raise ValueError(f"--inject-faults expects a JSON object, got {faults!r}")
    out: dict[str, list[int]] = {}
    for kind, indices in faults.items():
        if kind not in FAULT_KINDS:
            raise ValueError(f"--inject-faults: unknown fault {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise ValueError(f"--inject-faults: {kind} expects a list of trial indices, got {indices!r}")
        out[kind] = list(indices)
    return out


class FaultInjector(Evaluator):
    """Wraps an evaluator and injects the faults listed for a trial index.

    Args:
      inner: the real evaluator.
      faults: the fault table (`check_faults`).
      index: the trial's index within its search.
      fault_dir: folder of the crash_once markers.
    """

    def __init__(self, inner: Evaluator, faults: Mapping[str, Any], *, index: int, fault_dir: str) -> None:
        self.inner = inner
        self.faults = faults
        self.index = index
        self.fault_dir = fault_dir or "/tmp"
        self.uses_tensorflow = inner.uses_tensorflow  # type: ignore[misc]

    def _has(self, kind: str) -> bool:
        return self.index in self.faults.get(kind, ())

    def evaluate(self, arch: ArchSpec, *, seed: int, report: Reporter = no_report) -> ProxyResult:
        if self._has("crash_once"):
            os.makedirs(self.fault_dir, exist_ok=True)
            marker = os.path.join(self.fault_dir, f"crashed-{self.index}")
            if not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(str(os.getpid()))
                os._exit(1)  # the worker process dies: the runner runs the trial again
        if self._has("hang"):
            time.sleep(10**6)
        if self._has("raise"):
            raise RuntimeError(f"injected failure in trial {self.index}")
        result = self.inner.evaluate(arch, seed=seed, report=report)
        if self._has("nan"):
            result = dataclasses.replace(result, metrics={**result.metrics, "ap": float("nan")})
        return result

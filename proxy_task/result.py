"""`ProxyResult`: what one trial returns (plain data; crosses the Ray boundary as a dict)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class ProxyResult:
    """The outcome of one proxy trial.

    A failed trial is data, not an exception: `error` says why, and `metrics` holds what was measured before it.

    Attributes:
      metrics: raw proxy outputs, e.g. ap, ap50, ap75, aps, apm, apl, train_loss, steps, images_per_s, trace_s,
        peak_rss_mb, gflops_per_s.
      flops: multiply-adds per image at the proxy resolution (None if not measured).
      params: trainable and non-trainable parameters of the detector (None if not measured).
      wall_s: wall-clock seconds of the whole trial.
      error: None for a trial that finished, else a one-line reason (the traceback goes to the log).
      stopped_at: the step at which the trial was stopped by its runner (a cooperative stop: it returned what it
        had at that report), or None when it ran to its last step.
      precision: what it trained in ('float32', 'float16', 'bfloat16': ``proxy.mixed_precision`` as the trial
        decided it), or None when it did not get that far or its evaluator does not train.
    """

    metrics: Mapping[str, float]
    flops: int | None = None
    params: int | None = None
    wall_s: float = 0.0
    error: str | None = None
    stopped_at: int | None = None
    precision: str | None = None

    @property
    def ok(self) -> bool:
        """True when the trial finished with a finite AP."""
        ap = self.metrics.get("ap")
        return self.error is None and ap is not None and math.isfinite(ap)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the form sent across Ray and stored)."""
        return {
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "flops": self.flops,
            "params": self.params,
            "wall_s": float(self.wall_s),
            "error": self.error,
            "stopped_at": self.stopped_at,
            "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProxyResult:
        """Inverse of `to_dict`."""
        return cls(
            metrics=dict(d.get("metrics", {})),
            flops=d.get("flops"),
            params=d.get("params"),
            wall_s=float(d.get("wall_s", 0.0)),
            error=d.get("error"),
            stopped_at=d.get("stopped_at"),
            precision=d.get("precision"),
        )

    def flat(self) -> dict[str, Any]:
        """One flat dict: the metrics next to params, flops, wall_s and error (`spinenas proxy run --json`)."""
        out: dict[str, Any] = {k: float(v) for k, v in self.metrics.items()}
        out.update(params=self.params, flops=self.flops, wall_s=round(float(self.wall_s), 3), error=self.error,
                   stopped_at=self.stopped_at, precision=self.precision)
        return out

"""The reward fed to the controller: a pure function of a trial's result and the search config."""

from __future__ import annotations

import math

from nas.config.schema import SearchConfig
from proxy_task.result import ProxyResult


def compute_reward(result: ProxyResult, cfg: SearchConfig) -> float | None:
    """The reward of one trial, or None for a failed one (the controller then applies its failure rule).

    'ap': the proxy's COCO AP. 'ap-flops': MnasNet's soft constraint as Vertex AI NAS applies it,
    ``AP * min(1, (target_flops / flops) ** w)`` with w = `flops_exponent`: architectures over the FLOPs target
    lose reward smoothly (w = 0.07: twice the target costs 4.7%), architectures under it are not paid extra
    (the penalty is capped at 1).

    Args:
      result: the trial's result.
      cfg: the search settings (`reward`, `target_flops`, `flops_exponent`).
    """
    if result.error is not None:
        return None
    ap = result.metrics.get("ap")
    if ap is None or not math.isfinite(ap):
        return None
    if cfg.reward == "ap":
        return float(ap)
    flops = result.flops
    if not flops or flops <= 0:
        return None
    factor = min(1.0, (cfg.target_flops / flops) ** cfg.flops_exponent)
    return float(ap) * factor

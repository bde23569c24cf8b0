"""A plug-in module as a user writes one (``--plugin MODULE``): an evaluator and a controller, registered on import.

The tests import it as ``tests.nas.plugin_example``, or copy it under another name into a folder of its own so that
only a driver given that folder finds it (its targets name the module it is imported as, ``__name__``). TF-free:
the evaluator's AP is a deterministic function of the architecture, scaled by its ``evaluator.toy.scale``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from controller import register_controller
from controller.config import RandomConfig
from controller.random_search import RandomController
from proxy_task.evaluator import Evaluator, no_report, register_evaluator
from proxy_task.result import ProxyResult

EVALUATOR = "toy"
CONTROLLER = "toy-random"


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """The toy evaluator's settings (``evaluator.toy.*``).

    Attributes:
      scale: multiplies every AP, in (0, 1].
    """

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.scale!r}")


def toy_ap(arch: Any, scale: float = 1.0) -> float:
    """The toy AP of an architecture: its shares of bottleneck blocks and of blocks at level 3 or 4, mixed
    (deterministic; no training), of its canonical form (the one stored: equivalent architectures score alike)."""
    blocks = arch.canonical().blocks
    bottleneck = sum(b.block_fn == "bottleneck" for b in blocks) / len(blocks)
    low = sum(b.level in (3, 4) for b in blocks) / len(blocks)
    return scale * (0.05 + 0.5 * bottleneck + 0.4 * low) / 0.95


class ToyEvaluator(Evaluator):
    """Scores an architecture by `toy_ap` at once; reports the AP at the proxy's last step."""

    uses_tensorflow = False

    def __init__(self, settings: ToyConfig, proxy: Any, context: Any) -> None:
        self.settings = settings
        self.proxy = proxy

    def evaluate(self, arch: Any, *, seed: int, report: Any = no_report) -> ProxyResult:
        ap = toy_ap(arch, self.settings.scale)
        # The worker's pid: the tests see where the trial ran.
        metrics = {"ap": ap, "worker_pid": float(os.getpid())}
        report(self.proxy.train_steps, metrics)
        return ProxyResult(metrics=metrics, wall_s=0.0)


@dataclasses.dataclass(frozen=True)
class ToyControllerConfig(RandomConfig):
    """The toy controller's settings: random search's (``controller.toy-random.*``)."""


class ToyController(RandomController):
    """Random search under another name (a controller a plug-in adds)."""

    name = CONTROLLER
    config_cls = ToyControllerConfig


register_evaluator(EVALUATOR, f"{__name__}:ToyEvaluator", config_cls=ToyConfig, uses_tensorflow=False,
                   needs_data=False)
register_controller(CONTROLLER, f"{__name__}:ToyController", config_cls=ToyControllerConfig)


def unregister() -> None:
    """Takes the entries out again (tests that imported the module in their own process)."""
    from controller import CONTROLLERS
    from proxy_task.evaluator import EVALUATORS

    EVALUATORS.unregister(EVALUATOR)
    CONTROLLERS.unregister(CONTROLLER)

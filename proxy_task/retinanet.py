"""The ``retinanet`` evaluator: a proxy trial of Model Garden's RetinaNet with the searched SpineNet (TensorFlow)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING

from proxy_task.evaluator import Evaluator, Reporter, TrialContext, no_report
from proxy_task.result import ProxyResult

if TYPE_CHECKING:
    from proxy_task.config import ProxyConfig
    from search_space import ArchSpec

logger = logging.getLogger(__name__)


class RetinaNetEvaluator(Evaluator):
    """Scores an architecture by `proxy_task.trainer.run_trial`: a short RetinaNet training, then COCO AP.

    It has no settings section of its own: everything is in ``proxy.*``. The trial's seed replaces
    ``proxy.seed``, TensorFlow gets ``floor(context.cpus)`` intra-op threads (at least one) and the trial's GPU share
    (``context.gpus``) sets how it takes GPU memory.

    Example::

      ev = RetinaNetEvaluator(None, get_preset('demo').proxy, TrialContext(cpus=2, label='trial 3'))
      result = ev.evaluate(SPINENET_49.canonical(), seed=0, report=lambda step, metrics: False)
    """

    uses_tensorflow = True

    def __init__(self, settings: None, proxy: ProxyConfig, context: TrialContext) -> None:
        """Keeps the settings; TensorFlow is imported only by `evaluate`.

        Args:
          settings: None (the evaluator has no section of its own).
          proxy: the proxy task's settings.
          context: the trial's context (its CPUs and log label are used).
        """
        del settings
        self._proxy = proxy
        self._context = context

    def evaluate(self, arch: ArchSpec, *, seed: int, report: Reporter = no_report) -> ProxyResult:
        """Trains and scores `arch` in this process; never raises for a failed trial.

        Args:
          arch: the architecture.
          seed: the trial's seed (replaces ``proxy.seed``).
          report: the learning curve's `Reporter` (see `run_trial` for what it gets); True stops the trial.

        Returns:
          The trial's `ProxyResult`; a dataset that cannot be made or read is an error, as a failed training is.
        """
        from proxy_task.data import ensure_dataset
        from proxy_task.trainer import run_trial

        started = time.time()
        cfg = dataclasses.replace(self._proxy, seed=seed, threads=max(1, math.floor(self._context.cpus)))
        try:
            dataset = ensure_dataset(cfg.data)
        except Exception as e:  # noqa: BLE001 - a failed trial is data
            logger.error("[%s] no dataset: %s", self._context.label, e)
            return ProxyResult(metrics={}, wall_s=time.time() - started,
                               error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
        return run_trial(arch, cfg, dataset, trial_label=self._context.label, report=report,
                         gpu_share=self._context.gpus)

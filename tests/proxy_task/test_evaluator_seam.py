"""A new evaluator is one module plus one registration: its settings become a config section, the driver runs it."""

from __future__ import annotations

import dataclasses

import pytest

from nas.config.schema import NasConfig
from nas.config.codec import ConfigError, resolve
from proxy_task import evaluator as registry
from proxy_task.evaluator import Evaluator, no_report
from proxy_task.result import ProxyResult
from tests.nas.helpers import cfg_of, run_search


@dataclasses.dataclass(frozen=True)
class DepthConfig:
    """Settings of the test evaluator.

    Attributes:
      per_block: AP per live block.
    """

    per_block: float = 0.01


class DepthEvaluator(Evaluator):
    """Scores an architecture by its number of live blocks (a stand-in for a user's evaluator)."""

    uses_tensorflow = False

    def __init__(self, settings: DepthConfig, proxy, context) -> None:
        self.settings, self.proxy = settings, proxy

    def evaluate(self, arch, *, seed, report=no_report):
        ap = min(1.0, self.settings.per_block * len(arch.network().blocks))
        for step in range(self.proxy.log_every, self.proxy.train_steps + 1, self.proxy.log_every):
            if report(step, {"loss": 1.0 / step, "ap": ap * step / self.proxy.train_steps}):
                return ProxyResult(metrics={"ap": ap * step / self.proxy.train_steps}, stopped_at=step)
        return ProxyResult(metrics={"ap": ap})


@pytest.fixture
def depth_evaluator():
    registry.register_evaluator("depth", f"{__name__}:DepthEvaluator", config_cls=DepthConfig,
                                uses_tensorflow=False)
    yield
    registry.EVALUATORS.unregister("depth")


def test_a_registered_evaluator_is_configured_by_its_section_and_run_by_the_driver(tmp_path, depth_evaluator):
    cfg = resolve(NasConfig, cfg_of(trials=4, workers=1), ["evaluator.type=depth", "evaluator.depth.per_block=0.02"])
    assert cfg.evaluator.get() == DepthConfig(per_block=0.02)
    store, outcome, _ = run_search(tmp_path, cfg)
    trials = store.trials("s")
    assert outcome.completed == 4
    assert all(t.reward == pytest.approx(0.02 * t.metrics["ap"] / 0.02) for t in trials)
    assert all(len(store.reports([t.id])[t.id]) == 4 for t in trials)
    with pytest.raises(ConfigError, match="unknown key 'evaluator.depth.nosuch'"):
        resolve(NasConfig, cfg, ["evaluator.depth.nosuch=1"])


def test_registering_a_name_twice_or_a_bad_target_is_refused():
    with pytest.raises(KeyError, match="already registered"):
        registry.register_evaluator("surrogate", "x:Y")
    with pytest.raises(ValueError, match="must be 'module:attribute'"):
        registry.register_evaluator("other", "no_colon")
    with pytest.raises(LookupError, match="unknown evaluator 'nope'; expected one of retinanet, surrogate"):
        registry.get_evaluator_entry("nope")

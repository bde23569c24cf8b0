"""Result fingerprints: pinned values (stored databases rely on them) and an evaluator's own declarations."""

from __future__ import annotations

import dataclasses
import os

import pytest

from nas.cli.commands.jobs import ensure_data
from nas.cli.ui import UserError
from nas.config.codec import resolve, to_dict
from nas.config.presets import get_preset
from nas.config.schema import NasConfig
from nas.engine.fingerprint import describe, describe_dict, fingerprint, score_settings
from proxy_task import evaluator as registry
from proxy_task.evaluator import Evaluator, no_report
from proxy_task.result import ProxyResult
from search_space.registry import PluginError
from tests.nas.helpers import run_cli

FLOPS = ["search.reward=ap-flops", "search.target_flops=1e9"]


# --------------------------------------------------------------------------------------------------- pins
# (overrides of the demo preset, study mark, fingerprint, description). The stored trials of every database carry
# these: a change here is a migration (`nas.engine.fingerprint`), never a refactoring. The 800-step demo's (the
# preset's until 12-07) is the one of the committed scripts/bench/results/es-pool.db search; today's 400-step demo's
# the one of the steps400 variant in calibration-variants.db.
DEMO_800 = ["proxy.train_steps=800"]
PINS_800 = [
    ([], None, "b4501c331dff96fc", "retinanet 128 px 800 steps on synth, reward ap"),
    ([], "calibration:proxy", "084fd736c8f49218", "retinanet 128 px 800 steps on synth, reward ap"),
    (FLOPS, None, "f12cd283ff3e89fa", "retinanet 128 px 800 steps on synth, reward ap-flops (target 1e+09)"),
    (["proxy.mixed_precision=auto", "proxy.nms_version=v2"], None, "f4943b2e6acec087",
     "retinanet 128 px 800 steps on synth, auto precision, reward ap"),
    (["proxy.mixed_precision=float32"], None, "b4501c331dff96fc", "retinanet 128 px 800 steps on synth, reward ap"),
    (["proxy.data.kind=dir", "proxy.data.path=/data/p"], None, "1408a51931d2e876",
     "retinanet 128 px 800 steps on /data/p, reward ap"),
    (["evaluator.type=surrogate"], None, "3c673d63b271dfc4",
     "surrogate (target seed 0, spinenet49) 800 steps, reward ap"),
    (["evaluator.type=surrogate", *FLOPS], None, "4f64ead753f47897",
     "surrogate (target seed 0, spinenet49) 800 steps, reward ap-flops (target 1e+09)"),
    (["evaluator.type=surrogate", "evaluator.surrogate.target_seed=3"], None, "c77d8929d5a85b37",
     "surrogate (target seed 3, spinenet49) 800 steps, reward ap"),
    (["evaluator.type=surrogate", "search.seed=9"], None, "d0910e2c105206ea",
     "surrogate (target seed 9, spinenet49) 800 steps, reward ap"),
]
PINS = [([], None, "cde83c8f2b59202c", "retinanet 128 px 400 steps on synth, reward ap"),
        *((DEMO_800 + o, study, fp, text) for o, study, fp, text in PINS_800)]


@pytest.mark.parametrize("overrides, study, expected, text", PINS)
def test_fingerprints_are_pinned(overrides, study, expected, text):
    cfg = resolve(NasConfig, get_preset("demo"), overrides)
    assert fingerprint(cfg, study=study) == expected
    assert describe(cfg) == describe_dict(to_dict(cfg)) == text


@pytest.mark.parametrize("stored, text", [
    ({}, "retinanet ? px ? steps on ?, reward ap"),  # a config from before the evaluator was a choice
    ({"search": {"evaluator": "surrogate", "seed": 4, "family": "spinenet49"}, "proxy": {"train_steps": 300}},
     "surrogate (target seed 4, spinenet49) 300 steps, reward ap"),  # the layout before the evaluator section
    ({"evaluator": {"type": "surrogate", "surrogate": {"target_seed": 7}}},
     "surrogate (target seed 7, ?) ? steps, reward ap"),
    ({"proxy": {"mixed_precision": "bfloat16", "data": {"kind": "synth"}}},
     "retinanet ? px ? steps on synth, bfloat16 precision, reward ap"),
])
def test_stored_configs_of_any_age_are_described(stored, text):
    assert describe_dict(stored) == text


# --------------------------------------------------------------------------------------------------- plug-ins
@dataclasses.dataclass(frozen=True)
class ConstantConfig:
    """Settings of the test evaluator.

    Attributes:
      ap: the AP of every architecture.
    """

    ap: float = 0.5


class ConstantEvaluator(Evaluator):
    """The same AP for every architecture; declares nothing, so it gets the defaults (a trained proxy's)."""

    uses_tensorflow = False

    def __init__(self, settings: ConstantConfig, proxy, context) -> None:
        self.settings = settings

    def evaluate(self, arch, *, seed, report=no_report):
        return ProxyResult(metrics={"ap": self.settings.ap})


class OwnSettingsEvaluator(ConstantEvaluator):
    """Declares that its AP depends on its own setting alone."""

    @classmethod
    def score_settings(cls, settings, proxy, search, *, reward_uses_cost):
        return {"settings": {"ap": settings["ap"]}}

    @classmethod
    def describe(cls, settings, proxy, search):
        return f"of AP {(settings or {}).get('ap', '?')}"


@pytest.fixture
def plugin():
    """`register(name, cls, needs_data=..., target=...)`: registers an evaluator of this module (taken out again after
    the test)."""
    names = []

    def register(name, cls=ConstantEvaluator, *, needs_data=True, target=None):
        registry.register_evaluator(name, target or f"{__name__}:{cls.__name__}", config_cls=ConstantConfig,
                                    uses_tensorflow=False, needs_data=needs_data)
        names.append(name)

    yield register
    for name in names:
        registry.EVALUATORS.unregister(name)


def test_a_plugin_that_declares_nothing_gets_the_generic_fingerprint_and_description(plugin):
    plugin("constant")
    demo = get_preset("demo")
    for extra in ([], FLOPS, ["proxy.data.kind=dir", "proxy.data.path=/data/p"]):
        cfg = resolve(NasConfig, demo, ["evaluator.type=constant", *extra])
        proxy = resolve(NasConfig, demo, extra)
        # A trained proxy's settings, its own section under its name.
        assert score_settings(cfg) == {**score_settings(proxy), "evaluator": "constant", "constant": {"ap": 0.5}}
    cfg = resolve(NasConfig, demo, ["evaluator.type=constant"])
    assert fingerprint(resolve(NasConfig, cfg, ["evaluator.constant.ap=0.6"])) != fingerprint(cfg)
    assert fingerprint(resolve(NasConfig, cfg, ["proxy.image_size=256"])) != fingerprint(cfg)
    assert fingerprint(resolve(NasConfig, cfg, ["proxy.seed=3"])) == fingerprint(cfg)
    assert describe(cfg) == "constant 128 px 400 steps on synth, reward ap"
    stored = to_dict(cfg)
    registry.EVALUATORS.unregister("constant")  # a plug-in `top` did not import: described all the same
    assert describe_dict(stored) == "constant 128 px 400 steps on synth, reward ap"


def test_a_plugin_declares_what_changes_its_score_and_how_it_reads(plugin):
    plugin("own", OwnSettingsEvaluator)
    cfg = resolve(NasConfig, get_preset("demo"), ["evaluator.type=own"])
    assert score_settings(cfg) == {"evaluator": "own", "own": {"ap": 0.5}, "reward": {"reward": "ap"}}
    for o in ("proxy.image_size=256", "proxy.data.kind=dir", "search.seed=4"):
        extra = ["proxy.data.path=/data/p"] if o.startswith("proxy.data") else []
        assert fingerprint(resolve(NasConfig, cfg, [o, *extra])) == fingerprint(cfg), o
    assert fingerprint(resolve(NasConfig, cfg, ["evaluator.own.ap=0.7"])) != fingerprint(cfg)
    assert describe(cfg) == "own of AP 0.5, reward ap"


def test_an_evaluator_whose_module_does_not_import_is_described_but_not_fingerprinted(plugin):
    plugin("ghost", target="tests.nas.no_such_module:Ghost")
    cfg = resolve(NasConfig, get_preset("demo"), ["evaluator.type=ghost"])
    assert describe(cfg) == "ghost 128 px 400 steps on synth, reward ap"
    with pytest.raises(PluginError, match="cannot import 'tests.nas.no_such_module'"):
        fingerprint(cfg)  # a guess would let results that mean something else be reused


@pytest.mark.parametrize("needs_data", [True, False])
def test_the_cli_checks_the_data_of_an_evaluator_that_reads_it(plugin, needs_data, tmp_path, monkeypatch, capsys):
    plugin("constant", needs_data=needs_data)
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "no-data")
    cfg = resolve(NasConfig, get_preset("demo"), ["evaluator.type=constant", "proxy.data.kind=dir",
                                                  f"proxy.data.path={missing}"])
    argv = ["search", "--db", "r.db", "--evaluator", "constant", "--runner", "local", "--controller", "random",
            "--trials", "2", "--name", "c", "--top", "0", "--plain", "--cpus-per-trial", "1",
            "--set", "runner.local.in_process=true", "--set", "proxy.data.kind=dir",
            "--set", f"proxy.data.path={missing}"]
    code, _, err = run_cli(capsys, *argv)
    if needs_data:
        with pytest.raises(UserError, match="no dataset folder"):
            ensure_data(cfg)
        assert code == 2 and "no dataset folder" in err and err.count("\n") == 1
        assert not os.path.exists("r.db")  # refused before the database was made
    else:
        assert ensure_data(cfg) is None
        assert code == 0, err

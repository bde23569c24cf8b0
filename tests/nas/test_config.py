"""Presets and config YAML: strict round trips, dotted overrides, clear errors."""

from __future__ import annotations

import pytest

from nas.config import NasConfig, ProxyConfig, SearchConfig
from nas.config_io import ConfigError, from_dict, from_yaml, resolve, to_dict, to_yaml
from nas.presets import get_preset, preset_names, register_preset


@pytest.mark.parametrize("name", ["demo", "paper", "vertex-gpu"])
def test_every_preset_round_trips_through_yaml(name):
    cfg = get_preset(name)
    assert from_yaml(NasConfig, to_yaml(cfg)) == cfg


def test_presets_match_the_documented_settings():
    demo, paper, vertex = get_preset("demo"), get_preset("paper"), get_preset("vertex-gpu")
    assert demo.proxy.data.kind == "synth" and demo.proxy.image_size == 128
    assert paper.proxy.image_size == 512 and paper.proxy.data.val_images == 7392
    assert paper.proxy.train_steps * paper.proxy.batch_size >= 5 * (118287 - 7392) - paper.proxy.batch_size
    assert (vertex.proxy.image_size, vertex.proxy.train_steps, vertex.proxy.learning_rate) == (384, 11088, 0.16)
    assert vertex.proxy.lr_schedule == "cosine"
    for cfg in (demo, paper, vertex):  # the paper's proxy scaling
        p = cfg.proxy
        assert (p.filter_size_scale, p.resample_alpha, p.endpoints_num_filters, p.head_num_filters,
                p.head_num_convs) == (0.25, 0.25, 64, 64, 4)


def test_overrides():
    cfg = resolve(NasConfig, get_preset("demo"), ["proxy.train_steps=50", "controller.type=random",
                                                  "proxy.clipnorm=null", "proxy.data.seed=3"])
    assert cfg.proxy.train_steps == 50 and cfg.controller.type == "random"
    assert cfg.proxy.clipnorm is None and cfg.proxy.data.seed == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("proxy.nope=1", "unknown key 'proxy.nope'"),
        ("nope.x=1", "no config section 'nope'"),
        ("proxy.train_steps=abc", "expected an integer"),
        ("proxy.train_steps=0", "train_steps must be at least 1"),
        ("controller.type=bayes", "unknown controller 'bayes'; expected one of ppo, evolution, random"),
        ("evaluator.type=nosuch", "unknown evaluator 'nosuch'; expected one of retinanet, surrogate"),
        ("runner.type=k8s", "unknown runner 'k8s'; expected one of ray, local"),
        ("controller.ppo.nosuch=1", "unknown key 'controller.ppo.nosuch'; expected one of .*learning_rate"),
        ("controller.ppo.learning_rate=-1", "learning_rate: expected a number > 0"),
        ("controller.bayes.x=1", "no config section 'controller.bayes'; expected one of type, ppo, evolution, random"),
        ("evaluator.surrogate.noise=-1", "noise, duration_s and rate_spread must be >= 0"),
        ("search.controller=random", "unknown key 'search.controller'"),
        ("proxy.eval_at_steps=[900]", "step 900 is not before the last training step"),
        ("proxy", "expects key=value"),
        ("proxy.image_size=96", "multiple of 128"),
        (r"search.max_flops=-1", r"max_flops must be 0 \(no limit\) or a positive number"),
        (r"search.max_flops=.nan", r"max_flops must be 0 \(no limit\)"),
        (r"search.max_flops=.inf", r"max_flops must be 0 \(no limit\)"),
        ("search.max_flops=lots", "max_flops: expected a number, got 'lots'"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve(NasConfig, get_preset("demo"), [override])


def test_strict_yaml():
    text = to_yaml(get_preset("demo")).replace("train_steps:", "train_stepz:")
    with pytest.raises(ConfigError, match="unknown key 'proxy.train_stepz' for ProxyConfig"):
        from_yaml(NasConfig, text)
    with pytest.raises(ConfigError, match="malformed YAML"):
        from_yaml(NasConfig, "proxy: [")
    assert from_dict(SearchConfig, {"trials": 3}).trials == 3
    assert to_dict(ProxyConfig())["data"]["kind"] == "synth"


def test_registry_errors(tmp_path):
    with pytest.raises(KeyError, match="already registered"):
        register_preset("demo")(lambda: NasConfig())
    with pytest.raises(LookupError, match="unknown preset 'x'; expected one of demo"):
        get_preset("x")
    with pytest.raises(FileNotFoundError):
        get_preset(str(tmp_path / "missing.yaml"))
    path = tmp_path / "mine.yaml"
    path.write_text(to_yaml(get_preset("demo")).replace("train_steps: 800", "train_steps: 70"))
    assert get_preset(str(path)).proxy.train_steps == 70
    assert set(preset_names()) >= {"demo", "paper", "vertex-gpu"}


def test_sections_choose_by_type_and_keep_every_choices_settings():
    from nas.config import ControllerSection, EvaluatorSection, controller_config

    cfg = resolve(NasConfig, get_preset("demo"), ["controller.type=evolution", "controller.evolution.population_size=20",
                                                  "controller.ppo.learning_rate=0.001", "evaluator.type=surrogate",
                                                  "evaluator.surrogate.noise=0.02", "search.reward_for_failure=null"])
    assert cfg.controller.type == "evolution" and cfg.controller.get().population_size == 20
    assert cfg.controller.sections["ppo"].learning_rate == 0.001  # kept for a later switch back
    assert cfg.evaluator.get().noise == 0.02
    # reward_for_failure has one home, the search; the controller gets it from there.
    assert controller_config(cfg).reward_for_failure is None
    assert "reward_for_failure" not in to_dict(cfg)["controller"]["ppo"]
    assert from_yaml(NasConfig, to_yaml(cfg)) == cfg
    assert ControllerSection.of("ppo", batch_size=5).get().batch_size == 5
    assert EvaluatorSection(type="retinanet").get() is None  # its settings are proxy.*
    with pytest.raises(ConfigError, match="set search.reward_for_failure instead"):
        from_dict(NasConfig, {"controller": {"ppo": {"reward_for_failure": 1.0}}})


def test_a_config_stored_by_the_version_before_sections_is_migrated_when_read():
    old = to_dict(get_preset("demo"))
    for section in ("controller", "evaluator", "runner"):
        del old[section]
    old["search"].update(controller="evolution", evaluator="surrogate", surrogate_duration_s=1.5,
                         surrogate_noise=0.02)
    import yaml

    cfg = from_yaml(NasConfig, yaml.safe_dump(old))
    assert (cfg.controller.type, cfg.evaluator.type, cfg.runner.type) == ("evolution", "surrogate", "ray")
    assert (cfg.evaluator.get().duration_s, cfg.evaluator.get().noise) == (1.5, 0.02)
    assert cfg.controller.get() == type(cfg.controller.get())()  # the defaults it was made with


def test_the_paper_preset_scales_ppos_learning_rate_to_its_budget():
    from controller import PPOConfig

    paper, vertex = get_preset("paper"), get_preset("vertex-gpu")
    tuned = PPOConfig().learning_rate
    assert paper.controller.get().learning_rate == pytest.approx(tuned * 2000 / paper.search.trials)
    assert vertex.controller.get().learning_rate == tuned  # 1,000 trials: within the tuned budget


def test_the_in_process_runner_is_for_tf_free_evaluators_only():
    with pytest.raises(ConfigError, match="only TF-free evaluators may"):
        resolve(NasConfig, get_preset("demo"), ["runner.type=local", "runner.local.in_process=true"])
    cfg = resolve(NasConfig, get_preset("demo"), ["runner.type=local", "runner.local.in_process=true",
                                                  "evaluator.type=surrogate"])
    assert cfg.runner.get().in_process


def test_fingerprints_follow_what_changes_a_score_and_nothing_else():
    from nas.fingerprint import describe, fingerprint

    demo = get_preset("demo")
    fp = fingerprint(demo)
    same = ["proxy.seed=5", "proxy.threads=1", "proxy.log_every=10", "proxy.eval_at_steps=[100]", "search.seed=4",
            "search.workers=3", "controller.type=random", "runner.type=local", "proxy.eval_batch_size=4",
            "proxy.data.path=/elsewhere",
            # Which architectures are trained, not what a trained one scores: results are shared across limits.
            "search.max_flops=2e9"]
    for o in same:
        assert fingerprint(resolve(NasConfig, demo, [o])) == fp, o
    other = ["proxy.train_steps=400", "proxy.image_size=256", "proxy.learning_rate=0.001", "proxy.data.images=1000",
             "evaluator.type=surrogate", "search.reward=ap-flops", "proxy.eval_images=100"]
    overrides = {"search.reward=ap-flops": ["search.target_flops=1e9"]}
    seen = {fp}
    for o in other:
        f = fingerprint(resolve(NasConfig, demo, [o, *overrides.get(o, [])]))
        assert f not in seen, o
        seen.add(f)
    surrogate = resolve(NasConfig, demo, ["evaluator.type=surrogate"])
    assert fingerprint(resolve(NasConfig, surrogate, ["search.seed=9"])) != fingerprint(surrogate)  # its target
    assert fingerprint(resolve(NasConfig, surrogate, ["evaluator.surrogate.duration_s=2"])) == fingerprint(surrogate)
    # The surrogate's AP ignores the proxy's model and data; with a FLOPs reward its reward does not (its FLOPs are
    # the proxy detector's).
    for o in ("proxy.image_size=256", "proxy.filter_size_scale=0.5", "proxy.head_num_convs=2", "proxy.data.kind=dir"):
        extra = ["proxy.data.path=/data/p"] if o.startswith("proxy.data") else []
        assert fingerprint(resolve(NasConfig, surrogate, [o, *extra])) == fingerprint(surrogate), o
        flops = resolve(NasConfig, surrogate, ["search.reward=ap-flops", "search.target_flops=1e9"])
        assert fingerprint(resolve(NasConfig, flops, [o, *extra])) != fingerprint(flops), o
    assert fingerprint(resolve(NasConfig, flops, ["proxy.data.images=1000"])) == fingerprint(flops)  # same classes
    assert describe(demo) == "retinanet 128 px 800 steps on synth, reward ap"
    # A split made by `spinenas data` is its folder: the synthetic generator's knobs do not enter its fingerprint.
    folder = resolve(NasConfig, demo, ["proxy.data.kind=dir", "proxy.data.path=/data/p"])
    assert fingerprint(resolve(NasConfig, folder, ["proxy.data.images=99"])) == fingerprint(folder)
    assert fingerprint(resolve(NasConfig, folder, ["proxy.data.path=/data/q"])) != fingerprint(folder)

"""Presets and config YAML: strict round trips, dotted overrides, clear errors."""

from __future__ import annotations

import pytest

from nas.config.schema import NasConfig, ProxyConfig, SearchConfig
from nas.config.codec import ConfigError, from_dict, from_yaml, resolve, to_dict, to_yaml
from nas.config.presets import get_preset, preset_names, register_preset


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
        ("proxy.train_steps=0", r"proxy.train_steps must be an integer >= 1, got 0"),
        ("controller.type=bayes", "unknown controller 'bayes'; expected one of ppo, evolution, random"),
        ("evaluator.type=nosuch", "unknown evaluator 'nosuch'; expected one of retinanet, surrogate"),
        ("runner.type=k8s", "unknown runner 'k8s'; expected one of ray, local"),
        ("controller.ppo.nosuch=1", "unknown key 'controller.ppo.nosuch'; expected one of .*learning_rate"),
        ("controller.ppo.learning_rate=-1", r"learning_rate: expected a number in \(0, 1\]"),
        ("controller.bayes.x=1", "no config section 'controller.bayes'; expected one of type, ppo, evolution, random"),
        ("evaluator.surrogate.noise=-1", r"evaluator.surrogate.noise must be a finite number in \[0, 1\]"),
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
    path.write_text(to_yaml(get_preset("demo")).replace("train_steps: 400", "train_steps: 70"))
    assert get_preset(str(path)).proxy.train_steps == 70
    assert set(preset_names()) >= {"demo", "paper", "vertex-gpu"}


def test_sections_choose_by_type_and_keep_every_choices_settings():
    from nas.config.schema import ControllerSection, EvaluatorSection, controller_config

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
    from nas.engine.fingerprint import describe, fingerprint

    demo = get_preset("demo")
    fp = fingerprint(demo)
    same = ["proxy.seed=5", "proxy.threads=1", "proxy.log_every=10", "proxy.eval_at_steps=[100]", "search.seed=4",
            "search.workers=3", "controller.type=random", "runner.type=local", "proxy.eval_batch_size=4",
            "proxy.data.path=/elsewhere",
            # Which architectures are trained, not what a trained one scores: results are shared across limits.
            "search.max_flops=2e9"]
    for o in same:
        assert fingerprint(resolve(NasConfig, demo, [o])) == fp, o
    other = ["proxy.train_steps=800", "proxy.image_size=256", "proxy.learning_rate=0.001", "proxy.data.images=1000",
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
    assert describe(demo) == "retinanet 128 px 400 steps on synth, reward ap"
    # A split made by `spinenas data` is its folder: the synthetic generator's knobs do not enter its fingerprint.
    folder = resolve(NasConfig, demo, ["proxy.data.kind=dir", "proxy.data.path=/data/p"])
    assert fingerprint(resolve(NasConfig, folder, ["proxy.data.images=99"])) == fingerprint(folder)
    assert fingerprint(resolve(NasConfig, folder, ["proxy.data.path=/data/q"])) != fingerprint(folder)


# --------------------------------------------------------------------------------------------------- bounds
def _laughs(levels: int, width: int) -> str:
    """A "billion laughs" document: each level an anchored list of `width` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 50_000 + "]" * 50_000, r"nested deeper than 32 levels \(line 1\)"),  # was a RecursionError
        ("[" * 40 + "]" * 40, r"nested deeper than 32 levels \(line 1\)"),
        ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 60)), "nested deeper than 32 levels"),
        (_laughs(9, 9), "more than 32 aliases"),  # 422 bytes that expanded past 1.6 GB
        # Few aliases, each repeating a large node: counted expanded.
        (_laughs(5, 6).replace(", ".join(["lol"] * 6), ", ".join(["1"] * 2000)),
         "aliases expand it past 262,144 values"),
        ("search: &x [*x]", r"alias \*x inside the node it names"),  # a structure containing itself
        ("search:\n  trials: 3\n" + "#" * (1 << 20), "larger than 1,048,576 bytes"),
        ("a: 1\n---\nb: 2\n", "expected a single document in the stream"),
        ("proxy: [", "malformed YAML at line (1, column 9|2, column 1)"),  # (PyYAML's parser, libyaml's)
        ("a: \x1b[31m", r"malformed YAML at character 4: (control|special) characters are not allowed \(#x001b\)"),
        ("a: !!python/object:os.system {}", "malformed YAML at line 1, column 4: could not determine a constructor"),
    ],
)
@pytest.mark.parametrize("loader", ["libyaml", "python"])
def test_yaml_past_its_bounds_is_one_line_at_once(text, message, loader, monkeypatch):
    import time

    from nas.config import codec as config_io

    if loader == "python":  # PyYAML's own parser, as without libyaml
        monkeypatch.setattr(config_io, "_LOADER", config_io._PurePythonLoader)
    elif config_io._LOADER is config_io._PurePythonLoader:
        pytest.skip("PyYAML without libyaml")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=message) as e:
        from_yaml(NasConfig, text)
    assert time.monotonic() - t0 < 1.0
    assert "\n" not in str(e.value) and len(str(e.value)) < 160


def test_a_few_aliases_are_read_and_messages_quote_an_excerpt():
    from nas.config.codec import load_yaml

    assert load_yaml("a: &a [1, 2]\nb: *a\nc: *a\n") == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}
    # At depth 5, a value of 240 KB: the message quotes 80 characters of it (it quoted all of a 5.8 MB one).
    big = "search: [[[[[" + ", ".join(["123456"] * 30_000) + "]]]]]"
    expected = r"search: expected a mapping for SearchConfig, got \[\[\[\[\[123456, .*\.\.\.$"
    with pytest.raises(ConfigError, match=expected) as e:
        from_yaml(NasConfig, big)
    assert len(str(e.value)) < 160
    with pytest.raises(ConfigError, match=r"unknown key 'proxy\.xxxxxxxx.*\.\.\. for ProxyConfig") as e:
        from_dict(NasConfig, {"proxy": {"x" * 100_000: 1}})
    assert len(str(e.value)) < 900  # the known keys are listed, the unknown one cut


def test_a_preset_file_is_measured_before_it_is_read(tmp_path, monkeypatch):
    import builtins
    import time

    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as fh:
        fh.truncate(50 << 20)  # 50 MB (sparse): accepted after 80 s and 0.8 GB before
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(f), real_open(f, *a, **k))[1])
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"preset file .*huge.yaml: larger than 1,048,576 bytes \(52,428,800\)"):
        get_preset(str(huge))
    assert time.monotonic() - t0 < 0.5 and str(huge) not in map(str, opened)
    monkeypatch.undo()
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"search:\n  family: \xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 18\)"):
        get_preset(str(bad))


# --------------------------------------------------------------------------------------------------- numbers
def _numeric_fields():
    """(config class, field, is_int) for every number of every config class, as a test table."""
    import dataclasses
    import typing

    from controller import EvolutionConfig, PPOConfig, RandomConfig
    from nas.config.schema import AshaConfig, DataConfig, SurrogateConfig
    from nas.engine.runners.config import LocalRunnerConfig, RayRunnerConfig

    out = []
    for cls in (SearchConfig, ProxyConfig, DataConfig, SurrogateConfig, AshaConfig, PPOConfig, EvolutionConfig,
                RandomConfig, LocalRunnerConfig, RayRunnerConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            if typing.get_origin(hint) is not tuple and args[0] in (int, float):
                out.append((cls, f.name, args[0] is int))
    return out


@pytest.mark.parametrize("cls, field, is_int", _numeric_fields(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_no_number_takes_nan_infinity_or_a_bool(cls, field, is_int):
    for bad in (float("nan"), float("inf"), float("-inf"), True, "1", 10**30 if is_int else 1e309):
        with pytest.raises(ValueError, match=field):
            cls(**{field: bad})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="x", value=float("nan"), low=0), "x must be a finite number >= 0, got nan"),
        (dict(name="x", value=float("inf"), low=0, high=1), r"x must be a finite number in \[0, 1\], got inf"),
        (dict(name="x", value=0.0, low=0, low_open=True), "x must be a finite number > 0, got 0.0"),
        (dict(name="n", value=1.5, integer=True, low=1), "n must be an integer >= 1, got 1.5"),
        (dict(name="n", value=True, integer=True, low=0), "n must be an integer >= 0, got True"),
        (dict(name="n", value=2**63, integer=True, low=0), r"n must be an integer in \[0, 9223372036854775807\]"),
        (dict(name="n", value=-1, integer=True, low=0, optional=True, note="(null: none)"),
         r"n must be an integer >= 0 or null \(null: none\), got -1"),
        (dict(name="s", value="x" * 1000, low=0), r"s must be a finite number >= 0, got 'x{76}\.\.\.$"),
    ],
)
def test_check_number_says_what_was_expected_and_what_came(kwargs, message):
    from proxy_task.config import check_number

    with pytest.raises(ValueError, match=message):
        check_number(**kwargs)
    check_number("x", None, optional=True)
    check_number("x", 5, low=0, high=5)


def test_typed_overrides_reach_the_config_as_they_are():
    # A CLI flag's value arrives typed, as argparse made it: no text round trip, so a string YAML would read as a
    # boolean or a number stays the string it was given, and a tuple becomes the field's tuple.
    cfg = resolve(NasConfig, NasConfig(), [("search.family", "yes"), ("scheduler.type", "asha"),
                                           ("scheduler.asha.rungs", (100, 200)), ("search.seed", 7)])
    assert cfg.search.family == "yes" and cfg.search.seed == 7
    assert tuple(cfg.scheduler.get().rungs) == (100, 200)
    with pytest.raises(ConfigError, match="search.family"):  # --set parses YAML: 'yes' is YAML 1.1's true
        resolve(NasConfig, NasConfig(), ["search.family=yes"])

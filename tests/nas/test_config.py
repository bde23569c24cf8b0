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
    cfg = resolve(NasConfig, get_preset("demo"), ["proxy.train_steps=50", "search.controller=random",
                                                  "proxy.clipnorm=null", "proxy.data.seed=3"])
    assert cfg.proxy.train_steps == 50 and cfg.search.controller == "random"
    assert cfg.proxy.clipnorm is None and cfg.proxy.data.seed == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("proxy.nope=1", "unknown key 'proxy.nope'"),
        ("nope.x=1", "no config section 'nope'"),
        ("proxy.train_steps=abc", "expected an integer"),
        ("proxy.train_steps=0", "train_steps must be at least 1"),
        ("search.controller=bayes", "controller must be one of"),
        ("proxy", "expects key=value"),
        ("proxy.image_size=96", "multiple of 128"),
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

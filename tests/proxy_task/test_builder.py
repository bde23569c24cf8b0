"""The registered `spinenet_nas` backbone and experiment: Model Garden builds searched specs like its own."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from search_space import SPINENET_49, SearchSpace

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def mg():
    from official.core import exp_factory, task_factory

    from proxy_task import builder

    return builder, exp_factory, task_factory


def _retinanet_params(task_factory, exp, size=128, classes=5):
    exp.override({"task": {"model": {"input_size": [size, size, 3], "num_classes": classes,
                                      "norm_activation": {"use_sync_bn": False}}}}, is_strict=True)
    task = task_factory.get_task(exp.task)
    model = task.build_model()
    import tensorflow as tf

    model(tf.zeros([1, size, size, 3]), training=True)  # the head is built lazily
    return model.count_params()


def test_spinenet49_through_our_experiment_matches_model_gardens(mg):
    builder, exp_factory, task_factory = mg
    theirs = _retinanet_params(task_factory, exp_factory.get_exp_config("retinanet_spinenet_coco"))
    ours_exp = builder.get_experiment_config()
    assert ours_exp.task.model.backbone.type == "spinenet_nas"
    ours = _retinanet_params(task_factory, ours_exp)
    assert ours == theirs
    # The raw 16-block spec (trailing dead level-2 block) builds the same model.
    raw = builder.get_experiment_config()
    raw.task.model.backbone = builder.Backbone(type="spinenet_nas",
                                               spinenet_nas=builder.arch_to_config(SPINENET_49))
    assert _retinanet_params(task_factory, raw) == theirs


def test_experiment_yaml_round_trips_with_strict_override(mg, tmp_path):
    builder, _, _ = mg
    space = SearchSpace("r23-sp30")
    arch = space.decode(space.random(np.random.default_rng(5)))
    exp = builder.get_experiment_config()
    exp.task.model.backbone = builder.Backbone(type="spinenet_nas", spinenet_nas=builder.arch_to_config(
        arch, filter_size_scale=0.65, endpoints_num_filters=128))
    text = yaml.safe_dump(exp.as_dict())
    fresh = builder.get_experiment_config()
    fresh.override(yaml.safe_load(text), is_strict=True)
    fresh.validate()
    assert builder.config_to_arch(fresh.task.model.backbone.get()) == arch
    assert fresh.task.model.backbone.spinenet_nas.filter_size_scale == 0.65
    with pytest.raises(KeyError):
        fresh.override({"task": {"model": {"backbone": {"spinenet_nas": {"bogus": 1}}}}}, is_strict=True)


@pytest.mark.parametrize("family", ["r35-sp18", "r23-sp30", "r14-sp39", "r0-sp53"])
def test_every_family_builds_with_p3_to_p7(mg, family):
    import tensorflow as tf
    import tf_keras

    builder, _, _ = mg
    space = SearchSpace(family)
    arch = space.decode(space.random(np.random.default_rng(11)))
    model = builder.build_spinenet_from_arch(
        arch, tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]), filter_size_scale=0.25, resample_alpha=0.25,
        endpoints_num_filters=64)
    out = model(tf.zeros([2, 128, 128, 3]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        str(lvl): (2, 128 // 2**lvl, 128 // 2**lvl, 64) for lvl in (3, 4, 5, 6, 7)}
    # Dead blocks build no layer: the canonical spec has the same parameters.
    canonical = builder.build_spinenet_from_arch(
        arch.canonical(), tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]), filter_size_scale=0.25,
        resample_alpha=0.25, endpoints_num_filters=64)
    assert canonical.count_params() == model.count_params()


def test_empty_blocks_are_refused(mg):
    import tf_keras

    builder, _, _ = mg
    from official.vision.configs import common

    cfg = builder.Backbone(type="spinenet_nas", spinenet_nas=builder.SpineNetNAS())
    with pytest.raises(ValueError, match="blocks is empty"):
        builder.build_spinenet_nas(tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]), cfg,
                                   common.NormActivation())

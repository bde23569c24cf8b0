"""Our SpineNet-49 against Model Garden's own: same tuples, same network, same parameter count."""

from __future__ import annotations

import numpy as np
import pytest

from search_space import SPINENET_49, ArchSpec, SearchSpace

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def mg():
    import tf_keras
    from official.vision.modeling.backbones import spinenet

    return spinenet, tf_keras


def _build(mg, tuples=None, size=128):
    spinenet, tf_keras = mg
    kwargs = {} if tuples is None else {"block_specs": spinenet.build_block_specs(tuples)}
    return spinenet.SpineNet(
        input_specs=tf_keras.layers.InputSpec(shape=[None, size, size, 3]),
        filter_size_scale=0.25,  # small, but every layer is there: the count follows the same formula
        resample_alpha=0.25,
        endpoints_num_filters=64,
        **kwargs,
    )


def test_our_copy_matches_model_garden(mg):
    spinenet, _ = mg
    assert list(SPINENET_49.to_model_garden()) == list(spinenet.SPINENET_BLOCK_SPECS)
    assert ArchSpec.from_model_garden(spinenet.SPINENET_BLOCK_SPECS) == SPINENET_49


def test_our_spinenet49_has_model_gardens_parameter_count(mg):
    reference = _build(mg).count_params()
    assert _build(mg, SPINENET_49.to_model_garden()).count_params() == reference
    # The canonical form (trailing level-2 block dropped) and its decoded twin build the same network.
    assert _build(mg, SPINENET_49.canonical().to_model_garden()).count_params() == reference
    space = SearchSpace("spinenet49")
    decoded = space.decode(space.encode(SPINENET_49))
    assert _build(mg, decoded.to_model_garden()).count_params() == reference


def test_full_scale_spinenet49_parameter_count(mg):
    spinenet, tf_keras = mg
    ours = spinenet.SpineNet(
        input_specs=tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]),
        block_specs=spinenet.build_block_specs(SPINENET_49.canonical().to_model_garden()),
    )
    theirs = spinenet.SpineNet(input_specs=tf_keras.layers.InputSpec(shape=[None, 128, 128, 3]))
    assert ours.count_params() == theirs.count_params()


def test_random_specs_build_with_endpoints_p3_to_p7(mg):
    import tensorflow as tf

    space = SearchSpace("spinenet49")
    rng = np.random.default_rng(0)
    for _ in range(2):
        arch = space.decode(space.random(rng))
        model = _build(mg, arch.to_model_garden())
        out = model(tf.zeros([1, 128, 128, 3]))
        assert sorted(out) == ["3", "4", "5", "6", "7"]
        for level, t in out.items():
            assert t.shape == (1, 128 // 2 ** int(level), 128 // 2 ** int(level), 64)
        # Dead blocks build no layer: the canonical spec has exactly the same parameters.
        assert _build(mg, arch.canonical().to_model_garden()).count_params() == model.count_params()

"""`search_space.cost`: parameters and FLOPs from the spec, against values recorded from Model Garden (TF-free)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from search_space import FAMILIES, SPINENET_49, ArchSpec, SearchSpace
from search_space.cost import IMAGE_SIZES, SCALINGS, Cost, Scaling, count_cost

# The proxy's defaults (proxy_task.config.ProxyConfig: 128 px, filter scale 0.25, alpha 0.25, endpoints 64,
# head 4 x 64, swish, no synchronized batch norm) on the synthetic set's 5 classes.
PROXY = Scaling(filter_size_scale=0.25, resample_alpha=0.25, block_repeats=1, endpoints_num_filters=64,
                head_num_convs=4, head_num_filters=64)
PROXY_KW = {"image_size": 128, "num_classes": 5, "scaling": PROXY}


def _proxy(arch: ArchSpec, **kw) -> Cost:
    return count_cost(arch, **{**PROXY_KW, **kw})


def test_spinenet49_at_the_proxy_settings_matches_model_garden():
    # Recorded from Model Garden (tf-models-official 2.20.0): `model.count_params()` of the trial's RetinaNet,
    # its backbone's and head's, `proxy_task.trainer.count_flops` (214,951,471) and the profiler's ops by type.
    cost = _proxy(SPINENET_49)
    assert (cost.params, cost.backbone_params, cost.head_params) == (1_543_057, 1_190_656, 352_401)
    assert cost.flops == 214_951_471
    assert (cost.backbone_ops, cost.head_ops) == (196_402_170, 233_500_773)
    assert cost.ops_by_type == {"Conv2D": 426_158_208, "BiasAdd": 202_213, "Mul": 2_409_418, "AddV2": 330_304,
                                "AddN": 203_328, "MaxPool": 599_472, "Rsqrt": 0, "Sub": 0}


# Recorded by scripts/bench/cost.py (results/cost.json) from `modelgarden.build_config(SPINENET_49, scale=...)`: the
# paper scalings at their image sizes, 91 classes, synchronized batch norms: model.count_params() of the detector,
# of its backbone and head, and count_flops (backbone and head apart: the profiler's ops under each name scope / 2).
NAMED = {
    "49S": (11_333_318, 9_146_351, 2_186_967, 30_963_887_194, 12_485_120_196, 18_478_766_997),
    "49": (28_652_567, 21_920_192, 6_732_375, 85_566_955_418, 28_500_067_461, 57_066_887_957),
    "96": (43_118_103, 36_385_728, 6_732_375, 266_052_121_509, 119_960_936_261, 146_091_185_248),
    "143": (67_146_263, 60_413_888, 6_732_375, 525_489_865_883, 297_222_406_213, 228_267_459_670),
    "190": (163_970_583, 126_849_216, 37_121_367, 1_885_421_702_003, 624_119_490_333, 1_261_302_211_670),
}


@pytest.mark.parametrize("name", list(NAMED))
def test_the_named_models_match_model_garden(name):
    cost = count_cost(SPINENET_49, image_size=IMAGE_SIZES[name], num_classes=91, scaling=SCALINGS[name],
                      use_sync_bn=True)
    assert (cost.params, cost.backbone_params, cost.head_params, cost.flops, cost.backbone_flops,
            cost.head_flops) == NAMED[name]


def test_synchronized_batch_norms_count_their_element_wise_ops():
    # Recorded from Model Garden: SpineNet-49S at 256 px, profiler ops of backbone and head and the batch norms'
    # per-channel ops (a Sub per channel, a Rsqrt counted twice).
    cost = count_cost(SPINENET_49, image_size=256, num_classes=91, scaling=SCALINGS["49S"], use_sync_bn=True)
    assert (cost.backbone_ops, cost.head_ops) == (3_995_382_454, 5_913_231_244)
    assert cost.ops_by_type["Rsqrt"] == 67_376 and cost.ops_by_type["Sub"] == 33_688
    fused = count_cost(SPINENET_49, image_size=256, num_classes=91, scaling=SCALINGS["49S"])
    assert fused.params == cost.params
    assert cost.ops_by_type["Mul"] - fused.ops_by_type["Mul"] == cost.ops_by_type["AddV2"] - fused.ops_by_type[
        "AddV2"] + cost.ops_by_type["Sub"]


def test_dead_blocks_and_parent_order_cost_nothing():
    assert SPINENET_49.dead_blocks() == (15,)
    assert _proxy(SPINENET_49) == _proxy(SPINENET_49.canonical())
    rng = np.random.default_rng(0)
    for name in FAMILIES:
        space = SearchSpace(name)
        for _ in range(20):
            arch = space.decode(space.random(rng))
            assert _proxy(arch) == _proxy(arch.canonical()), (name, arch.to_json())


def test_parts_depend_on_what_they_should():
    cost = _proxy(SPINENET_49)
    # Parameters do not depend on the image size; the head does not depend on the backbone's blocks.
    assert count_cost(SPINENET_49, image_size=512, num_classes=5, scaling=PROXY).params == cost.params
    other = SearchSpace("r35-sp18")
    arch = other.decode(other.random(np.random.default_rng(1)))
    assert (_proxy(arch).head_params, _proxy(arch).head_ops) == (cost.head_params, cost.head_ops)
    # Classes change only the class net's predictor: 9 anchors x 3 x 3 x 64 weights + 9 biases per class.
    more = _proxy(SPINENET_49, num_classes=6)
    assert more.backbone_params == cost.backbone_params
    assert more.head_params - cost.head_params == 9 * (9 * 64 + 1)
    # Twice the side: four times the convolutions.
    double = count_cost(SPINENET_49, image_size=256, num_classes=5, scaling=PROXY)
    assert double.ops_by_type["Conv2D"] == 4 * cost.ops_by_type["Conv2D"]
    # Wider or deeper costs more.
    for change in ({"filter_size_scale": 0.5}, {"resample_alpha": 0.5}, {"block_repeats": 2},
                   {"endpoints_num_filters": 128}, {"head_num_convs": 5}, {"head_num_filters": 128}):
        bigger = _proxy(SPINENET_49, scaling=dataclasses.replace(PROXY, **change))
        assert bigger.params > cost.params and bigger.flops > cost.flops, change


def test_relu_activations_cost_nothing():
    swish, relu = _proxy(SPINENET_49), _proxy(SPINENET_49, activation="relu")
    assert relu.params == swish.params
    # What is left of the Muls is nearest upsampling's shape arithmetic: 2 per upsampled parent (5 of them).
    assert relu.ops_by_type["Mul"] == 2 * 5
    assert swish.ops_by_type["Conv2D"] == relu.ops_by_type["Conv2D"]


def test_every_named_scaling_counts():
    costs = {name: count_cost(SPINENET_49, image_size=IMAGE_SIZES[name], num_classes=91, scaling=s)
             for name, s in SCALINGS.items()}
    assert list(costs) == ["49S", "49", "96", "143", "190"]
    flops = [c.flops for c in costs.values()]
    params = [c.params for c in costs.values()]
    assert flops == sorted(flops) and params == sorted(params)
    # PAPER.md: SpineNet-49 (RetinaNet, 640 px) has 85.4B FLOPs; ours counts with fused batch norms.
    assert round(costs["49"].flops / 1e9, 1) == 85.4


def test_resnet_stems_are_counted():
    space = SearchSpace("r35-sp18")
    arch = space.decode(space.random(np.random.default_rng(2)))
    assert arch.stem == (2, 3, 5, 1)
    deeper = dataclasses.replace(arch, stem=(2, 3, 6, 1))
    assert _proxy(deeper).backbone_params > _proxy(arch).backbone_params


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 96}, "multiple of 128"),
        ({"image_size": 200}, "multiple of 128"),
        ({"image_size": 128.0}, "multiple of 128"),
        ({"num_classes": 0}, "at least 1"),
        ({"num_anchors": 0}, "at least 1"),
        ({"activation": "gelu"}, "activation must be one of"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _proxy(SPINENET_49, **kwargs)


def test_a_stem_the_builder_cannot_build_is_refused():
    blocks = list(SPINENET_49.blocks)
    arch = ArchSpec(blocks=tuple(blocks), stem=(3, 0, 0, 0))
    with pytest.raises(ValueError, match="consecutive levels"):
        _proxy(arch)


@pytest.mark.parametrize(
    "change, match",
    [({"filter_size_scale": 0}, "must be > 0"), ({"block_repeats": 0}, "block_repeats must be at least 1"),
     ({"head_num_convs": -1}, "head_num_convs must be >= 0")],
)
def test_bad_scalings_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(PROXY, **change)

"""`search_space.cost` against Model Garden's built model (`proxy_task.measure`): exact params, FLOPs within 0.5%."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from search_space import SearchSpace
from search_space.cost import IMAGE_SIZES, SCALINGS, Scaling, count_cost

pytestmark = [pytest.mark.tf, pytest.mark.slow]

CLASSES = 5  # the synthetic set's


def test_the_named_scalings_copy_model_garden_and_export():
    from official.vision.modeling.backbones import spinenet

    from nas.export import modelgarden as export

    assert IMAGE_SIZES == export.SCALES
    for name, s in SCALINGS.items():
        mg = spinenet.SCALING_MAP[name]
        assert (s.filter_size_scale, s.resample_alpha, s.block_repeats, s.endpoints_num_filters) == (
            mg["filter_size_scale"], mg["resample_alpha"], mg["block_repeats"], mg["endpoints_num_filters"]), name
        assert (s.head_num_convs, s.head_num_filters) == export.HEADS[name], name


# A random spec of three families at the proxy's defaults (128 px), two with other settings, to reach every rule:
# a ResNet stem (r35-sp18: the proxy exactly; r14-sp39: relu, an odd filter scale, alpha 0.5, synchronized batch
# norms) and Model Garden's own stem with residual blocks and level shifts (spinenet49, with another head). Each
# build and profile costs 15-20 s of CPU, so the other families (r23-sp30, r0-sp53), block repeats and the paper
# scalings are left to scripts/bench/cost.py, whose Model Garden counts tests/search_space/test_cost.py holds.
CASES = [
    ("r35-sp18", {}, False),
    ("r14-sp39", {"activation": "relu", "filter_size_scale": 0.35, "resample_alpha": 0.5}, True),
    ("spinenet49", {"endpoints_num_filters": 48, "head_num_convs": 2, "head_num_filters": 40}, False),
]


@pytest.mark.parametrize("family, change, sync_bn", CASES, ids=[c[0] for c in CASES])
def test_the_analytic_cost_is_model_gardens(family, change, sync_bn):
    import tf_keras

    from proxy_task import measure
    from proxy_task.config import ProxyConfig

    cfg = dataclasses.replace(ProxyConfig(), **change)
    space = SearchSpace(family)
    arch = space.decode(space.random(np.random.default_rng(7)))
    exp = measure.proxy_experiment(arch, cfg, CLASSES)
    if sync_bn:
        exp.override({"task": {"model": {"norm_activation": {"use_sync_bn": True}}}}, is_strict=True)
    ref = measure.measure(exp)
    tf_keras.backend.clear_session()

    scaling = Scaling(cfg.filter_size_scale, cfg.resample_alpha, cfg.block_repeats, cfg.endpoints_num_filters,
                      cfg.head_num_convs, cfg.head_num_filters)
    cost = count_cost(arch, image_size=cfg.image_size, num_classes=CLASSES, scaling=scaling,
                      activation=cfg.activation, use_sync_bn=sync_bn)
    assert (cost.params, cost.backbone_params, cost.head_params) == (ref.params, ref.backbone_params,
                                                                      ref.head_params)
    assert ref.decoder_params == 0
    assert abs(cost.flops - ref.flops) <= 0.005 * ref.flops, (cost.flops, ref.flops)
    for ours, theirs in ((cost.backbone_ops, ref.backbone_ops), (cost.head_ops, ref.head_ops)):
        assert abs(ours - theirs) <= 0.005 * theirs, (cost.ops_by_type, ref.ops_by_type)

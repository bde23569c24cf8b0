"""The bridge to Model Garden: a registered `spinenet_nas` backbone and experiment config for searched specs.

Model Garden's `build_spinenet` reads only `model_id`, so a searched spec cannot go through its `spinenet` backbone
type. This module registers, with Model Garden's own registries:

- the backbone type ``spinenet_nas`` (config `SpineNetNAS`: the block specs, the stem and the scaling), built by
  Model Garden's `SpineNet` class itself for the two-level-2-block stem of SpineNet-49 / R0-SP53, and by
  `ResNetStemSpineNet` (a subclass) for the ResNet stems of R35-SP18, R23-SP30 and R14-SP39;
- the experiment ``retinanet_spinenet_nas_coco``: Model Garden's ``retinanet_spinenet_coco`` with that backbone,
  so a searched model trains, evaluates and exports exactly like Model Garden's SpineNet (`train_lib`, YAML
  overrides, `RetinaNetTask`).

Importing this module loads TensorFlow and Model Garden; it never changes `SPINENET_BLOCK_SPECS` or `SCALING_MAP`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import tensorflow as tf
import tf_keras
from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams, tf_utils
from official.vision.configs import backbones
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.modeling.backbones import factory, spinenet
from official.vision.modeling.layers import nn_layers

from search_space import R0_STEM, ArchSpec, stem_candidate_levels
from search_space.spec import STEM_LEVELS

logger = logging.getLogger(__name__)

BACKBONE_TYPE = "spinenet_nas"
EXPERIMENT = "retinanet_spinenet_nas_coco"
MASKRCNN_EXPERIMENT = "maskrcnn_spinenet_nas_coco"


# ------------------------------------------------------------------------------------------------------ configs
@dataclasses.dataclass
class SpineNetNASBlock(hyperparams.Config):
    """One scale-permuted block, as in Model Garden's `spinenet.BlockSpec`."""

    level: int = 3
    block_fn: str = "bottleneck"
    input_offsets: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    is_output: bool = False


@dataclasses.dataclass
class SpineNetNAS(hyperparams.Config):
    """A searched SpineNet: explicit block specs and stem instead of a `model_id`, plus the scaling knobs.

    Attributes:
      blocks: the scale-permuted blocks; offsets index [stem candidates..., block 0, ...].
      stem: ResNet bottleneck blocks at L2..L5; [2, 0, 0, 0] is Model Garden's SpineNet stem.
      filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters: as Model Garden's `SCALING_MAP`.
      stochastic_depth_drop_rate: as `backbones.SpineNet`.
      min_level, max_level: endpoint levels.
    """

    blocks: list[SpineNetNASBlock] = dataclasses.field(default_factory=list)
    stem: list[int] = dataclasses.field(default_factory=lambda: list(R0_STEM))
    filter_size_scale: float = 1.0
    resample_alpha: float = 0.5
    block_repeats: int = 1
    endpoints_num_filters: int = 256
    stochastic_depth_drop_rate: float = 0.0
    min_level: int = 3
    max_level: int = 7


@dataclasses.dataclass
class Backbone(backbones.Backbone):
    """Model Garden's backbone one-of, plus `spinenet_nas`."""

    spinenet_nas: SpineNetNAS = dataclasses.field(default_factory=SpineNetNAS)


def arch_to_config(arch: ArchSpec, **scaling: Any) -> SpineNetNAS:
    """The `SpineNetNAS` config of an architecture (a field copy), with the given scaling fields."""
    return SpineNetNAS(
        blocks=[
            SpineNetNASBlock(
                level=b.level, block_fn=b.block_fn, input_offsets=list(b.input_offsets), is_output=b.is_output
            )
            for b in arch.blocks
        ],
        stem=list(arch.stem),
        **scaling,
    )


def config_to_arch(config: SpineNetNAS) -> ArchSpec:
    """The architecture a `SpineNetNAS` config describes (validated).

    Raises:
      search_space.InvalidArchError: naming the offending block.
    """
    blocks = [b.as_dict() if hasattr(b, "as_dict") else dict(b) for b in config.blocks]
    for b in blocks:
        b["input_offsets"] = list(b["input_offsets"])
    return ArchSpec.from_dict({"stem": list(config.stem), "blocks": blocks})


def to_block_specs(arch: ArchSpec) -> list[spinenet.BlockSpec]:
    """Model Garden `BlockSpec` objects for an architecture (a plain field copy)."""
    return [spinenet.BlockSpec(*t) for t in arch.to_model_garden()]


# ------------------------------------------------------------------------------------------------------ models
class ResNetStemSpineNet(spinenet.SpineNet):
    """Model Garden's SpineNet with a ResNet stem of several levels (R35-SP18, R23-SP30, R14-SP39).

    The stem is a ResNet-50-style stack of bottleneck stages (Model Garden's own `_block_group`), and its parent
    candidates are the last block of every stage (see `search_space.stem_candidate_levels`). Model Garden's
    `_build_scale_permuted_network` assumes every stem candidate is at level 2; `_build_scale_permuted_network`
    below is that method with the candidates' real widths. Everything else is inherited unchanged.
    """

    def __init__(self, *args: Any, stem: tuple[int, ...], **kwargs: Any) -> None:
        levels = [lvl for lvl, n in zip(STEM_LEVELS, stem) if n > 0]
        if levels != list(range(2, 2 + len(levels))):
            raise ValueError(f"a ResNet stem needs blocks at consecutive levels from L2, got {list(stem)}")
        self._stem_counts = tuple(stem)
        self._stem_levels = stem_candidate_levels(stem)
        super().__init__(*args, **kwargs)

    def _build_stem(self, inputs: tf.Tensor) -> list[tf.Tensor]:
        # Model Garden's stem builds `_num_init_blocks` level-2 blocks and returns each of them.
        self._num_init_blocks = self._stem_counts[0]
        level2 = super()._build_stem(inputs)
        x = level2[-1]
        net = [x]
        for level, count in zip(STEM_LEVELS[1:], self._stem_counts[1:]):
            if count == 0:
                break
            x = self._block_group(
                inputs=x,
                filters=int(spinenet.FILTER_SIZE_MAP[level] * self._filter_size_scale),
                strides=2,
                block_fn_cand=self._init_block_fn,
                block_repeats=count * self._block_repeats,
                name=f"stem_stage_l{level}",
            )
            net.append(x)
        return net

    def _build_scale_permuted_network(self, net, input_width, weighted_fusion=False):  # noqa: ANN001, ANN202
        # A copy of Model Garden's `SpineNet._build_scale_permuted_network` (official/vision/modeling/backbones/
        # spinenet.py, tf-models-official 2.20.0) in which the stem candidates have their own widths; the
        # weighted-fusion branch, unused by SpineNet, is left out.
        net_sizes = [int(math.ceil(input_width / 2**lvl)) for lvl in self._stem_levels]
        net_block_fns = [self._init_block_fn] * len(net)
        num_outgoing_connections = [0] * len(net)

        endpoints = {}
        for i, block_spec in enumerate(self._block_specs):
            target_width = int(math.ceil(input_width / 2**block_spec.level))
            target_num_filters = int(spinenet.FILTER_SIZE_MAP[block_spec.level] * self._filter_size_scale)
            target_block_fn = block_spec.block_fn

            parents = []
            for k in (0, 1):
                j = block_spec.input_offsets[k]
                parents.append(
                    self._resample_with_alpha(
                        inputs=net[j],
                        input_width=net_sizes[j],
                        input_block_fn=net_block_fns[j],
                        target_width=target_width,
                        target_num_filters=target_num_filters,
                        target_block_fn=target_block_fn,
                        alpha=self._resample_alpha,
                    )
                )
                num_outgoing_connections[j] += 1

            if block_spec.is_output:
                for j, (j_feat, j_connections) in enumerate(zip(net, num_outgoing_connections)):
                    if j_connections == 0 and (
                        j_feat.shape[2] == target_width and j_feat.shape[3] == parents[0].shape[3]
                    ):
                        parents.append(j_feat)
                        num_outgoing_connections[j] += 1

            x = tf_utils.get_activation(self._activation_fn)(tf.math.add_n(parents))
            x = self._block_group(
                inputs=x,
                filters=target_num_filters,
                strides=1,
                block_fn_cand=target_block_fn,
                block_repeats=self._block_repeats,
                stochastic_depth_drop_rate=nn_layers.get_stochastic_depth_rate(
                    self._init_stochastic_depth_rate, i + 1, len(self._block_specs)
                ),
                name=f"scale_permuted_block_{i + 1}",
            )
            net.append(x)
            net_sizes.append(target_width)
            net_block_fns.append(target_block_fn)
            num_outgoing_connections.append(0)
            if block_spec.is_output:
                endpoints[str(block_spec.level)] = x
        return endpoints


def build_spinenet_from_arch(
    arch: ArchSpec,
    input_specs: tf_keras.layers.InputSpec,
    *,
    filter_size_scale: float = 1.0,
    resample_alpha: float = 0.5,
    block_repeats: int = 1,
    endpoints_num_filters: int = 256,
    **kwargs: Any,
) -> tf_keras.Model:
    """Builds the SpineNet backbone of an architecture with Model Garden's classes.

    Args:
      arch: the architecture.
      input_specs: the input's `InputSpec`.
      filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters: scaling.
      **kwargs: any other `spinenet.SpineNet` argument (min_level, activation, norm settings, ...).
    """
    common = dict(
        input_specs=input_specs,
        block_specs=to_block_specs(arch),
        filter_size_scale=filter_size_scale,
        resample_alpha=resample_alpha,
        block_repeats=block_repeats,
        endpoints_num_filters=endpoints_num_filters,
        **kwargs,
    )
    if arch.stem == R0_STEM:
        return spinenet.SpineNet(**common)
    return ResNetStemSpineNet(stem=arch.stem, **common)


@factory.register_backbone_builder(BACKBONE_TYPE)
def build_spinenet_nas(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: tf_keras.regularizers.Regularizer | None = None,
) -> tf_keras.Model:
    """Model Garden backbone builder for ``type: spinenet_nas``."""
    if backbone_config.type != BACKBONE_TYPE:
        raise ValueError(f"backbone type {backbone_config.type!r} is not {BACKBONE_TYPE!r}")
    c = backbone_config.get()
    if not c.blocks:
        raise ValueError("backbone.spinenet_nas.blocks is empty: give the searched block specs")
    arch = config_to_arch(c)
    return build_spinenet_from_arch(
        arch,
        input_specs,
        filter_size_scale=c.filter_size_scale,
        resample_alpha=c.resample_alpha,
        block_repeats=c.block_repeats,
        endpoints_num_filters=c.endpoints_num_filters,
        min_level=c.min_level,
        max_level=c.max_level,
        init_stochastic_depth_rate=c.stochastic_depth_drop_rate,
        kernel_regularizer=l2_regularizer,
        activation=norm_activation_config.activation,
        use_sync_bn=norm_activation_config.use_sync_bn,
        norm_momentum=norm_activation_config.norm_momentum,
        norm_epsilon=norm_activation_config.norm_epsilon,
    )


def _with_nas_backbone(base: cfg.ExperimentConfig) -> cfg.ExperimentConfig:
    """`base` (a Model Garden SpineNet experiment) with the ``spinenet_nas`` backbone holding SpineNet-49's spec."""
    from search_space import SPINENET_49

    old = base.task.model.backbone.spinenet
    base.task.model.backbone = Backbone(
        type=BACKBONE_TYPE,
        spinenet_nas=arch_to_config(
            SPINENET_49.canonical(),
            stochastic_depth_drop_rate=old.stochastic_depth_drop_rate,
            min_level=old.min_level,
            max_level=old.max_level,
        ),
    )
    # Model Garden's restrictions name backbone.spinenet; ours name backbone.spinenet_nas.
    return cfg.ExperimentConfig(
        task=base.task,
        trainer=base.trainer,
        runtime=base.runtime,
        restrictions=[
            "task.train_data.is_training != None",
            "task.validation_data.is_training != None",
            "task.model.min_level == task.model.backbone.spinenet_nas.min_level",
            "task.model.max_level == task.model.backbone.spinenet_nas.max_level",
        ],
    )


@exp_factory.register_config_factory(EXPERIMENT)
def retinanet_spinenet_nas_coco() -> cfg.ExperimentConfig:
    """Model Garden's ``retinanet_spinenet_coco`` with the ``spinenet_nas`` backbone (SpineNet-49's spec)."""
    return _with_nas_backbone(exp_factory.get_exp_config("retinanet_spinenet_coco"))


@exp_factory.register_config_factory(MASKRCNN_EXPERIMENT)
def maskrcnn_spinenet_nas_coco() -> cfg.ExperimentConfig:
    """Model Garden's ``maskrcnn_spinenet_coco`` with the ``spinenet_nas`` backbone (SpineNet-49's spec)."""
    return _with_nas_backbone(exp_factory.get_exp_config("maskrcnn_spinenet_coco"))


def get_experiment_config(name: str = EXPERIMENT) -> cfg.ExperimentConfig:
    """A fresh ``retinanet_spinenet_nas_coco`` (or ``maskrcnn_spinenet_nas_coco``) config."""
    return exp_factory.get_exp_config(name)

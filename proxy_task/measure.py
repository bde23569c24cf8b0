"""Model Garden's own count of a detector's parameters and FLOPs, part by part: the reference for `search_space.cost`.

`measure` builds the model of an experiment config with Model Garden and counts what the project reports for a
trial: ``model.count_params()`` after one forward pass (as `proxy_task.trainer.run_trial` does) and
`proxy_task.trainer.count_flops` (TF's profiler on the frozen graph of backbone, decoder and head for one image,
halved). It freezes that graph once and also reads each node's registered ``flops`` statistic, which is what the
profiler adds up, to split the count by part (backbone, head) and by op type.

Importing this module loads TensorFlow and Model Garden.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any

import tensorflow as tf
import tf_keras
from official.core import task_factory
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2_as_graph

from proxy_task import builder  # noqa: F401 - registers the backbone and the experiment
from proxy_task.config import ProxyConfig
from proxy_task.data import DatasetInfo
from search_space import ArchSpec

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Measured:
    """What Model Garden's built model counts.

    Attributes:
      params: ``model.count_params()`` of the whole detector after one forward pass.
      backbone_params, decoder_params, head_params: ``count_params()`` of its parts.
      float_ops: the profiler's total float operations of backbone, decoder and head for one image
        (`count_flops` returns half of it).
      backbone_ops, head_ops: the same, of the nodes under the backbone's and the head's name scopes.
      ops_by_type: float operations by TF op type.
    """

    params: int
    backbone_params: int
    decoder_params: int
    head_params: int
    float_ops: int
    backbone_ops: int
    head_ops: int
    ops_by_type: dict[str, int]

    @property
    def flops(self) -> int:
        """Multiply-adds per image, as `proxy_task.trainer.count_flops` reports them."""
        return self.float_ops // 2


def proxy_experiment(arch: ArchSpec, cfg: ProxyConfig, num_classes: int) -> Any:
    """The experiment config of a proxy trial of `arch` (`trainer.build_experiment`), with no dataset on disk."""
    from proxy_task.trainer import build_experiment

    placeholder = DatasetInfo(root="", kind="synth", num_classes=num_classes, train_pattern="none-*",
                              val_pattern="none-*", val_annotation_file="none.json", train_images=1, val_images=1,
                              image_size=cfg.image_size)
    return build_experiment(arch, cfg, placeholder)


def measure(exp: Any) -> Measured:
    """Builds a RetinaNet experiment's model and counts its parameters and float operations.

    Args:
      exp: a Model Garden RetinaNet experiment config (`proxy_experiment`, `nas.export.modelgarden.build_config`).
    """
    task = task_factory.get_task(exp.task)
    model = task.build_model()
    size = exp.task.model.input_size[0]
    model(tf.zeros([1, size, size, 3]), training=True)
    params = int(model.count_params())
    parts = {
        "backbone": int(model.backbone.count_params()),
        "decoder": int(model.decoder.count_params()) if model.decoder is not None else 0,
        "head": int(model.head.count_params()),
    }

    # The graph `count_flops` profiles, frozen the way `train_utils.try_count_flops` freezes it.
    inputs = tf_keras.Input(shape=[size, size, 3], batch_size=1)
    features = model.backbone(inputs)
    if model.decoder is not None:
        features = model.decoder(features)
    wrapper = tf_keras.Model(inputs=inputs, outputs=tf.nest.flatten(model.head(features)))
    concrete = tf.function(wrapper).get_concrete_function([tf.TensorSpec([1, size, size, 3], tf.float32)])
    frozen, _ = convert_variables_to_constants_v2_as_graph(concrete)
    graph = frozen.graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    total = int(tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                              options=opts).total_float_ops)

    by_type: dict[str, int] = collections.Counter()
    by_scope: dict[str, int] = collections.Counter()
    for op in graph.get_operations():
        try:
            value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
        except ValueError:  # no flops statistic registered for this op type
            value = None
        if value:
            by_type[op.type] += int(value)
            scope = op.name.split("/")
            by_scope[scope[1] if len(scope) > 1 else scope[0]] += int(value)
    if sum(by_type.values()) != total:
        raise RuntimeError(f"per-node flops add up to {sum(by_type.values())}, the profiler says {total}")
    return Measured(
        params=params,
        backbone_params=parts["backbone"],
        decoder_params=parts["decoder"],
        head_params=parts["head"],
        float_ops=total,
        backbone_ops=by_scope[model.backbone.name],
        head_ops=by_scope[model.head.name],
        ops_by_type=dict(by_type),
    )

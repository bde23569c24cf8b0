"""Parameters and FLOPs of a SpineNet RetinaNet from its spec alone, by Model Garden's layer rules (no TensorFlow).

`count_cost` walks the network an `ArchSpec` builds (`ArchSpec.network`: only the blocks that reach an endpoint,
with the unconsumed features an output block sums) and adds up, layer by layer, what Model Garden's
``SpineNet`` (``official/vision/modeling/backbones/spinenet.py``), its ``BottleneckBlock`` / ``ResidualBlock``
(``official/vision/modeling/layers/nn_blocks.py``) and ``RetinaNetHead``
(``official/vision/modeling/heads/dense_prediction_heads.py``) build, for tf-models-official 2.20.0.

What "params" counts: every weight of the built model, as ``model.count_params()`` does (the project stores that
for a trial): conv kernels, the head's conv biases, and four vectors per batch norm (gamma, beta and the
non-trainable moving mean and variance). SpineNet needs no FPN decoder (Model Garden's ``identity`` decoder has no
weights) and the detection generator has none either.

What "FLOPs" counts: the project's `proxy_task.trainer.count_flops`, i.e. TF's profiler (``float_operation``) on
the frozen inference graph of backbone and head for one image, halved (a multiply-add is 2 of its operations). The
profiler counts only ops with a registered ``flops`` statistic, so this counts, in profiler operations:

- ``Conv2D``: 2 * k * k * C_in * (output elements); the RetinaNet head's ``BiasAdd``: 1 per output element;
- swish, ``x * sigmoid(beta * x)``: its two ``Mul`` ops, 2 per element (the ``Sigmoid`` is not counted, nor is a
  ReLU: with ``activation='relu'`` activations cost nothing);
- the residual ``AddV2`` (1 per element), the fusion ``AddN`` of n inputs (n - 1 per element), and ``MaxPool``
  3x3 (9 per output element: the stem's pool and the resampling pools);
- nearest-neighbour upsampling (``Reshape``/``Tile``): 2, the two integer ``Mul`` ops of its shape arithmetic.

A batch norm counts nothing when it is fused (``FusedBatchNormV3`` in inference: ``use_sync_bn=False``, the
proxy's setting); a synchronized one (``use_sync_bn=True``, Model Garden's ``retinanet_spinenet_coco`` default, so
every ``spinenas export``) is computed as ``x * inv + (beta - mean * inv)``, a ``Mul`` and an ``AddV2`` per element
plus 6 ops per channel (see `_bn`). ``Identity``, ``Tile`` and the stochastic-depth layer (the identity at inference)
count nothing. There is no squeeze-and-excitation in SpineNet's blocks.

Example::

  cost = count_cost(SPINENET_49, image_size=640, num_classes=91, scaling=SCALINGS["49"], use_sync_bn=True)
  cost.params, cost.flops        # 28,652,567 and 85,566,955,418: what `spinenas export --scale 49` measures
  cost.backbone_params, cost.head_flops
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping

from search_space.spec import OUTPUT_LEVELS, R0_STEM, STEM_BLOCK_FN, STEM_LEVELS, ArchSpec

logger = logging.getLogger(__name__)

# Model Garden's `spinenet.FILTER_SIZE_MAP`: level -> block filters C before `filter_size_scale`.
FILTER_SIZE_MAP: dict[int, int] = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}
# The stem's 7x7 stride-2 convolution: 64 filters whatever the filter scale (Model Garden's `_build_stem`).
STEM_FILTERS = 64
# Model Garden's default anchors (`retinanet.Anchor`): 3 scales x aspect ratios (0.5, 1, 2).
NUM_ANCHORS = 9
# Box parameters per anchor (`RetinaNetHead(num_params_per_anchor=4)`).
BOX_PARAMS = 4
ACTIVATIONS = ("swish", "relu")
# Profiler operations per element of each activation: swish is two `Mul`s; `Relu` has no flops statistic.
_ACTIVATION_OPS = {"swish": 2, "relu": 0}


@dataclasses.dataclass(frozen=True)
class Scaling:
    """How wide and deep the detector is: what Model Garden's SpineNet and RetinaNet head configs take.

    Attributes:
      filter_size_scale: multiplier of every block's filters (`SCALING_MAP`); the stem conv keeps 64.
      resample_alpha: width of a cross-scale connection, as a fraction of the parent block's C.
      block_repeats: blocks per block group (stem blocks and scale-permuted blocks).
      endpoints_num_filters: dimension of P3..P7 (the 1x1 conv after each output block).
      head_num_convs: convolutions of each RetinaNet tower (class and box), shared across levels.
      head_num_filters: their filters.
    """

    filter_size_scale: float = 1.0
    resample_alpha: float = 0.5
    block_repeats: int = 1
    endpoints_num_filters: int = 256
    head_num_convs: int = 4
    head_num_filters: int = 256

    def __post_init__(self) -> None:
        if not self.filter_size_scale > 0 or not self.resample_alpha > 0:
            raise ValueError(
                f"filter_size_scale and resample_alpha must be > 0, got {self.filter_size_scale} and "
                f"{self.resample_alpha}"
            )
        for name in ("block_repeats", "endpoints_num_filters", "head_num_filters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.head_num_convs < 0:
            raise ValueError(f"head_num_convs must be >= 0, got {self.head_num_convs}")


# The SpineNet family at paper scale: Model Garden's `spinenet.SCALING_MAP` with the RetinaNet heads of the paper
# (4 shared convs of 256, 128 for 49S, 7 convs of 512 for 190; `modelgarden.HEADS`). A `tf` test checks the copy.
SCALINGS: dict[str, Scaling] = {
    "49S": Scaling(0.65, 0.5, 1, 128, 4, 128),
    "49": Scaling(1.0, 0.5, 1, 256, 4, 256),
    "96": Scaling(1.0, 0.5, 2, 256, 4, 256),
    "143": Scaling(1.0, 1.0, 3, 256, 4, 256),
    "190": Scaling(1.3, 1.0, 4, 512, 7, 512),
}
# Image size of each scale (paper 4.1; `nas.export.modelgarden.SCALES`).
IMAGE_SIZES: dict[str, int] = {"49S": 640, "49": 640, "96": 1024, "143": 1280, "190": 1280}


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a detector costs: parameters, and TF profiler float operations per image, by part.

    Attributes:
      backbone_params: weights of the SpineNet backbone (stem, blocks, resampling, endpoint convs).
      head_params: weights of the RetinaNet head.
      backbone_ops: profiler float operations of the backbone for one image (2 per multiply-add).
      head_ops: the same for the head.
      ops_by_type: profiler float operations of the whole detector by TF op type (``Conv2D``, ``Mul``, ...).
    """

    backbone_params: int
    head_params: int
    backbone_ops: int
    head_ops: int
    ops_by_type: Mapping[str, int]

    @property
    def params(self) -> int:
        """Weights of the whole detector (``model.count_params()``)."""
        return self.backbone_params + self.head_params

    @property
    def flops(self) -> int:
        """Multiply-adds per image of backbone and head, as `proxy_task.trainer.count_flops` reports them."""
        return (self.backbone_ops + self.head_ops) // 2

    @property
    def backbone_flops(self) -> int:
        """Multiply-adds per image of the backbone."""
        return self.backbone_ops // 2

    @property
    def head_flops(self) -> int:
        """Multiply-adds per image of the head."""
        return self.head_ops // 2


class _Tally:
    """Running totals while walking the layers: weights and profiler operations by op type."""

    __slots__ = ("sync_bn", "params", "conv", "bias", "mul", "add", "addn", "pool", "rsqrt", "sub")

    def __init__(self, sync_bn: bool) -> None:
        self.sync_bn = sync_bn
        self.params = 0
        self.conv = self.bias = self.mul = self.add = self.addn = self.pool = self.rsqrt = self.sub = 0

    @property
    def ops(self) -> int:
        return self.conv + self.bias + self.mul + self.add + self.addn + self.pool + self.rsqrt + self.sub

    def by_type(self) -> dict[str, int]:
        return {"Conv2D": self.conv, "BiasAdd": self.bias, "Mul": self.mul, "AddV2": self.add, "AddN": self.addn,
                "MaxPool": self.pool, "Rsqrt": self.rsqrt, "Sub": self.sub}


def _bn(t: _Tally, c: int, hw: int) -> None:
    """A batch norm of C channels over hw positions: 4*C weights; ops only when synchronized (not fused)."""
    t.params += 4 * c
    if t.sync_bn:
        # `x * inv + (beta - mean * inv)` with `inv = rsqrt(var + eps) * gamma`: per element a Mul and an AddV2;
        # per channel an AddV2, a Mul each for `inv` and `mean * inv`, a Sub, and a Rsqrt (counted twice).
        t.mul += c * hw + 2 * c
        t.add += c * hw + c
        t.rsqrt += 2 * c
        t.sub += c


def _conv_bn(t: _Tally, k: int, c_in: int, c_out: int, out_hw: int) -> None:
    """A bias-free k x k conv and its batch norm: k*k*C_in*C_out + 4*C_out weights."""
    t.params += k * k * c_in * c_out
    t.conv += 2 * k * k * c_in * c_out * out_hw
    _bn(t, c_out, out_hw)


def _block(t: _Tally, block_fn: str, c_in: int, filters: int, stride: int, in_hw: int, out_hw: int, act: int) -> int:
    """A `BottleneckBlock` or `ResidualBlock`; returns its output channels."""
    c_out = 4 * filters if block_fn == "bottleneck" else filters
    if not (c_in == c_out and stride == 1):  # Model Garden's `use_projection` in `SpineNet._block_group`
        _conv_bn(t, 1, c_in, c_out, out_hw)
    if block_fn == "bottleneck":
        _conv_bn(t, 1, c_in, filters, in_hw)
        t.mul += act * filters * in_hw
        _conv_bn(t, 3, filters, filters, out_hw)
        t.mul += act * filters * out_hw
        _conv_bn(t, 1, filters, c_out, out_hw)
    else:
        _conv_bn(t, 3, c_in, filters, out_hw)
        t.mul += act * filters * out_hw
        _conv_bn(t, 3, filters, filters, out_hw)
    t.add += c_out * out_hw
    t.mul += act * c_out * out_hw
    return c_out


def _block_group(
    t: _Tally, block_fn: str, c_in: int, filters: int, stride: int, in_hw: int, out_hw: int, repeats: int, act: int
) -> int:
    """`SpineNet._block_group`: one block (projected if needed) and `repeats - 1` more at stride 1."""
    c = _block(t, block_fn, c_in, filters, stride, in_hw, out_hw, act)
    for _ in range(1, repeats):
        c = _block(t, block_fn, c, filters, 1, out_hw, out_hw, act)
    return c


def _filters(level: int, scale: float) -> int:
    return int(FILTER_SIZE_MAP[level] * scale)


def _resample(
    t: _Tally,
    c_in: int,
    in_fn: str,
    in_width: int,
    target_width: int,
    target_filters: int,
    target_fn: str,
    alpha: float,
    act: int,
) -> None:
    """`SpineNet._resample_with_alpha`: 1x1 conv to alpha*C, strided conv + max pools or upsampling, 1x1 conv."""
    base = c_in / 4 if in_fn == "bottleneck" else c_in  # a float, as in Model Garden
    c = int(base * alpha)
    hw = in_width * in_width
    _conv_bn(t, 1, c_in, c, hw)
    t.mul += act * c * hw
    width = in_width
    if width > target_width:
        width = math.ceil(width / 2)
        _conv_bn(t, 3, c, c, width * width)
        t.mul += act * c * width * width
        while width > target_width:
            width = math.ceil(width / 2)
            t.pool += 9 * c * width * width
    elif width < target_width:
        t.mul += 2  # the integer `h * scale` and `w * scale` of `nearest_upsampling`'s reshape
    c_out = 4 * target_filters if target_fn == "bottleneck" else target_filters
    _conv_bn(t, 1, c, c_out, target_width * target_width)


def _backbone(t: _Tally, arch: ArchSpec, size: int, s: Scaling, act: int, min_level: int, max_level: int) -> None:
    """`SpineNet` (and the project's `ResNetStemSpineNet` for ResNet stems): stem, blocks, endpoints."""
    scale = s.filter_size_scale
    reps = s.block_repeats
    # Stem: 7x7 stride-2 conv (64 filters), batch norm, activation, 3x3 stride-2 max pool.
    w1 = math.ceil(size / 2)
    _conv_bn(t, 7, 3, STEM_FILTERS, w1 * w1)
    t.mul += act * STEM_FILTERS * w1 * w1
    w2 = math.ceil(size / 4)
    t.pool += 9 * STEM_FILTERS * w2 * w2
    c = STEM_FILTERS
    f2 = _filters(2, scale)
    if arch.stem == R0_STEM:
        # Model Garden's `_build_stem`: two level-2 block groups, both parent candidates.
        nodes: list[tuple[int, int, str]] = []  # (width, channels, block_fn) of each candidate, then each block
        for _ in range(R0_STEM[0]):
            c = _block_group(t, STEM_BLOCK_FN, c, f2, 1, w2 * w2, w2 * w2, reps, act)
            nodes.append((w2, c, STEM_BLOCK_FN))
    else:
        levels = [lvl for lvl, n in zip(STEM_LEVELS, arch.stem) if n > 0]
        if len(levels) < 2 or levels != list(range(2, 2 + len(levels))):
            raise ValueError(
                f"a ResNet stem needs blocks at consecutive levels from L2 (the builder's `ResNetStemSpineNet`), "
                f"got {list(arch.stem)}"
            )
        # The project's `ResNetStemSpineNet._build_stem`: level-2 groups, then one stride-2 stage per level; the
        # candidates are the last level-2 block and each stage's output.
        for _ in range(arch.stem[0]):
            c = _block_group(t, STEM_BLOCK_FN, c, f2, 1, w2 * w2, w2 * w2, reps, act)
        nodes = [(w2, c, STEM_BLOCK_FN)]
        width = w2
        for level, count in zip(STEM_LEVELS[1:], arch.stem[1:]):
            if count == 0:
                break
            out = math.ceil(size / 2**level)
            c = _block_group(t, STEM_BLOCK_FN, c, _filters(level, scale), 2, width * width, out * out, count * reps,
                             act)
            width = out
            nodes.append((width, c, STEM_BLOCK_FN))

    # Scale-permuted blocks: only those that reach an endpoint (Keras keeps only the layers the outputs need).
    endpoints: dict[int, int] = {}
    for level, block_fn, parents, merged, is_endpoint in arch.network().blocks:
        width = math.ceil(size / 2**level)
        hw = width * width
        filters = _filters(level, scale)
        for j in parents:
            pw, pc, pfn = nodes[j]
            _resample(t, pc, pfn, pw, width, filters, block_fn, s.resample_alpha, act)
        c_sum = 4 * filters if block_fn == "bottleneck" else filters
        t.addn += (len(parents) + len(merged) - 1) * c_sum * hw
        t.mul += act * c_sum * hw
        c = _block_group(t, block_fn, c_sum, filters, 1, hw, hw, reps, act)
        nodes.append((width, c, block_fn))
        if is_endpoint:
            endpoints[level] = len(nodes) - 1
    # Endpoints: 1x1 conv to endpoints_num_filters, batch norm, activation.
    for level in range(min_level, max_level + 1):
        width, c, _ = nodes[endpoints[level]]
        _conv_bn(t, 1, c, s.endpoints_num_filters, width * width)
        t.mul += act * s.endpoints_num_filters * width * width


def _head(
    t: _Tally, size: int, s: Scaling, num_classes: int, num_anchors: int, act: int, min_level: int, max_level: int
) -> None:
    """`RetinaNetHead` (shared convs, a batch norm per level, no separable convs, no attribute heads)."""
    e, f, n = s.endpoints_num_filters, s.head_num_filters, s.head_num_convs
    for outputs in (num_classes * num_anchors, BOX_PARAMS * num_anchors):  # class net, box net
        c = e
        for _ in range(n):  # the tower's convs (3x3, with bias), shared by every level
            t.params += 9 * c * f + f
            c = f
        t.params += 9 * c * outputs + outputs  # the predictor
        for level in range(min_level, max_level + 1):
            width = math.ceil(size / 2**level)
            hw = width * width
            c = e
            for _ in range(n):
                t.conv += 2 * 9 * c * f * hw
                t.bias += f * hw
                _bn(t, f, hw)  # a batch norm per level and conv
                t.mul += act * f * hw
                c = f
            t.conv += 2 * 9 * c * outputs * hw
            t.bias += outputs * hw


def count_cost(
    arch: ArchSpec,
    *,
    image_size: int,
    num_classes: int,
    scaling: Scaling | None = None,
    num_anchors: int = NUM_ANCHORS,
    activation: str = "swish",
    use_sync_bn: bool = False,
) -> Cost:
    """Parameters and profiler operations of the RetinaNet that `arch` builds, backbone and head apart.

    Args:
      arch: the architecture (dead blocks cost nothing: Model Garden's model does not contain them).
      image_size: side of the square input, a positive multiple of 128 (so that L3..L7 have distinct widths).
      num_classes: Model Garden's ``num_classes`` (the class net predicts this many scores per anchor).
      scaling: the detector's widths and depths; None: SpineNet-49's (`SCALINGS['49']`).
      num_anchors: anchors per location (Model Garden: ``num_scales * len(aspect_ratios)``, 9 by default).
      activation: 'swish' (Model Garden's SpineNet configs and the proxy's default) or 'relu'.
      use_sync_bn: Model Garden's ``norm_activation.use_sync_bn``. A synchronized batch norm is not fused, so the
        profiler counts its element-wise ops (about 2 per element); the proxy turns it off, Model Garden's
        ``retinanet_spinenet_coco`` (and so ``spinenas export``) leaves it on.

    Returns:
      The `Cost`; ``cost.params`` and ``cost.flops`` are the whole detector's.

    Raises:
      ValueError: a bad image size, class count, anchor count or activation, or a stem the builder does not build.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 128 or image_size % 128:
        raise ValueError(f"image_size must be a positive multiple of 128, got {image_size!r}")
    if num_classes < 1 or num_anchors < 1:
        raise ValueError(f"num_classes and num_anchors must be at least 1, got {num_classes} and {num_anchors}")
    if activation not in _ACTIVATION_OPS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    s = scaling if scaling is not None else SCALINGS["49"]
    act = _ACTIVATION_OPS[activation]
    lo, hi = OUTPUT_LEVELS[0], OUTPUT_LEVELS[-1]
    backbone = _Tally(use_sync_bn)
    _backbone(backbone, arch, image_size, s, act, lo, hi)
    head = _Tally(use_sync_bn)
    _head(head, image_size, s, num_classes, num_anchors, act, lo, hi)
    by_type = backbone.by_type()
    for k, v in head.by_type().items():
        by_type[k] += v
    return Cost(
        backbone_params=backbone.params,
        head_params=head.params,
        backbone_ops=backbone.ops,
        head_ops=head.ops,
        ops_by_type=by_type,
    )

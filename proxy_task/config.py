"""Configs of the proxy task: which data, and how a scaled-down SpineNet RetinaNet is trained and scored (TF-free)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing search_space loads numpy: `spinenas top` reads configs and stays without it
    from search_space.cost import Cost, Scaling
    from search_space.spec import ArchSpec

DATA_KINDS = ("synth", "coco", "dir")
# The largest synthetic dataset (`data.images`): far above any proxy's (the demo's has 2,300 images, COCO's
# train2017 118,287), below one whose drawing would not end today.
MAX_SYNTH_IMAGES = 10**6
# The largest image side of the data and the proxy (`data.image_size`, `proxy.image_size`): beyond any SpineNet
# (Model Garden's largest, SpineNet-190, trains at 1280 px).
MAX_IMAGE_SIZE = 4096
# The synthetic generator's version: bump when the drawing changes (cached datasets of another version are not
# reused, and results on them get another fingerprint).
GENERATOR_VERSION = 1
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("cosine", "constant")
NMS_VERSIONS = ("batched", "v1", "v2")
# The values of `proxy.mixed_precision` (what each means: proxy_task.devices.choose_precision).
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
# Every seed of a config: NumPy's legacy seeder (which `tf_keras.utils.set_random_seed` calls) takes 32 bits, and a
# trial adds its index to `proxy.seed`, so seeds stop at 2**31 - 1 (the trial index has the other 2**31).
MAX_SEED = 2**31 - 1
# Integers a config holds go into 64-bit database columns and TensorFlow's int64 step counters.
MAX_INT = 2**63 - 1
# Characters of a value quoted in an error message; a longer one is cut, ending in '...'.
EXCERPT_CHARS = 80


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """`repr(value)` for an error message, cut to `limit` characters (a 1 MB value must not make a 1 MB message).

    The repr escapes control characters and newlines, so the message stays one line.
    """
    try:
        text = repr(value)
    except RecursionError:  # a self-referencing list
        text = f"<a {type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def check_number(name: str, value: Any, *, integer: bool = False, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False, optional: bool = False,
                 note: str = "") -> None:
    """One numeric setting checked: its type, finite, in its range (the configs' shared check).

    NaN fails every comparison, so a plain ``x <= 0`` check lets it through; here a float must be finite before its
    range is looked at, and an integer must be a real `int` (not a bool) within 64 bits.

    Args:
      name: the setting, as the message names it ('learning_rate', 'search.seed').
      value: what was given.
      integer: an `int` is required (else any finite int or float).
      low, high: the range's ends (None: unbounded on that side; an integer's `high` defaults to `MAX_INT`).
      low_open, high_open: the end itself is excluded.
      optional: None is allowed (it means something documented, such as 'no clipping').
      note: what is said after the expected range, e.g. '(0: no limit)'.

    Raises:
      ValueError: '<name> must be <expected>, got <value>', e.g. 'learning_rate must be a finite number > 0, got
        nan'.

    Example::

      check_number("trials", 0, integer=True, low=1)  # ValueError: trials must be an integer >= 1, got 0
    """
    if optional and value is None:
        return
    if integer and high is None:
        high = MAX_INT
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False
    elif integer:
        ok = isinstance(value, int)
    else:
        ok = math.isfinite(value)
    if ok:
        ok = ((low is None or (value > low if low_open else value >= low))
              and (high is None or (value < high if high_open else value <= high)))
    if ok:
        return
    kind = "an integer" if integer else "a finite number"
    beyond_int64 = integer and isinstance(value, int) and value > MAX_INT
    show_high = high is not None and (not integer or high != MAX_INT or beyond_int64)
    if low is not None and show_high:
        expected = f"{kind} in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    elif low is not None:
        expected = f"{kind} {'>' if low_open else '>='} {_num(low)}"
    elif show_high:
        expected = f"{kind} {'<' if high_open else '<='} {_num(high)}"
    else:
        expected = kind
    if optional:
        expected += " or null"
    if note:
        expected += f" {note}"
    raise ValueError(f"{name} must be {expected}, got {excerpt(value)}")


def _num(x: float) -> str:
    """A range end as a message shows it: 2147483647, 0.5, 1e+06."""
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the proxy's train and val splits come from.

    Attributes:
      kind: 'synth' (the embedded synthetic COCO-format set, made on first use and cached), 'coco' (a proxy split
        carved out of COCO train2017 by `spinenas data coco`), or 'dir' (any folder `spinenas data` wrote).
      path: the dataset folder. Empty: the cache folder for 'synth' (see `proxy_task.data.default_data_root`);
        required for 'coco' and 'dir'.
      images: 'synth' only: images in all (train + val).
      val_images: 'synth': images held out for proxy-val; 'coco': the proxy-val split carved from train2017
        (the paper held out 7,392).
      image_size: 'synth' only: side of the square images, in pixels.
      seed: 'synth': the generator's seed; 'coco': the seed of the split.
    """

    kind: str = "synth"
    path: str = ""
    images: int = 2300
    val_images: int = 300
    image_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"data.kind must be one of {list(DATA_KINDS)}, got {excerpt(self.kind)}")
        if self.kind in ("coco", "dir") and not self.path:
            raise ValueError(f"data.path is required for data.kind={self.kind!r} (the folder `spinenas data` wrote)")
        check_number("data.images", self.images, integer=True, low=2, high=MAX_SYNTH_IMAGES)
        check_number("data.val_images", self.val_images, integer=True, low=1)
        check_number("data.image_size", self.image_size, integer=True, low=32, high=MAX_IMAGE_SIZE)
        check_number("data.seed", self.seed, integer=True, low=0, high=MAX_SEED)
        if self.kind == "synth" and not self.val_images < self.images:
            raise ValueError(
                f"data.val_images must be between 1 and data.images - 1 ({self.images - 1}), got {self.val_images}"
            )


ACTIVATIONS = ("relu", "swish")
# The proxy's integers but `image_size`: field -> (low, high) (high None: up to `MAX_INT`). The model's sizes stop
# far past any SpineNet (the largest, SpineNet-190: 1280 px, filter scale 1.3, resample alpha 1, 4 block repeats,
# 512-filter endpoints; Model Garden's RetinaNet heads have 256 filters and 4 convolutions), before a trial could not
# be built and its FLOPs would leave the 64 bits of the database's column.
_PROXY_INTS: dict[str, tuple[int, int | None]] = {
    "batch_size": (1, 4096),
    "train_steps": (1, None),
    "eval_batch_size": (1, 4096),
    "eval_images": (0, None),
    "warmup_steps": (0, None),
    "block_repeats": (1, 16),
    "endpoints_num_filters": (1, 2048),
    "head_num_filters": (1, 2048),
    "head_num_convs": (1, 16),
    "pre_nms_top_k": (1, 100_000),
    "seed": (0, MAX_SEED),
    "threads": (0, 1024),
    "log_every": (1, None),
}
# `filter_size_scale` and `resample_alpha` stop here (SpineNet-190's are 1.3 and 1).
MAX_MODEL_SCALE = 8.0
# `aug_scale_min` and `aug_scale_max` stop here (Model Garden's SpineNet RetinaNet configs jitter 0.1..2.0).
MAX_AUG_SCALE = 10.0


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """One proxy trial: SpineNet scaled down inside Model Garden's RetinaNet, trained briefly, scored by COCO AP.

    The model scaling follows the paper's proxy (section 5.1): feature dimensions x0.25, resample alpha 0.25,
    endpoints and box/class head at 64 dimensions, 4 head convolutions.

    Attributes:
      data: the dataset.
      image_size: training and evaluation resolution (square; a multiple of 128 so every level has its own size).
      batch_size: training images per step.
      train_steps: optimizer steps.
      eval_batch_size: evaluation images per step.
      eval_images: evaluate on at most this many proxy-val images (0 = all of them).
      optimizer: 'adam' or 'sgd' (momentum 0.9).
      learning_rate: peak learning rate, reached after the warmup.
      warmup_steps: linear warmup from 0.
      lr_schedule: 'cosine' (decay to 0 at the last step) or 'constant'.
      clipnorm: clip each gradient to this L2 norm (None: no clipping).
      l2_weight_decay: as Model Garden's `losses.l2_weight_decay`.
      filter_size_scale: SpineNet feature dimensions multiplier.
      resample_alpha: SpineNet resampling alpha.
      block_repeats: blocks per SpineNet block group.
      endpoints_num_filters: dimension of the P3..P7 endpoints.
      head_num_filters: RetinaNet box/class head dimension.
      head_num_convs: RetinaNet head convolutions.
      activation: 'relu' or 'swish' (Model Garden's SpineNet configs use swish).
      aug_rand_hflip: random horizontal flips in training.
      aug_scale_min: smallest random scale in training (1.0: no scale jitter).
      aug_scale_max: largest random scale in training.
      nms_version: Model Garden's NMS ('batched' is fast on CPU with untrained models, 'v2' is its default and the
        one mixed precision needs).
      pre_nms_top_k: candidate boxes per image before NMS.
      divergence_factor: the trial fails as diverged when the mean loss of its last tenth of steps exceeds this
        multiple of the mean loss of its first ten steps (a non-finite loss always fails it).
      seed: seeds TF's initializers and the input pipeline's shuffling and augmentation.
      deterministic: read the input pipeline in a fixed order and draw its augmentation in a fixed order (one
        tf.data thread for the training pipeline): with `seed`, the same trial twice trains to the same losses on
        CPU. Off for the GPU presets, where one parsing thread would starve the accelerator.
      threads: TF intra-op threads (0: every CPU the process may use).
      log_every: report the training loss, learning rate and images/s every this many steps (the trial's
        learning curve; a cooperative stop is honoured at these reports).
      mixed_precision: 'float32', 'float16' (Keras mixed precision with Model Garden's dynamic loss scaling),
        'bfloat16', or 'auto': decided inside the trial from the devices TensorFlow sees
        (`proxy_task.devices.choose_precision`: float32 on CPUs, float16 on GPUs of compute capability 7.x such as
        V100 and T4, bfloat16 on 8.0 and later such as A100, A10G and H100). The trial stores what it trained in.
      eval_at_steps: intermediate COCO evaluations on the whole proxy-val set at these steps (increasing, each
        below `train_steps`), reported with the curve; the final evaluation at `train_steps` always runs. They
        cost one evaluation each (`spinenas proxy cost` estimates it) and do not change the final AP.
      grappler: TensorFlow's graph optimizer (Grappler's meta optimizer) rewrites the trial's functions before they
        run (TensorFlow's default). Off, a trial traces in seconds less and steps a little faster on these CPUs, but
        its kernels run in another order, so its losses differ in the last digits and its AP a little: a proxy with
        it off is another proxy, admitted by a calibration study against the same references.
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    image_size: int = 128
    batch_size: int = 8
    train_steps: int = 450
    eval_batch_size: int = 8
    eval_images: int = 0
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    lr_schedule: str = "cosine"
    clipnorm: float | None = 10.0
    l2_weight_decay: float = 4e-5
    filter_size_scale: float = 0.25
    resample_alpha: float = 0.25
    block_repeats: int = 1
    endpoints_num_filters: int = 64
    head_num_filters: int = 64
    head_num_convs: int = 4
    activation: str = "swish"
    aug_rand_hflip: bool = True
    aug_scale_min: float = 1.0
    aug_scale_max: float = 1.0
    nms_version: str = "batched"
    pre_nms_top_k: int = 1000
    divergence_factor: float = 1.5
    seed: int = 0
    deterministic: bool = True
    threads: int = 0
    log_every: int = 50
    eval_at_steps: tuple[int, ...] = ()
    mixed_precision: str = "float32"
    grappler: bool = True

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or not 128 <= size <= MAX_IMAGE_SIZE or size % 128:
            raise ValueError(f"image_size must be a multiple of 128 up to {MAX_IMAGE_SIZE} (levels L3..L7 need "
                             f"distinct widths), got {excerpt(size)}")
        for name, (low, high) in _PROXY_INTS.items():
            check_number(name, getattr(self, name), integer=True, low=low, high=high)
        if self.warmup_steps >= self.train_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be less than train_steps ({self.train_steps})"
            )
        for name, choices in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES), ("nms_version", NMS_VERSIONS),
                              ("mixed_precision", PRECISIONS), ("activation", ACTIVATIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {excerpt(getattr(self, name))}")
        if self.mixed_precision != "float32" and self.nms_version == "batched":
            # Model Garden's batched NMS (CombinedNonMaxSuppression) takes float32 scores only; its v2 NMS takes the
            # model's float16/bfloat16 ones (checked: a trial in each trains and evaluates).
            raise ValueError(f"mixed_precision={self.mixed_precision} needs nms_version 'v2': the 'batched' NMS takes "
                             "float32 scores only (and 'auto' trains in float16 or bfloat16 on a GPU)")
        check_number("learning_rate", self.learning_rate, low=0, low_open=True)
        check_number("clipnorm", self.clipnorm, low=0, low_open=True, optional=True, note="(null: no clipping)")
        check_number("l2_weight_decay", self.l2_weight_decay, low=0)
        check_number("filter_size_scale", self.filter_size_scale, low=0, high=MAX_MODEL_SCALE, low_open=True)
        check_number("resample_alpha", self.resample_alpha, low=0, high=MAX_MODEL_SCALE, low_open=True)
        check_number("aug_scale_min", self.aug_scale_min, low=0, high=MAX_AUG_SCALE, low_open=True)
        check_number("aug_scale_max", self.aug_scale_max, low=0, high=MAX_AUG_SCALE, low_open=True)
        if not self.aug_scale_min <= self.aug_scale_max:
            raise ValueError(
                f"need aug_scale_min <= aug_scale_max, got {self.aug_scale_min} and {self.aug_scale_max}"
            )
        check_number("divergence_factor", self.divergence_factor, low=1, low_open=True)
        check_eval_steps(self.eval_at_steps, self.train_steps, "eval_at_steps")

    def scaling(self) -> Scaling:
        """The detector's widths and depths as `search_space.cost` takes them."""
        from search_space.cost import Scaling

        return Scaling(filter_size_scale=self.filter_size_scale, resample_alpha=self.resample_alpha,
                       block_repeats=self.block_repeats, endpoints_num_filters=self.endpoints_num_filters,
                       head_num_convs=self.head_num_convs, head_num_filters=self.head_num_filters)

    def cost(self, arch: ArchSpec, num_classes: int) -> Cost:
        """Parameters and FLOPs of this proxy's detector of `arch` for `num_classes` classes, from the spec alone.

        What a trial stores as its ``params`` and ``flops`` (the proxy builds its batch norms fused:
        ``use_sync_bn=False``); `search_space.cost` says what is counted.
        """
        from search_space.cost import count_cost

        return count_cost(arch, image_size=self.image_size, num_classes=num_classes, scaling=self.scaling(),
                          activation=self.activation, use_sync_bn=False)


def check_eval_steps(steps: tuple[int, ...], train_steps: int, what: str) -> None:
    """Steps of intermediate evaluations: integers, strictly increasing, each in [1, train_steps).

    Raises:
      ValueError: naming the first bad entry.
    """
    last = 0
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"{what} must be integer steps, got {step!r}")
        if step <= last:
            raise ValueError(f"{what} must be increasing steps >= 1, got {list(steps)}")
        if step >= train_steps:
            raise ValueError(
                f"{what}: step {step} is not before the last training step ({train_steps}, always evaluated)"
            )
        last = step


# `SurrogateConfig.duration_s` stops at about 11 days a trial (a real trial of the paper's proxy takes hours).
MAX_SURROGATE_S = 1e6
# `SurrogateConfig.rate_spread` stops here: an architecture's learning rate is exp(rate_spread * z) with z normal,
# which overflows a float from about 140 on.
MAX_RATE_SPREAD = 10.0


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
    """The TF-free surrogate evaluator (`proxy_task.surrogate`): an instant AP from a landscape with a known optimum.

    It follows the proxy's schedule (``proxy.train_steps``, ``proxy.log_every``, ``proxy.eval_at_steps``) with a
    synthetic learning curve whose shape depends on the architecture, so the runner, the console, the store and
    a scheduler see what a real trial shows.

    Attributes:
      noise: standard deviation of the Gaussian noise on the AP (a function of the arch, the target and the seed).
      duration_s: simulated seconds per trial, spread over its steps (0: instant).
      target_seed: draws the landscape's hidden optimum; None: the search's seed.
      full_steps: the training steps at which a trial's AP equals the landscape's value; a trial of fewer steps
        scores less and one of more steps more, by a learning rate of its own (the curve's shape).
      rate_spread: how much the architectures' learning rates differ (standard deviation of their logarithm):
        0 gives every architecture the same curve shape, so every step ranks them alike.
    """

    noise: float = 0.0
    duration_s: float = 0.0
    target_seed: int | None = None
    full_steps: int = 800
    rate_spread: float = 0.5

    def __post_init__(self) -> None:
        check_number("noise", self.noise, low=0, high=1, note="(a standard deviation of the AP)")
        check_number("duration_s", self.duration_s, low=0, high=MAX_SURROGATE_S)
        check_number("target_seed", self.target_seed, integer=True, low=0, high=MAX_SEED, optional=True)
        check_number("full_steps", self.full_steps, integer=True, low=1)
        check_number("rate_spread", self.rate_spread, low=0, high=MAX_RATE_SPREAD)

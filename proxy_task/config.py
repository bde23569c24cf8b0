"""Configs of the proxy task: which data, and how a scaled-down SpineNet RetinaNet is trained and scored (TF-free)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing search_space loads numpy: `spinenas top` reads configs and stays without it
    from search_space.cost import Cost, Scaling
    from search_space.spec import ArchSpec

DATA_KINDS = ("synth", "coco", "dir")
# The synthetic generator's version: bump when the drawing changes (cached datasets of another version are not
# reused, and results on them get another fingerprint).
GENERATOR_VERSION = 1
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("cosine", "constant")
NMS_VERSIONS = ("batched", "v1", "v2")
# The values of `proxy.mixed_precision` (what each means: proxy_task.devices.choose_precision).
PRECISIONS = ("auto", "float32", "float16", "bfloat16")


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
            raise ValueError(f"data.kind must be one of {list(DATA_KINDS)}, got {self.kind!r}")
        if self.kind in ("coco", "dir") and not self.path:
            raise ValueError(f"data.path is required for data.kind={self.kind!r} (the folder `spinenas data` wrote)")
        if self.kind == "synth":
            if self.image_size < 32:
                raise ValueError(f"data.image_size must be at least 32 pixels, got {self.image_size}")
            if not 0 < self.val_images < self.images:
                raise ValueError(
                    f"data.val_images must be between 1 and data.images - 1 ({self.images - 1}), got {self.val_images}"
                )


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
        cost one evaluation each (about 12 s on the demo preset) and do not change the final AP.
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

    def __post_init__(self) -> None:
        if self.image_size < 128 or self.image_size % 128:
            raise ValueError(
                f"image_size must be a multiple of 128 (levels L3..L7 need distinct widths), got {self.image_size}"
            )
        for name in ("batch_size", "train_steps", "eval_batch_size", "head_num_filters", "head_num_convs",
                     "endpoints_num_filters", "block_repeats", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_images < 0 or self.warmup_steps < 0 or self.threads < 0:
            raise ValueError("eval_images, warmup_steps and threads must be >= 0")
        if self.warmup_steps >= self.train_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be less than train_steps ({self.train_steps})"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.nms_version not in NMS_VERSIONS:
            raise ValueError(f"nms_version must be one of {list(NMS_VERSIONS)}, got {self.nms_version!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {list(PRECISIONS)}, got {self.mixed_precision!r}")
        if self.mixed_precision != "float32" and self.nms_version == "batched":
            # Model Garden's batched NMS (CombinedNonMaxSuppression) takes float32 scores only; its v2 NMS takes the
            # model's float16/bfloat16 ones (checked: a trial in each trains and evaluates).
            raise ValueError(f"mixed_precision={self.mixed_precision} needs nms_version 'v2': the 'batched' NMS takes "
                             "float32 scores only (and 'auto' trains in float16 or bfloat16 on a GPU)")
        if self.activation not in ("relu", "swish"):
            raise ValueError(f"activation must be 'relu' or 'swish', got {self.activation!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(f"clipnorm must be > 0 or null, got {self.clipnorm}")
        if not 0 < self.aug_scale_min <= self.aug_scale_max:
            raise ValueError(
                f"need 0 < aug_scale_min <= aug_scale_max, got {self.aug_scale_min} and {self.aug_scale_max}"
            )
        if self.filter_size_scale <= 0 or self.resample_alpha <= 0:
            raise ValueError("filter_size_scale and resample_alpha must be > 0")
        if self.divergence_factor <= 1:
            raise ValueError(f"divergence_factor must be > 1, got {self.divergence_factor}")
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
        if not self.noise >= 0 or not self.duration_s >= 0 or not self.rate_spread >= 0:
            raise ValueError("noise, duration_s and rate_spread must be >= 0")
        if self.target_seed is not None and self.target_seed < 0:
            raise ValueError(f"target_seed must be >= 0 or null, got {self.target_seed}")
        if self.full_steps < 1:
            raise ValueError(f"full_steps must be at least 1, got {self.full_steps}")

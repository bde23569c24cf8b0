"""Registered presets: named factories of `NasConfig`, overridable per key from the CLI (`--set a.b=c`)."""

from __future__ import annotations

import os
from collections.abc import Callable

from nas.config.schema import ControllerSection, DataConfig, NasConfig, ProxyConfig, SearchConfig
from proxy_task.config import excerpt

_PRESETS: dict[str, Callable[[], NasConfig]] = {}

COCO_TRAIN2017_IMAGES = 118287
COCO_PROXY_VAL_IMAGES = 7392


def register_preset(name: str) -> Callable[[Callable[[], NasConfig]], Callable[[], NasConfig]]:
    """Decorator registering a preset factory under `name`.

    Raises:
      KeyError: when the name is taken.
    """

    def decorator(fn: Callable[[], NasConfig]) -> Callable[[], NasConfig]:
        if name in _PRESETS:
            raise KeyError(f"preset {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return decorator


def preset_names() -> list[str]:
    """Names of the registered presets."""
    return list(_PRESETS)


def get_preset(name_or_file: str) -> NasConfig:
    """A registered preset by name, or a YAML file of a whole `NasConfig`.

    Raises:
      LookupError: unknown name (listing the known ones). FileNotFoundError: missing YAML file.
      nas.config.codec.ConfigError: a YAML file that does not fit, or past `nas.config.codec.load_yaml`'s bounds (its
        size is checked before it is read).
    """
    if name_or_file in _PRESETS:
        return _PRESETS[name_or_file]()
    if name_or_file.endswith((".yaml", ".yml")) or os.sep in name_or_file:
        from nas.config.codec import ConfigError, from_dict, read_yaml_file

        doc = read_yaml_file(name_or_file, what="preset file")  # its own errors name the file
        try:
            return from_dict(NasConfig, doc or {})
        except ConfigError as e:
            raise ConfigError(f"preset file {name_or_file}: {e}") from None
    raise LookupError(f"unknown preset {excerpt(name_or_file)}; expected one of {', '.join(_PRESETS)} or a .yaml file")


# PPOConfig's learning rate was tuned for searches of about this many proposals (controllers_tuning.json).
PPO_TUNED_TRIALS = 2000


def _ppo_learning_rate(trials: int) -> float:
    """PPOConfig's rule for long searches: its tuned rate, lowered in proportion beyond `PPO_TUNED_TRIALS`."""
    from controller import PPOConfig

    rate = PPOConfig().learning_rate
    return rate if trials <= PPO_TUNED_TRIALS else rate * PPO_TUNED_TRIALS / trials


@register_preset("demo")
def demo() -> NasConfig:
    """The embedded synthetic dataset at 128 px on CPU: 20 architectures in about 25 minutes on 2 cores.

    The schedule (Adam 2e-3, 30 warmup steps, cosine decay, clipnorm 10) is the one that separated architectures
    clearly in scripts/bench/reward_signal.py (see its results); SGD learned far slower on this data. 400 steps: the
    cheapest variant the calibration admits (scripts/bench/results/calibration-variants.md: Kendall tau 0.78, 90%
    interval 0.50-1.00, against the demo study's 3,200-step references; the 800 steps before it: 0.73). Two
    one-core trials at a time: a trial's step barely uses a second core, and two trials overlap their build and
    trace (scripts/bench/results/demo_throughput.json: 1.6x the architectures per hour of one two-core trial).
    PPO updates every 5 rewards, so the demo's policy updates 4 times. Evolution's population is sized to a demo's
    budget (20, tournament 5; its default 50 would leave a search of up to 50 trials all random proposals): the
    best of those scripts/bench/small_budget.py tried at 40 and 80 trials (results/small_budget.json).
    """
    return NasConfig(
        search=SearchConfig(
            family="spinenet49",
            trials=20,
            workers=2,
            cpus_per_trial=1.0,
            trial_timeout_s=900.0,
        ),
        controller=ControllerSection.of("ppo", batch_size=5).with_settings("evolution", population_size=20,
                                                                          tournament_size=5),
        proxy=ProxyConfig(
            data=DataConfig(kind="synth", images=2300, val_images=300, image_size=128),
            image_size=128,
            batch_size=8,
            train_steps=400,
            eval_batch_size=10,
            optimizer="adam",
            learning_rate=2e-3,
            warmup_steps=30,
            lr_schedule="cosine",
            clipnorm=10.0,
        ),
    )


@register_preset("paper")
def paper() -> NasConfig:
    """The paper's proxy (section 5.1): a COCO proxy split, 512 px, 5 epochs, AP on 7,392 held-out images.

    Needs the split made by `spinenas data coco --coco-dir DIR --out DIR`; pass its folder with
    `--set proxy.data.path=DIR`. Batch 64 with SGD at Model Garden's SpineNet rate scaled to it (0.32 * 64 / 256).
    """
    batch = 64
    train_images = COCO_TRAIN2017_IMAGES - COCO_PROXY_VAL_IMAGES
    trials = 14000
    return NasConfig(
        search=SearchConfig(family="spinenet49", trials=trials, workers=8, cpus_per_trial=8.0,
                            gpus_per_trial=1.0, trial_timeout_s=6 * 3600.0),
        # PPOConfig records that its learning rate sets the search's horizon: the default (0.02 with an inverse-time
        # decay and an entropy target, tuned for ~2,000 proposals) is to be lowered in proportion for longer
        # searches. 14,000 trials: 0.02 * 2,000 / 14,000 = 2.9e-3 (NASNet used 3.5e-4 for searches of 10,000+).
        # Not measured on a 14,000-trial search; the rule is PPOConfig's.
        controller=ControllerSection.of("ppo", learning_rate=_ppo_learning_rate(trials)),
        proxy=ProxyConfig(
            data=DataConfig(kind="dir", path="data/coco-proxy", val_images=COCO_PROXY_VAL_IMAGES),
            image_size=512,
            batch_size=batch,
            train_steps=5 * train_images // batch,
            eval_batch_size=64,
            optimizer="sgd",
            learning_rate=0.32 * batch / 256,
            warmup_steps=500,
            lr_schedule="cosine",
            clipnorm=None,
            aug_scale_min=0.8,
            aug_scale_max=1.2,
            deterministic=False,
            log_every=500,
            mixed_precision="auto",
            nms_version="v2",  # Model Garden's default; its batched NMS takes float32 scores only
        ),
    )


@register_preset("vertex-gpu")
def vertex_gpu() -> NasConfig:
    """Vertex AI NAS's GPU proxy for SpineNet: 384 px, 11,088 steps (3 COCO epochs at batch 32), cosine lr 0.16.

    Vertex trains it on 2 V100s per trial; a trial here trains on one GPU (no multi-GPU strategy yet), so the preset
    asks for one, as `scripts/cluster/aws-gpu.yaml`'s workers have. Mixed precision 'auto': float16 on a V100 or T4,
    bfloat16 on an A100, A10G or H100.
    """
    return NasConfig(
        # 1,000 trials is within the ~2,000 PPO's defaults were tuned for: the default learning rate stays.
        search=SearchConfig(family="spinenet49", trials=1000, workers=10, cpus_per_trial=8.0,
                            gpus_per_trial=1.0, trial_timeout_s=4 * 3600.0, window=4),
        proxy=ProxyConfig(
            data=DataConfig(kind="dir", path="data/coco-proxy", val_images=COCO_PROXY_VAL_IMAGES),
            image_size=384,
            batch_size=32,
            train_steps=11088,
            eval_batch_size=32,
            optimizer="sgd",
            learning_rate=0.16,
            warmup_steps=500,
            lr_schedule="cosine",
            clipnorm=None,
            aug_scale_min=0.8,
            aug_scale_max=1.2,
            deterministic=False,
            log_every=500,
            mixed_precision="auto",
            nms_version="v2",  # Model Garden's default; its batched NMS takes float32 scores only
        ),
    )

"""One proxy trial: Model Garden's RetinaNet with a searched SpineNet, trained briefly, scored by COCO AP.

Everything of the detector is Model Garden's: the experiment config (`retinanet_spinenet_nas_coco`), the
`RetinaNetTask` (model factory, anchors, losses, `train_step`, `validation_step`), its input pipeline over the
TFRecords, its optimizer factory and its `COCOEvaluator` (pycocotools) over the split's annotation file. This
module only drives the steps, times them and turns failures into data.

`run_trial` is three parts: `_build_trial` (experiment config, task, model, optimizer and its slots, the training
input), `_train` (chunks of steps inside one tf.function call, ending at every report and evaluation step) and
`_CocoEvaluation` (the COCO evaluation, one traced `val_step` for all of a trial's evaluations). The learning
curve goes to a `Reporter` (`proxy_task.evaluator`); the log lines that repeat a report carry its step as the
record attribute ``report_step``, so a caller that shows the reports itself can filter them out.

Run a trial in a process of its own (the CLI and the Ray task do): TensorFlow keeps graphs and memory for the
life of a process, and the thread pools can only be sized before the first op.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import itertools
import logging
import math
import os
import resource
import time
import traceback
from collections.abc import Callable
from typing import Any

from proxy_task.config import ProxyConfig
from proxy_task.data import DatasetInfo
from proxy_task.evaluator import Reporter, no_report
from proxy_task.result import ProxyResult
from search_space import ArchSpec

logger = logging.getLogger(__name__)

# Model Garden's COCO metric names -> ours.
_METRIC_NAMES = {"AP": "ap", "AP50": "ap50", "AP75": "ap75", "APs": "aps", "APm": "apm", "APl": "apl",
                 "ARmax100": "ar100"}


class TrialError(RuntimeError):
    """A trial that cannot finish: NaN loss, divergence, a failed build (reported as ProxyResult.error)."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# Trials this process has started: a warm worker (`search.reuse_workers`) runs several, one after another.
_trials_started = 0
# Whether the last trial's state was let go at its end (`_release_tensorflow`); if not, the next trial does it first.
_released = True


# glibc malloc arenas of a process that runs trials (`_cap_malloc_arenas`). With glibc's default, 8 per core, a warm
# worker's RSS grows by tens of MB a trial after everything Python and TensorFlow hold is released (the same
# architecture trained again and again: no Python object and no function more): freed memory stays scattered over
# the arenas of TensorFlow's many threads. Two arenas keep the growth a few MB a trial at the same step time (see the
# README's Benchmarks, `scripts/bench/malloc_arenas.py`).
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _cap_malloc_arenas() -> None:
    """Caps glibc's malloc arenas at `MALLOC_ARENAS` before TensorFlow starts its threads (first trial of a process;
    the MALLOC_ARENA_MAX environment variable, when set, is left to decide). No-op without glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc
        pass


def _custom_gradients() -> dict[str, Any] | None:
    """TensorFlow's registry of graph-mode gradient functions, or None where this TensorFlow has no such registry.

    Every `tf.custom_gradient` call traced in a graph (`tf.nn.swish`, SpineNet's activation, is one) registers its
    gradient function there under a new name (``CustomGradient-<uid>``), and nothing ever removes it; the function
    holds the traced tensors, so each trial's train-step graph would stay alive through it, and a warm worker would
    keep the graphs of every trial it ran. `_release_tensorflow` removes a trial's entries.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def _custom_gradient_names() -> frozenset[str]:
    registry = _custom_gradients()
    return frozenset() if registry is None else frozenset(k for k in registry if k.startswith("CustomGradient-"))


# The custom gradients registered before the current trial started: the ones that are not its own.
_custom_gradients_before: frozenset[str] = frozenset()


def _release_tensorflow() -> None:
    """What a trial leaves behind, let go: Keras' global state (layer names, the legacy graph), the custom gradients
    its graphs registered (`_custom_gradients`), and the trial's graphs and variables, once nothing refers to them.
    A warm worker's next trial then starts as a fresh process would (`configure_tensorflow` sets the seeds again),
    and the freed memory goes back to the system (glibc's `malloc_trim`, where there is one)."""
    import tf_keras

    tf_keras.backend.clear_session()
    tf_keras.mixed_precision.set_global_policy("float32")
    registry = _custom_gradients()
    if registry is not None:
        for name in _custom_gradient_names() - _custom_gradients_before:
            registry.pop(name, None)
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def configure_tensorflow(cfg: ProxyConfig, gpu_share: float = 0.0) -> None:
    """Thread pools, GPU memory, seeds and determinism: must run before TensorFlow executes its first op.

    Args:
      cfg: the proxy settings (threads, seed).
      gpu_share: the GPUs the trial holds (Ray's ``--gpus-per-trial``): below 1, each visible GPU's memory is capped
        at that fraction; otherwise it grows as needed (`proxy_task.devices.configure_gpus`).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras

    from proxy_task.devices import configure_gpus

    configure_gpus(gpu_share)

    if cfg.threads:
        intra, inter = cfg.threads, max(1, min(2, cfg.threads))
        threading = tf.config.threading
        if (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) != (intra,
                                                                                                          inter):
            try:
                threading.set_intra_op_parallelism_threads(intra)
                threading.set_inter_op_parallelism_threads(inter)
            except RuntimeError:  # the runtime is already up (a later trial of a warm worker asking other sizes)
                logger.warning("TensorFlow is already initialized: thread settings unchanged")
    # Seeds the initializers and every unseeded random op (augmentation). `tf.config.experimental.
    # enable_op_determinism()` is not used: its tf.data rewrite breaks Model Garden's parser graph ("input
    # '^args_3' is not found", in make_deterministic_parallel_map_and_batch and, with map-and-batch fusion off, in
    # the parallel map's split function). Determinism comes from `_deterministic_inputs` instead.
    tf_keras.utils.set_random_seed(cfg.seed)
    # Set at every trial: a warm worker's next trial may ask otherwise (a calibration study's variants).
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not cfg.grappler})


def _deterministic_inputs(dataset: Any, cfg: ProxyConfig) -> Any:
    """The training pipeline, made deterministic when `cfg.deterministic` is set.

    Model Garden's parser draws its augmentation (flip, scale jitter) from stateful random ops inside a parallel
    map, so with several threads the images take their random draws in a racy order and the same seed gives
    different losses from step 2 on. A private tf.data thread pool of one thread serializes the draws, at the same
    images/s on the demo preset (the parser is not the bottleneck at 128 px; the GPU presets turn this off).
    """
    if not cfg.deterministic:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    return dataset.with_options(options)


def build_experiment(arch: ArchSpec, cfg: ProxyConfig, dataset: DatasetInfo, precision: str = "float32") -> Any:
    """The Model Garden experiment config of a proxy trial: ``retinanet_spinenet_nas_coco`` with overrides.

    `precision` is the trial's chosen one (`proxy_task.devices.choose_precision`): the runtime's mixed-precision
    dtype (float16 makes the task's optimizer a loss-scale optimizer) and the input pipelines' dtype, as Model
    Garden's GPU and TPU configs pair them."""
    from proxy_task import builder

    exp = builder.get_experiment_config()
    exp.task.model.backbone = builder.Backbone(
        type=builder.BACKBONE_TYPE,
        spinenet_nas=builder.arch_to_config(
            arch,
            filter_size_scale=cfg.filter_size_scale,
            resample_alpha=cfg.resample_alpha,
            block_repeats=cfg.block_repeats,
            endpoints_num_filters=cfg.endpoints_num_filters,
            stochastic_depth_drop_rate=0.0,
        ),
    )
    exp.override(
        {
            "runtime": {"mixed_precision_dtype": precision},
            "task": _task_overrides(cfg, dataset, precision),
            "trainer": _trainer_overrides(cfg, dataset),
        },
        is_strict=True,
    )
    exp.validate()
    return exp


def _task_overrides(cfg: ProxyConfig, dataset: DatasetInfo, precision: str) -> dict[str, Any]:
    """The task part of `build_experiment`'s overrides: the split's files, the detector's sizes, both input
    pipelines."""
    return {
        "annotation_file": dataset.val_annotation_file,
        "init_checkpoint": None,
        "model": {
            "num_classes": dataset.num_classes,
            "input_size": [cfg.image_size, cfg.image_size, 3],
            "head": {"num_convs": cfg.head_num_convs, "num_filters": cfg.head_num_filters},
            "norm_activation": {"activation": cfg.activation, "use_sync_bn": False},
            "detection_generator": {"nms_version": cfg.nms_version, "pre_nms_top_k": cfg.pre_nms_top_k},
        },
        "losses": {"l2_weight_decay": cfg.l2_weight_decay},
        "train_data": {
            "input_path": dataset.train_pattern,
            "global_batch_size": cfg.batch_size,
            "is_training": True,
            "dtype": precision,
            "shuffle_buffer_size": min(10000, dataset.train_images),
            "seed": cfg.seed,
            "deterministic": cfg.deterministic,
            "parser": {"aug_rand_hflip": cfg.aug_rand_hflip, "aug_scale_min": cfg.aug_scale_min,
                       "aug_scale_max": cfg.aug_scale_max},
        },
        "validation_data": {
            "input_path": dataset.val_pattern,
            "global_batch_size": cfg.eval_batch_size,
            "is_training": False,
            "dtype": precision,
            "drop_remainder": False,
            "seed": cfg.seed,
            "deterministic": cfg.deterministic,
        },
    }


def _trainer_overrides(cfg: ProxyConfig, dataset: DatasetInfo) -> dict[str, Any]:
    """The trainer part of `build_experiment`'s overrides: the steps, the validation steps that cover the evaluated
    images, and the optimizer with its learning-rate schedule and warmup."""
    eval_images = _eval_images(cfg, dataset)
    schedule: dict[str, Any]
    if cfg.lr_schedule == "cosine":
        schedule = {"type": "cosine", "cosine": {"initial_learning_rate": cfg.learning_rate,
                                                 "decay_steps": cfg.train_steps}}
    else:
        schedule = {"type": "constant", "constant": {"learning_rate": cfg.learning_rate}}
    if cfg.optimizer == "adam":
        optimizer: dict[str, Any] = {"type": "adam", "adam": {"clipnorm": cfg.clipnorm}}
    else:
        optimizer = {"type": "sgd", "sgd": {"momentum": 0.9, "clipnorm": cfg.clipnorm}}
    return {
        "train_steps": cfg.train_steps,
        "validation_steps": math.ceil(eval_images / cfg.eval_batch_size),
        "optimizer_config": {
            "optimizer": optimizer,
            "learning_rate": schedule,
            "warmup": {"type": "linear", "linear": {"warmup_steps": cfg.warmup_steps, "warmup_learning_rate": 0.0}}
            if cfg.warmup_steps
            else {"type": None},
        },
    }


def _create_optimizer_slots(optimizer: Any, variables: Any) -> None:
    """Creates the optimizer's slot variables up front, so the first train step traces once, not twice."""
    if hasattr(optimizer, "build"):  # Keras 3-style optimizers
        optimizer.build(variables)
    elif hasattr(optimizer, "_create_all_weights"):  # tf_keras' legacy OptimizerV2, which Model Garden builds
        optimizer._create_all_weights(variables)


def count_flops(model: Any, image_size: int) -> int:
    """Multiply-adds per image of the detector's backbone, decoder and head, with Model Garden's FLOPs counter.

    TF's profiler counts a multiply and an add as two operations; this returns half its count. Trials do not call
    it (the profiler takes seconds per model): `ProxyConfig.cost` gives the same count from the spec; this is its
    reference (`proxy_task.measure`, `scripts/bench/cost.py`).
    """
    import tensorflow as tf
    import tf_keras
    from official.core import train_utils

    inputs = tf_keras.Input(shape=[image_size, image_size, 3], batch_size=1)
    features = model.backbone(inputs)
    if model.decoder is not None:
        features = model.decoder(features)
    outputs = model.head(features)
    wrapper = tf_keras.Model(inputs=inputs, outputs=tf.nest.flatten(outputs))
    ops = train_utils.try_count_flops(wrapper)
    return int(ops // 2) if ops else 0


@dataclasses.dataclass
class _TrialParts:
    """The Model Garden objects of one trial, built once by `_build_trial`."""

    exp: Any
    task: Any
    model: Any
    optimizer: Any
    train_metrics: Any
    train_iter: Any


def _build_trial(arch: ArchSpec, cfg: ProxyConfig, dataset: DatasetInfo, precision: str = "float32") -> _TrialParts:
    """The experiment config, the task, the model (variables built), the optimizer (slots built), the train input.

    The Keras policy of `precision` is set first, as Model Garden's ``official/vision/train.py`` does before it
    builds the task's model."""
    import tensorflow as tf
    from official.core import task_factory

    from proxy_task.devices import set_precision_policy

    set_precision_policy(precision)
    exp = build_experiment(arch, cfg, dataset, precision)
    task = task_factory.get_task(exp.task)
    model = task.build_model()
    # One eager pass builds the head's lazily created variables, so the train step traces once.
    model(tf.zeros([1, cfg.image_size, cfg.image_size, 3]), training=True)
    optimizer = task.create_optimizer(exp.trainer.optimizer_config, exp.runtime)
    _create_optimizer_slots(optimizer, model.trainable_variables)
    train_metrics = task.build_metrics(training=True)
    train_iter = iter(_deterministic_inputs(task.build_inputs(exp.task.train_data), cfg))
    return _TrialParts(exp, task, model, optimizer, train_metrics, train_iter)


def _learning_rate(optimizer: Any) -> float:
    """The schedule's rate (warmup included) at `optimizer.iterations`, as Model Garden's trainer logs it."""
    lr = optimizer.learning_rate
    return float(lr(optimizer.iterations) if callable(lr) else lr)


# The parsed validation batches of one split, kept by a process for its later evaluations and warm trials: they do
# not depend on the trial (no shuffle, no augmentation, no seed; Model Garden's reader uses the seed only to shuffle
# training input), and parsing them again costs a pipeline build and a pass at every evaluation. A split larger than
# this (the paper preset's 7,392 images at 512 px) is parsed at each evaluation, its pipeline built each time.
VALIDATION_CACHE_MB = 256.0
_validation_cache: dict[str, list[Any]] = {}


def _validation_key(exp: Any) -> str | None:
    """What the parsed validation batches depend on: the input config without its seed, the model's input size,
    levels and anchors (the parser makes the anchor labels), and the split's files; None for training input."""
    import glob
    import json

    data = exp.task.validation_data.as_dict()
    if data.get("is_training"):
        return None
    data.pop("seed", None)
    model = {k: v for k, v in exp.task.model.as_dict().items() if k in ("input_size", "min_level", "max_level",
                                                                       "anchor")}
    files = []
    for pattern in str(data.get("input_path", "")).split(","):
        for path in sorted(glob.glob(pattern)):
            st = os.stat(path)
            files.append((path, st.st_size, st.st_mtime_ns))
    return json.dumps([data, model, files, exp.trainer.validation_steps], sort_keys=True, default=str)


def _validation_batches(parts: _TrialParts) -> Any:
    """The validation batches of an evaluation: the cached ones (`_validation_cache`), else parsed by Model Garden's
    input pipeline and, when they fit in `VALIDATION_CACHE_MB`, kept for the next evaluation."""
    key = _validation_key(parts.exp)
    cached = _validation_cache.get(key) if key is not None else None
    if cached is not None:
        yield from cached
        return
    dataset = parts.task.build_inputs(parts.exp.task.validation_data)
    kept: list[Any] | None = [] if key is not None else None
    size = 0
    import tensorflow as tf

    for batch in itertools.islice(dataset, parts.exp.trainer.validation_steps):
        if kept is not None:
            size += sum(t.shape.num_elements() * t.dtype.size for t in tf.nest.flatten(batch))
            if size <= VALIDATION_CACHE_MB * 2**20:
                kept.append(batch)
            else:
                kept = None
        yield batch
    if kept is not None:
        _validation_cache.clear()  # one split at a time
        _validation_cache[key] = kept


def _eval_images(cfg: ProxyConfig, dataset: DatasetInfo) -> int:
    """The proxy-val images an evaluation scores: all of them, or the first `cfg.eval_images`."""
    return dataset.val_images if not cfg.eval_images else min(cfg.eval_images, dataset.val_images)


class _CocoEvaluation:
    """COCO evaluation of a trial's model on the whole validation split, callable any number of times.

    Model Garden's `COCOEvaluator` and the `val_step` tf.function are made at the first call (so a trial without
    intermediate evaluations builds them where it always did, after training) and reused by every later one;
    `aggregate_logs` resets the COCO metric at each evaluation's first batch. The validation batches are parsed
    once per process (`_validation_batches`).
    """

    def __init__(self, parts: _TrialParts) -> None:
        self._parts = parts
        self._val_step: Any = None

    def __call__(self) -> dict[str, float]:
        """Runs one evaluation: our metric names (ap, ap50, ... ar100) and its seconds as `eval_s`."""
        t0 = time.time()
        task, model = self._parts.task, self._parts.model
        if self._val_step is None:
            import tensorflow as tf

            task.build_metrics(training=False)

            @tf.function
            def val_step(inputs: Any) -> dict[str, Any]:
                return task.validation_step(inputs, model)

            self._val_step = val_step
        state = None
        for batch in _validation_batches(self._parts):
            state = task.aggregate_logs(state=state, step_outputs=self._val_step(batch))
        coco = task.reduce_aggregated_logs(state)
        out = {ours: float(coco[theirs]) for theirs, ours in _METRIC_NAMES.items() if theirs in coco}
        out["eval_s"] = time.time() - t0
        return out


@dataclasses.dataclass
class _Progress:
    """The running account of `_train`: the steps and losses so far, and where the seconds went."""

    step: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    paused_s: float = 0.0  # intermediate evaluations and report calls: not training time
    steady_s: float = 0.0  # the chunks after the first (tracing) one
    window_start: int = 0  # since the previous log_every report: its first step, seconds and timed steps
    window_s: float = 0.0
    window_timed: int = 0


def _train(
    parts: _TrialParts,
    cfg: ProxyConfig,
    metrics: dict[str, float],
    *,
    evaluate: Callable[[], dict[str, float]],
    report: Reporter,
    label: str,
) -> tuple[int | None, dict[str, float]]:
    """Trains `cfg.train_steps` steps in chunks, reporting the curve and running the intermediate evaluations.

    Every `cfg.log_every` steps and at each step of `cfg.eval_at_steps` it calls ``report(step, ...)`` once (see
    `run_trial` for the keys); the report of the last step is left to the caller, which evaluates first.
    Fills `metrics` with the training timings and losses (and the latest intermediate evaluation).

    Returns:
      (the step at which `report` asked to stop, or None when training ran to its end; the training part of the
      last step's report).

    Raises:
      TrialError: a non-finite loss, a non-finite intermediate AP, or divergence at the end of training.
    """
    import tensorflow as tf

    train_loop = _build_train_loop(parts)
    eval_steps = set(cfg.eval_at_steps)
    progress = _Progress()
    t_train = time.time()
    stopped_at: int | None = None
    last: dict[str, float] = {}
    while progress.step < cfg.train_steps:
        n = _chunk_steps(progress.step, cfg)
        t0 = time.time()
        chunk = train_loop(parts.train_iter, tf.constant(n, tf.int32)).numpy().tolist()
        _take_chunk(progress, chunk, time.time() - t0, metrics)
        step = progress.step
        t_pause = time.time()
        out: dict[str, float] = {}
        if step % cfg.log_every == 0 or step == cfg.train_steps:
            out = _loss_report(progress, cfg, parts.optimizer, metrics, label)
        if step == cfg.train_steps:
            last = out
            break
        if step in eval_steps:
            out.update(_intermediate_evaluation(evaluate, step, cfg, metrics, label))
        stop = bool(out) and report(step, out)
        progress.paused_s += time.time() - t_pause
        if stop:
            stopped_at = step
            logger.info("[%s] stopped at step %d/%d", label, step, cfg.train_steps)
            break
    _training_metrics(progress, cfg, metrics, t_train)
    # Divergence is a property of a whole training; a stopped trial is not judged by it.
    if stopped_at is None:
        _check_divergence(progress.losses, cfg, metrics)
    return stopped_at, last


def _build_train_loop(parts: _TrialParts) -> Any:
    """The tf.function that runs a chunk of train steps and returns their losses."""
    import tensorflow as tf

    task, model, optimizer, train_metrics = parts.task, parts.model, parts.optimizer, parts.train_metrics

    @tf.function
    def train_loop(iterator: Any, steps: Any) -> Any:
        # As Model Garden's orbit trainer does: a chunk of steps inside one function call, no Python per step.
        losses = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            logs = task.train_step(next(iterator), model, optimizer, metrics=train_metrics)
            losses = losses.write(i, tf.cast(logs[task.loss], tf.float32))
        return losses.stack()

    return train_loop


def _chunk_steps(step: int, cfg: ProxyConfig) -> int:
    """The steps of the next chunk: one for the first call (it traces); later chunks end at every report step and
    evaluation step."""
    if step == 0:
        return 1
    n = min(cfg.log_every - step % cfg.log_every, cfg.train_steps - step)
    return min([n] + [s - step for s in cfg.eval_at_steps if s > step])


def _take_chunk(progress: _Progress, chunk: list[float], chunk_s: float, metrics: dict[str, float]) -> None:
    """Counts a chunk's seconds (the first, traced chunk as ``trace_s``) and its losses, step by step.

    Raises:
      TrialError: a non-finite loss.
    """
    if progress.step == 0:
        metrics["trace_s"] = chunk_s
    else:
        progress.steady_s += chunk_s
        progress.window_s += chunk_s
        progress.window_timed += len(chunk)
    for loss in chunk:
        progress.step += 1
        metrics["steps"] = float(progress.step)  # so far: what a failed trial trained too
        progress.losses.append(loss)
        if not math.isfinite(loss):
            raise TrialError(f"training loss became {loss} at step {progress.step}")


def _loss_report(progress: _Progress, cfg: ProxyConfig, optimizer: Any, metrics: dict[str, float],
                 label: str) -> dict[str, float]:
    """The training part of a report, over the steps since the previous one (which starts a new window), logged."""
    step = progress.step
    window = progress.losses[progress.window_start:]
    # Images/s of the window's untraced steps; a window of the traced first step alone has only that.
    timed_s, timed = (progress.window_s, progress.window_timed) if progress.window_timed else (metrics["trace_s"], 1)
    out = {"loss": sum(window) / len(window), "learning_rate": _learning_rate(optimizer),
           "images_per_s": cfg.batch_size * timed / timed_s if timed_s > 0 else 0.0}
    progress.window_start, progress.window_s, progress.window_timed = step, 0.0, 0
    logger.info("[%s] step %d/%d loss %.4f lr %.3g (%.2f s/step)", label, step,
                cfg.train_steps, out["loss"], out["learning_rate"], progress.steady_s / max(1, step - 1),
                extra={"report_step": step})
    return out


def _intermediate_evaluation(evaluate: Callable[[], dict[str, float]], step: int, cfg: ProxyConfig,
                             metrics: dict[str, float], label: str) -> dict[str, float]:
    """An evaluation at `step` of `cfg.eval_at_steps`: checked, kept in `metrics`, logged, returned.

    Raises:
      TrialError: a non-finite AP.
    """
    coco = evaluate()
    _check_ap(coco, step)
    metrics.update(coco)
    logger.info("[%s] step %d/%d AP %.4f AP50 %.4f (evaluation %.1f s)", label, step, cfg.train_steps,
                coco.get("ap", float("nan")), coco.get("ap50", float("nan")), coco["eval_s"],
                extra={"report_step": step})
    return coco


def _training_metrics(progress: _Progress, cfg: ProxyConfig, metrics: dict[str, float], t_train: float) -> None:
    """The training's timings and losses, into `metrics`; `steps` is the optimizer steps taken: train_steps, or the
    step of a stop."""
    step, losses = progress.step, progress.losses
    steady_steps = max(1, step - 1)
    metrics["train_s"] = time.time() - t_train - progress.paused_s
    metrics["step_s"] = progress.steady_s / steady_steps
    metrics["images_per_s"] = cfg.batch_size * steady_steps / progress.steady_s if progress.steady_s > 0 else 0.0
    metrics["steps"] = float(step)
    tail = max(1, len(losses) // 10)
    metrics["train_loss"] = sum(losses[-tail:]) / tail
    metrics["initial_loss"] = sum(losses[:10]) / min(10, len(losses))


def _check_divergence(losses: list[float], cfg: ProxyConfig, metrics: dict[str, float]) -> None:
    """Raises TrialError when the mean loss of the last tenth of the steps is above `cfg.divergence_factor` times
    the first 10 steps' (`metrics`' train_loss and initial_loss)."""
    tail = max(1, len(losses) // 10)
    if len(losses) >= 20 and metrics["train_loss"] > cfg.divergence_factor * metrics["initial_loss"]:
        raise TrialError(
            f"training diverged: mean loss of the last {tail} steps {metrics['train_loss']:.3f} > "
            f"{cfg.divergence_factor} x the first 10 steps' {metrics['initial_loss']:.3f}"
        )


def _check_ap(coco: dict[str, float], step: int) -> None:
    ap = coco.get("ap", float("nan"))
    if not math.isfinite(ap):
        raise TrialError(f"COCO AP is {ap} at step {step}")


@dataclasses.dataclass
class _Outcome:
    """What a trial has measured so far: a trial that fails part way returns what it got to."""

    metrics: dict[str, float]
    params: int | None = None
    flops: int | None = None
    stopped_at: int | None = None
    precision: str | None = None


def run_trial(
    arch: ArchSpec,
    cfg: ProxyConfig,
    dataset: DatasetInfo,
    *,
    trial_label: str = "trial",
    report: Reporter = no_report,
    gpu_share: float = 0.0,
) -> ProxyResult:
    """Trains and evaluates one architecture; never raises for a failed trial (see `ProxyResult.error`).

    The learning curve goes to `report`, one call per step that has something to report:

    - every `cfg.log_every` steps and at the last step: ``loss`` (the mean training loss of the steps since the
      previous such report), ``learning_rate`` (the schedule's rate, warmup included, at the optimizer's step
      count after that step, as Model Garden's trainer logs it) and ``images_per_s`` (training images/s of those
      steps, the traced first step left out unless it is the only one; no evaluation time);
    - at each step of `cfg.eval_at_steps` and at the last step: the COCO metrics of an evaluation on the whole
      proxy-val set, ``ap``, ``ap50``, ``ap75``, ``aps``, ``apm``, ``apl``, ``ar100`` and its ``eval_s``.

    A step with both gets one call with both. When `report` returns True the trial stops at once: no more training
    and no final evaluation; the result then has ``stopped_at`` set, no error, and the metrics measured so far
    (``steps`` is the optimizer steps taken, i.e. the stop's step; train_loss, step_s and images_per_s are over
    those steps; the latest intermediate evaluation's metrics stand as ap, ap50, ..., eval_s; FLOPs are still
    counted; the divergence test is skipped). The report of the last step comes after the final evaluation; its
    answer is moot. Intermediate evaluations do not change the training (the same losses and final AP as
    without them); the final ``eval_s`` is then shorter, as the evaluation is already built and traced.

    Args:
      arch: the architecture.
      cfg: the proxy settings.
      dataset: a ready dataset (`proxy_task.data.ensure_dataset`).
      trial_label: tags the log lines, e.g. 'trial 12'.
      report: the `Reporter` of the learning curve (default: nobody watches).
      gpu_share: the GPUs the trial holds (`configure_tensorflow`); the trial trains on one GPU when it sees any.

    Returns:
      The trial's `ProxyResult`.
    """
    global _trials_started
    t_start = time.time()
    _trials_started += 1
    # 1 in a fresh process; n: the n-th trial of a warm worker (its import_s is then ~0). The CPU, the GPUs and the
    # images an evaluation scores are what `spinenas proxy cost` needs to fit a machine's constants from its trials.
    from proxy_task.devices import cpu_metrics

    outcome = _Outcome(metrics={"worker_trial": float(_trials_started), **cpu_metrics(),
                                "eval_images": float(_eval_images(cfg, dataset))})
    if _trials_started == 1:
        _cap_malloc_arenas()
    error = _run_as_data(arch, cfg, dataset, outcome, label=trial_label, report=report, gpu_share=gpu_share,
                         t_start=t_start)
    outcome.metrics["peak_rss_mb"] = _peak_rss_mb()
    outcome.metrics["release_s"] = _release_after_trial(trial_label)
    wall = time.time() - t_start
    return ProxyResult(metrics=outcome.metrics, flops=outcome.flops, params=outcome.params, wall_s=wall, error=error,
                       stopped_at=outcome.stopped_at if error is None else None, precision=outcome.precision)


def _run_as_data(arch: ArchSpec, cfg: ProxyConfig, dataset: DatasetInfo, outcome: _Outcome, *, label: str,
                 report: Reporter, gpu_share: float, t_start: float) -> str | None:
    """Runs the trial (`_train_and_evaluate`) into `outcome`; returns its error in one line, or None.

    A failed trial is data, not an exception. Its Model Garden objects are let go when this returns, before
    `_release_after_trial` releases TensorFlow's state.
    """
    try:
        _train_and_evaluate(arch, cfg, dataset, outcome, label=label, report=report, gpu_share=gpu_share)
        logger.info("[%s] AP %.4f AP50 %.4f (%.0f s)%s", label, outcome.metrics.get("ap", float("nan")),
                    outcome.metrics.get("ap50", float("nan")), time.time() - t_start,
                    f", stopped at step {outcome.stopped_at}" if outcome.stopped_at is not None else "")
    except TrialError as e:
        error = str(e)
        logger.warning("[%s] failed: %s", label, error)
        return error
    except Exception as e:  # noqa: BLE001 - a failed trial is data: the reason goes to the store
        error = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        logger.error("[%s] failed:\n%s", label, traceback.format_exc())
        return error
    return None


def _train_and_evaluate(arch: ArchSpec, cfg: ProxyConfig, dataset: DatasetInfo, outcome: _Outcome, *, label: str,
                        report: Reporter, gpu_share: float) -> None:
    """The trial itself: starts TensorFlow, builds the detector, trains it, and (unless stopped) evaluates it last,
    recording into `outcome` as it goes.

    Raises:
      TrialError: see `_train`; a non-finite final AP. Anything else that fails, as it comes.
    """
    metrics = outcome.metrics
    _start_tensorflow(cfg, gpu_share, metrics)
    parts = _build_and_count(arch, cfg, dataset, outcome, label)
    evaluate = _CocoEvaluation(parts)
    outcome.stopped_at, last = _train(parts, cfg, metrics, evaluate=evaluate, report=report, label=label)

    if outcome.flops and metrics["images_per_s"]:
        # Training costs about 3 forward passes (forward, and twice that backward); 2 FLOPs per multiply-add.
        metrics["gflops_per_s"] = 6.0 * outcome.flops * metrics["images_per_s"] / 1e9

    if outcome.stopped_at is None:
        coco = evaluate()
        metrics.update(coco)
        _check_ap(coco, cfg.train_steps)
        report(cfg.train_steps, {**last, **coco})


def _start_tensorflow(cfg: ProxyConfig, gpu_share: float, metrics: dict[str, float]) -> None:
    """Lets go of what an earlier trial of this process left (if it could not), configures TensorFlow, and imports
    Model Garden; the seconds go to ``import_s``."""
    global _custom_gradients_before
    t0 = time.time()
    if not _released:
        _release_tensorflow()
    configure_tensorflow(cfg, gpu_share)
    _custom_gradients_before = _custom_gradient_names()
    from official.core import task_factory  # noqa: F401 - timed here, not in build_s

    from proxy_task import builder  # noqa: F401 - registers the backbone and the experiment

    metrics["import_s"] = time.time() - t0


def _build_and_count(arch: ArchSpec, cfg: ProxyConfig, dataset: DatasetInfo, outcome: _Outcome,
                     label: str) -> _TrialParts:
    """The trial's Model Garden objects in its chosen precision; the GPUs, precision, params and FLOPs go to
    `outcome`, the seconds to ``build_s``."""
    from proxy_task.devices import choose_precision, visible_gpus

    t0 = time.time()
    gpus = visible_gpus()
    outcome.metrics["gpus"] = float(len(gpus))
    outcome.precision = choose_precision(cfg.mixed_precision, gpus)
    parts = _build_trial(arch, cfg, dataset, outcome.precision)
    outcome.params = params = int(parts.model.count_params())
    outcome.metrics["build_s"] = time.time() - t0
    logger.info("[%s] built: %d params, %s, %.1f s", label, params, outcome.precision, outcome.metrics["build_s"])
    # FLOPs from the spec (search_space.cost: Model Garden's profiler count, without the profiler's seconds). The
    # built model's own parameter count checks the analytic one; a difference means Model Garden builds
    # something the counter does not know, so its FLOPs are not trusted either.
    cost = cfg.cost(arch, dataset.num_classes)
    if cost.params == params:
        outcome.flops = cost.flops
    else:
        logger.warning("[%s] the analytic count has %d params, the built model %d: FLOPs not recorded "
                       "(search_space.cost is out of step with this Model Garden)", label, cost.params, params)
    return parts


def _release_after_trial(label: str) -> float:
    """Lets go of the trial's TensorFlow state (`_release_tensorflow`) and returns the seconds it took; when that
    fails the next trial of this process releases first.

    Timed, so that no part of a trial goes unaccounted: the trial-cost benchmark has seen stalls outside every
    other timer (see the README's Benchmarks, `scripts/bench/trial_cost.py`, other_s).
    """
    global _released
    _released = False
    t0 = time.time()
    try:
        _release_tensorflow()
        _released = True
    except Exception:  # noqa: BLE001 - the trial's result stands; the next trial releases again
        logger.warning("[%s] could not release TensorFlow's state:\n%s", label, traceback.format_exc())
    return time.time() - t0


def result_summary(result: ProxyResult) -> dict[str, Any]:
    """The flat JSON of `spinenas proxy run --json`."""
    out = result.flat()
    for key in ("ap", "ap50", "ap75", "images_per_s", "trace_s"):
        out.setdefault(key, None)
    return out


__all__ = ["TrialError", "build_experiment", "configure_tensorflow", "count_flops", "result_summary",
           "run_trial"]

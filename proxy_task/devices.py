"""A trial's devices: which precision it trains in, how it takes its GPUs, and which CPU it ran on (TF-free choices,
TF-side setup).

`choose_precision` is the rule of ``proxy.mixed_precision``; `gpu_memory_limits` the rule of a fractional GPU
share. Both are pure functions of what the trial sees, so they are tested on machines without a GPU.
`configure_gpus` and `visible_gpus` apply them through TensorFlow, before its runtime starts. `cpu_metrics` is what a
trial records of its CPU, so that `spinenas proxy cost` can fit a machine's constants from its own trials.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Sequence

from proxy_task.config import PRECISIONS

logger = logging.getLogger(__name__)

# The Keras policy Model Garden's `performance.set_mixed_precision_policy` sets for each precision.
_POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def choose_precision(setting: str, gpus: Sequence[tuple[int, int] | None]) -> str:
    """The precision a trial trains in: `setting` unless it is 'auto'.

    'auto' follows the tensor cores of the trial's GPUs (their compute capabilities, `gpus`; None for one whose
    capability TensorFlow does not report):

    - no GPU (a CPU trial): float32 (mixed precision does not pay on CPUs: the README's proxy task section has
      the step times);
    - every GPU at compute capability 8.0 or later (A100, A10G, L4, H100): bfloat16, which needs no loss scaling;
    - otherwise, every GPU at 7.0 or later (V100, T4): float16, with Model Garden's dynamic loss scaling;
    - older GPUs (P100, K80: no tensor cores) or an unknown capability: float32.

    Raises:
      ValueError: an unknown setting.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {list(PRECISIONS)}, got {setting!r}")
    if setting != "auto":
        return setting
    if not gpus:
        return "float32"
    if any(cc is None for cc in gpus):
        return "float32"
    lowest = min(tuple(cc) for cc in gpus)
    if lowest >= (8, 0):
        return "bfloat16"
    if lowest >= (7, 0):
        return "float16"
    return "float32"


def keras_policy(precision: str) -> str:
    """The Keras mixed-precision policy name of a chosen precision ('float16' -> 'mixed_float16')."""
    return _POLICIES[precision]


# MiB of a GPU left out of the shares: each process's CUDA context (a few hundred MB) lives outside TensorFlow's cap.
CONTEXT_RESERVE_MB = 512


def gpu_memory_limits(share: float, totals_mb: Sequence[int | None]) -> list[int | None]:
    """The memory cap of each visible GPU for a trial holding `share` of a GPU (Ray's ``--gpus-per-trial``).

    A whole GPU or more (or no share given): no cap, each process grows its use as it needs it (memory growth).
    A fraction (0.5: two trials per GPU): that fraction of each GPU's memory after a `CONTEXT_RESERVE_MB` per
    process, so two trials cannot starve each other; None where a GPU's total is unknown (then it gets memory
    growth only).

    Raises:
      ValueError: a negative share.
    """
    if share < 0:
        raise ValueError(f"a GPU share must be >= 0, got {share}")
    if share == 0 or share >= 1:
        return [None] * len(totals_mb)
    per = max(1, math.floor(1 / share))  # processes sharing a GPU
    return [None if total is None else max(1, int((total - per * CONTEXT_RESERVE_MB) * share)) for total in totals_mb]


def gpu_totals_mb(count: int) -> list[int | None]:
    """Total memory (MiB) of the process's visible GPUs, in TensorFlow's order, from ``nvidia-smi``; None for each
    when it cannot tell (no nvidia-smi, another vendor). Honours CUDA_VISIBLE_DEVICES (Ray sets it per trial)."""
    if count == 0:
        return []
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [None] * count
    try:
        out = subprocess.run([exe, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return [None] * count
    return parse_gpu_totals(out, os.environ.get("CUDA_VISIBLE_DEVICES"), count)


def parse_gpu_totals(nvidia_smi_csv: str, visible: str | None, count: int) -> list[int | None]:
    """`gpu_totals_mb` from the text of ``nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits``
    and CUDA_VISIBLE_DEVICES (indices; None or empty: every GPU in order)."""
    totals: dict[str, int] = {}
    for line in nvidia_smi_csv.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            totals[parts[0]] = int(parts[1])
    order = [v.strip() for v in visible.split(",")] if visible else sorted(totals, key=int)
    out = [totals.get(i) for i in order][:count]
    return out + [None] * (count - len(out))


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo's first 'model name' (Linux), else `platform.processor()`; '' when
    neither says."""
    import contextlib
    import platform

    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name") and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    return platform.processor().strip()


def cpu_model_id(model: str) -> int:
    """A CPU model name as a number: the first 12 hex digits of its sha256, a 48-bit integer.

    A trial's metrics are numbers (the store keeps a JSON object of floats), so the model travels as this id, which
    a float holds exactly (53-bit mantissa); whoever knows the name computes the same id and compares."""
    return int(hashlib.sha256(model.encode("utf-8")).hexdigest()[:12], 16)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_metrics() -> dict[str, float]:
    """What a trial records of its CPU: ``cpu_model_id`` (`cpu_model_id` of `cpu_model`; absent when the model is
    unknown) and ``cpus`` (`usable_cpus`)."""
    model = cpu_model()
    out = {"cpus": float(usable_cpus())}
    if model:
        out["cpu_model_id"] = float(cpu_model_id(model))
    return out


def visible_gpus() -> list[tuple[int, int] | None]:
    """The compute capability of each GPU TensorFlow sees (None where it does not say); [] on a CPU machine."""
    import tensorflow as tf

    out: list[tuple[int, int] | None] = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (RuntimeError, ValueError):
            cc = None
        out.append(tuple(cc) if cc else None)  # type: ignore[arg-type]
    return out


def configure_gpus(share: float) -> None:
    """Memory growth on every visible GPU, or each capped at `share` of its memory (`gpu_memory_limits`).

    Must run before TensorFlow's runtime starts; in a process whose runtime is up already (a warm worker's later
    trial) the first trial's setting stands. No-op without GPUs.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    limits = gpu_memory_limits(share, gpu_totals_mb(len(gpus)))
    applied = []
    for gpu, limit in zip(gpus, limits):
        try:
            if limit is None:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:
                tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(
                    memory_limit=limit)])
        except (RuntimeError, ValueError) as e:  # the runtime is up: this process's first setting stands
            logger.debug("GPU %s left as it is: %s", gpu.name, e)
            continue
        applied.append(f"{gpu.name} ({'memory growth' if limit is None else f'{limit} MiB cap'})")
    if applied:
        logger.info("GPUs: %s", ", ".join(applied))


def set_precision_policy(precision: str) -> None:
    """The global Keras policy of a trial, set as Model Garden's ``official/vision/train.py`` sets it
    (`performance.set_mixed_precision_policy`), before the model is built. float32 resets it, so a warm worker's
    next trial never inherits the previous one's."""
    import tensorflow as tf
    from official.modeling import performance

    performance.set_mixed_precision_policy(tf.as_dtype(precision))


__all__ = ["PRECISIONS", "choose_precision", "configure_gpus", "cpu_metrics", "cpu_model", "cpu_model_id",
           "gpu_memory_limits", "keras_policy", "parse_gpu_totals", "set_precision_policy", "usable_cpus",
           "visible_gpus"]

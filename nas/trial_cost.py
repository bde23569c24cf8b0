"""What a proxy trial costs on a device, from its FLOPs: the model behind `spinenas proxy cost` (TF-free).

A trial is its setup (TensorFlow import, model build, the first step's trace), its training steps and its
evaluations. From the detector's multiply-adds per image ``F`` (`ProxyConfig.cost`, the analytic count of
`search_space.cost`, equal to Model Garden's profiler's):

- a training step costs ``2 * 3 * F * batch`` FLOPs (2 FLOPs a multiply-add; forward and backward about 3
  forward passes), at the device's sustained training FLOP/s at the trial's precision;
- an evaluation costs ``2 * F`` FLOPs per proxy-val image at the same rate, plus the host's per-image work (NMS and
  pycocotools' matching), plus, at a trial's first evaluation, the trace of the evaluation step and the parsing of
  the split;
- the setup is a constant of the device (the trace is host work: the same architecture-sized graph everywhere).

The CPU constants are fitted on one architecture at one image size on the machines here (SpineNet-49, 128 px,
`scripts/bench/trial_cost.py`, which also checks them on held-out architectures and sizes: 3 of 5 200-step trials
within 20%, the worst +37%; the model overestimates, as architectures of equal FLOPs trace and step differently
and these CPUs sustain ~1.5x the FLOP/s at 256 px that they do at 128 px). The GPU rows are
ESTIMATES, never measured here: published dense peak FLOP/s of each GPU at each precision times the share of its
peak Vertex AI's published SpineNet proxy sustained on V100s (`GPU_UTILIZATION`, ~3%), with the CPU's host
constants for setup and COCO work. That share reproduces Vertex's 512-px figure by construction; its 384-px figure
(2.5 h) it does not (the model says ~15 min): on GPUs such a proxy is not bound by its FLOPs alone (input
pipeline, NMS, host work), so treat the GPU rows as a lower bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# Vertex AI NAS's published SpineNet GPU proxy (`spinenet_search_gpu.yaml`, ../shared/PAPER.md): SpineNet at 512 px,
# filter scale 0.5, batch 80, 16,634 steps, 5,000 val images, 2h17m a trial on 2 V100s. Its multiply-adds per image
# are SpineNet-49's in that detector with COCO's 91 classes (`ProxyConfig.cost`; a test checks the number).
VERTEX_512 = {"flops": 8_666_349_085, "batch_size": 80, "train_steps": 16_634, "eval_images": 5000, "gpus": 2,
              "trial_s": 2 * 3600 + 17 * 60}
_V100_FLOAT16_PEAK = 125e12
# The share of a GPU's published dense peak a SpineNet proxy sustains, taken from VERTEX_512 (its whole trial's
# training FLOPs over its seconds, per V100, against the V100's float16 tensor peak): about 3%. Not measured here.
GPU_UTILIZATION = (6.0 * VERTEX_512["flops"] * VERTEX_512["batch_size"] * VERTEX_512["train_steps"]
                   / (VERTEX_512["trial_s"] * VERTEX_512["gpus"]) / _V100_FLOAT16_PEAK)


@dataclasses.dataclass(frozen=True)
class Device:
    """A device's constants for the trial-cost model.

    Attributes:
      name: the `--device` name.
      label: what it is.
      train_flops_per_s: sustained training FLOP/s by precision ('float32', 'float16', 'bfloat16').
      setup_s: a fresh trial's import, build and first-step trace.
      first_eval_s: the extra seconds of a trial's first evaluation (its trace; parsing the split).
      host_s_per_eval_image: host seconds per evaluated image besides its forward pass (NMS, COCO matching).
      measured: True when the constants were fitted on this machine; False for an estimate.
      source: where the numbers come from.
      compute_capability: a GPU's (what `proxy.mixed_precision=auto` decides by); None for a CPU.
    """

    name: str
    label: str
    train_flops_per_s: dict[str, float]
    setup_s: float
    first_eval_s: float
    host_s_per_eval_image: float
    measured: bool
    source: str
    compute_capability: tuple[int, int] | None = None

    def rate(self, precision: str) -> float:
        """Sustained FLOP/s at `precision` (CPUs: float32 whatever is asked; mixed precision does not pay there)."""
        return self.train_flops_per_s.get(precision) or self.train_flops_per_s["float32"]


# Fitted by `python scripts/bench/trial_cost.py` (results/trial_cost.json: SpineNet-49 at 128 px, batch 8, one fresh
# `spinenas proxy run` of 200 steps with an evaluation at 100, on the 2-core AMD EPYC of these machines).
CPU = Device(
    name="cpu", label="this machine's 2 CPU cores (measured)",
    train_flops_per_s={"float32": 47.1e9}, setup_s=46.1, first_eval_s=7.7, host_s_per_eval_image=0.00266,
    measured=True, source="scripts/bench/results/trial_cost.json (fit on SpineNet-49, 128 px)",
)

# Published dense peaks (no sparsity), FLOP/s: float32 is TF32 on Ampere and later (TensorFlow's default there).
_PEAKS = {
    "v100": ("NVIDIA V100 SXM2 (16/32 GB)", (7, 0), {"float32": 15.7e12, "float16": 125e12, "bfloat16": 15.7e12},
             "NVIDIA V100 datasheet: 15.7 TFLOPS FP32, 125 TFLOPS FP16 tensor; no bfloat16 tensor cores"),
    "a10g": ("NVIDIA A10G (AWS g5)", (8, 6), {"float32": 31.2e12, "float16": 125e12, "bfloat16": 125e12},
             "NVIDIA A10 datasheet (the A10G runs at close clocks): 31.2 TFLOPS FP32, 125 TFLOPS FP16/BF16 tensor "
             "dense"),
    "a100": ("NVIDIA A100 SXM (40/80 GB)", (8, 0), {"float32": 156e12, "float16": 312e12, "bfloat16": 312e12},
             "NVIDIA A100 datasheet: 156 TFLOPS TF32, 312 TFLOPS FP16/BF16 tensor dense"),
    "h100": ("NVIDIA H100 SXM", (9, 0), {"float32": 494e12, "float16": 989e12, "bfloat16": 989e12},
             "NVIDIA H100 datasheet: 494 TFLOPS TF32, 989 TFLOPS FP16/BF16 tensor dense"),
}

DEVICES: dict[str, Device] = {"cpu": CPU}
for _name, (_label, _cc, _peaks, _source) in _PEAKS.items():
    DEVICES[_name] = Device(
        name=_name, label=f"{_label} (ESTIMATE: {GPU_UTILIZATION:.1%} of its published peak)",
        train_flops_per_s={k: v * GPU_UTILIZATION for k, v in _peaks.items()}, setup_s=CPU.setup_s,
        first_eval_s=CPU.first_eval_s, host_s_per_eval_image=CPU.host_s_per_eval_image, measured=False,
        source=_source, compute_capability=_cc,
    )


@dataclasses.dataclass(frozen=True)
class TrialCost:
    """A trial's predicted seconds, by part, on one device."""

    device: str
    precision: str
    flops: int
    setup_s: float
    train_s: float
    eval_s: float

    @property
    def total_s(self) -> float:
        return self.setup_s + self.train_s + self.eval_s


def precision_on(device: Device, setting: str) -> str:
    """The precision a trial of `setting` ('auto' or an explicit one) trains in on `device`: the trial's own rule
    (`proxy_task.devices.choose_precision`) applied to the device's compute capability."""
    from proxy_task.devices import choose_precision

    return choose_precision(setting, [] if device.compute_capability is None else [device.compute_capability])


def predict(device: Device, *, flops: int, batch_size: int, train_steps: int, eval_images: int, evaluations: int,
            precision: str = "float32", gpus: int = 1) -> TrialCost:
    """The seconds of one trial (see the module docstring).

    Args:
      device: the device's constants.
      flops: multiply-adds per image of the proxy's detector.
      batch_size, train_steps: the proxy's.
      eval_images: proxy-val images each evaluation scores.
      evaluations: how many (the intermediate ones and the final one).
      precision: what the trial trains in.
      gpus: devices a trial would train on, at linear scaling (trials here train on one: an estimate for
        comparisons such as Vertex AI's 2-V100 proxy).
    """
    if flops <= 0 or batch_size < 1 or train_steps < 1 or eval_images < 0 or evaluations < 0 or gpus < 1:
        raise ValueError("flops, batch_size, train_steps and gpus must be positive; eval_images and evaluations "
                         "at least 0")
    rate = device.rate(precision) * gpus
    step_s = 6.0 * flops * batch_size / rate
    per_eval = eval_images * (2.0 * flops / rate + device.host_s_per_eval_image)
    evals_s = evaluations * per_eval + (device.first_eval_s if evaluations else 0.0)
    return TrialCost(device=device.name, precision=precision, flops=int(flops), setup_s=device.setup_s,
                     train_s=train_steps * step_s, eval_s=evals_s)


def proxy_trial_cost(proxy: Any, device: Device, *, flops: int, eval_images: int, gpus: int = 1) -> TrialCost:
    """`predict` for a `ProxyConfig`: its batch, steps, evaluations (``eval_at_steps`` and the final one) and
    precision setting as decided on `device`."""
    images = eval_images if not proxy.eval_images else min(proxy.eval_images, eval_images)
    return predict(device, flops=flops, batch_size=proxy.batch_size, train_steps=proxy.train_steps,
                   eval_images=images, evaluations=len(proxy.eval_at_steps) + 1,
                   precision=precision_on(device, proxy.mixed_precision), gpus=gpus)


def fit_cpu(*, flops: int, batch_size: int, step_s: float, setup_s: float, first_eval_s: float, later_eval_s: float,
            eval_images: int, source: str) -> Device:
    """CPU constants from one measured trial: its steady step, its setup, and its first and a later evaluation.

    The sustained rate is the step's FLOPs over its seconds; a later evaluation's seconds beyond its forward passes
    at that rate are the host's per-image work; the first evaluation's beyond a later one's are its one-off part.
    """
    rate = 6.0 * flops * batch_size / step_s
    host = max(0.0, later_eval_s / eval_images - 2.0 * flops / rate)
    return Device(name="cpu", label="CPU (fitted)", train_flops_per_s={"float32": rate}, setup_s=setup_s,
                  first_eval_s=max(0.0, first_eval_s - later_eval_s), host_s_per_eval_image=host, measured=True,
                  source=source)


def relative_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured."""
    if not measured or not math.isfinite(measured):
        raise ValueError(f"a measured time must be positive, got {measured}")
    return (predicted - measured) / measured


__all__ = ["CPU", "DEVICES", "Device", "GPU_UTILIZATION", "TrialCost", "VERTEX_512", "fit_cpu", "precision_on",
           "predict", "proxy_trial_cost", "relative_error"]

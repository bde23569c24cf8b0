"""What a proxy trial costs on a device, from its FLOPs: the model behind `spinenas proxy cost` (TF-free).

A trial is its setup (TensorFlow import, model build, the first step's trace), its training steps and its
evaluations. From the detector's multiply-adds per image ``F`` (`ProxyConfig.cost`, the analytic count of
`search_space.cost`, equal to Model Garden's profiler's):

- a training step costs the device's per-step overhead (work that does not grow with the batch or the image: op
  dispatch of a graph of thousands of ops, the optimizer's update) plus ``2 * 3 * F * batch`` FLOPs (2 FLOPs a
  multiply-add; forward and backward about 3 forward passes) at the device's sustained training FLOP/s at the
  trial's precision;
- an evaluation costs ``2 * F`` FLOPs per proxy-val image at the same rate, plus the host's per-image work (box
  decoding, NMS and pycocotools' matching), plus, at a trial's first evaluation, the trace of the evaluation step
  and the parsing of the split;
- the setup is a constant of the device (the trace is host work: the same architecture-sized graph everywhere).

The CPU constants are fitted on one architecture at one image size on the machines here (SpineNet-49, 128 px,
`scripts/bench/trial_cost.py`): the overhead and the rate from its steps at three batch sizes (a line through
step seconds against images a step), the rest from its trial at the preset's batch; the script checks them on
held-out architectures at 128 px and at 256 px (results/trial_cost.json; the README quotes the errors). Without the
overhead a rate fitted at 128 px overestimates a 256-px step by ~70%: these CPUs spend ~0.16 s of a 0.27-s step
on it. What the model cannot know: architectures of equal FLOPs step up to ~20% apart, and these machines' step time
drifts about as much between runs of one trial (the bench's rounds record it). The GPU rows are ESTIMATES, never
measured here: published dense peak FLOP/s of each GPU at each precision times the share of its peak Vertex AI's
published SpineNet proxy sustained on V100s (`GPU_UTILIZATION`, ~3%, which folds in any per-step overhead), with the
CPU's host constants for setup and COCO work. That share reproduces Vertex's 512-px figure by construction; its
384-px figure (2.5 h) it does not (the model says ~17 min): on GPUs such a proxy is not bound by its FLOPs alone
(input pipeline, NMS, host work), so treat the GPU rows as a lower bound.
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
      train_flops_per_s: sustained training FLOP/s by precision ('float32', 'float16', 'bfloat16'), beyond the
        per-step overhead.
      setup_s: a fresh trial's import, build and first-step trace.
      first_eval_s: the extra seconds of a trial's first evaluation (its trace; parsing the split).
      host_s_per_eval_image: host seconds per evaluated image besides its forward pass (NMS, COCO matching).
      measured: True when the constants were fitted on this machine; False for an estimate.
      source: where the numbers come from.
      compute_capability: a GPU's (what `proxy.mixed_precision=auto` decides by); None for a CPU.
      step_overhead_s: seconds a training step costs whatever its batch and image size.
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
    step_overhead_s: float = 0.0

    def rate(self, precision: str) -> float:
        """Sustained FLOP/s at `precision` (CPUs: float32 whatever is asked; mixed precision does not pay there)."""
        return self.train_flops_per_s.get(precision) or self.train_flops_per_s["float32"]

    def step_s(self, *, flops: int, batch_size: int, precision: str = "float32", gpus: int = 1) -> float:
        """One training step's seconds: the overhead plus its FLOPs at the sustained rate."""
        return self.step_overhead_s + 6.0 * flops * batch_size / (self.rate(precision) * gpus)


# Fitted by `python scripts/bench/trial_cost.py` (results/trial_cost.json: SpineNet-49 at 128 px on the 2-core AMD
# EPYC of these machines, after a discarded warm-up run, medians of 3 rounds: fresh `spinenas proxy run`s of its
# steps at batches 4, 8 and 16 for the overhead and the rate; the batch-8 run, 150 steps evaluated at 75 and 150,
# for the rest).
CPU = Device(
    name="cpu", label="this machine's 2 CPU cores (measured)",
    train_flops_per_s={"float32": 92.0e9}, setup_s=49.6, first_eval_s=7.8, host_s_per_eval_image=0.0166,
    measured=True, source="scripts/bench/results/trial_cost.json (fit on SpineNet-49, 128 px)",
    step_overhead_s=0.163,
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
    step_s = device.step_s(flops=flops, batch_size=batch_size, precision=precision, gpus=gpus)
    per_eval = eval_images * (2.0 * flops / (device.rate(precision) * gpus) + device.host_s_per_eval_image)
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


def fit_steps(points: list[tuple[int, float]]) -> tuple[float, float]:
    """The line through (images a step, step seconds) by least squares: (overhead seconds, seconds an image).

    The line through the origin instead when there is no line to fit (one point, or every point at one batch size)
    or the fitted one is not physical (a negative overhead or slope)."""
    if not points or any(not b >= 1 or not (s > 0 and math.isfinite(s)) for b, s in points):
        raise ValueError(f"step points need batches >= 1 and positive seconds, got {points}")
    xs, ys = [float(b) for b, _ in points], [s for _, s in points]
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if n > 1 and sxx > 0:
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        overhead = my - slope * mx
        if overhead >= 0 and slope > 0:
            return overhead, slope
    return 0.0, sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)


def fit_cpu(*, flops: int, batch_size: int, step_points: list[tuple[int, float]], setup_s: float,
            first_eval_s: float, later_eval_s: float, eval_images: int, source: str) -> Device:
    """CPU constants from one architecture at one image size: its steady steps at one or more batch sizes, and its
    trial at `batch_size` (setup, first and a later evaluation).

    The overhead and the sustained rate come from the line through the steps (`fit_steps`); a later evaluation's
    seconds beyond its forward passes at that rate are the host's per-image work; the first evaluation's beyond a
    later one's are its one-off part.
    """
    overhead, per_image = fit_steps(step_points)
    rate = 6.0 * flops / per_image
    host = max(0.0, later_eval_s / eval_images - 2.0 * flops / rate)
    return Device(name="cpu", label="CPU (fitted)", train_flops_per_s={"float32": rate}, setup_s=setup_s,
                  first_eval_s=max(0.0, first_eval_s - later_eval_s), host_s_per_eval_image=host, measured=True,
                  source=source, step_overhead_s=overhead)


def relative_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured."""
    if not measured or not math.isfinite(measured):
        raise ValueError(f"a measured time must be positive, got {measured}")
    return (predicted - measured) / measured


__all__ = ["CPU", "DEVICES", "Device", "GPU_UTILIZATION", "TrialCost", "VERTEX_512", "fit_cpu", "fit_steps",
           "precision_on", "predict", "proxy_trial_cost", "relative_error"]

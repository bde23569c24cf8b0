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

A machine's own trials can stand in for the committed CPU constants (`fit_measured`): a results database's RetinaNet
trials record their steady step, FLOPs, batch, setup and evaluations, and, since they record it, the CPU they ran on
(`proxy_task.devices.cpu_metrics`); `read_measured_trials` reads those of one kind of CPU (`CpuKind`), and
`spinenas proxy cost --db` uses their fit once `MIN_FIT_TRIALS` of them exist (`scripts/bench/trial_cost_held_out.py`
checks it on trials the fit did not see).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
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
    measured=True, source="committed fit (scripts/bench/results/trial_cost.json: SpineNet-49, 128 px)",
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


# ---------------------------------------------------------------------------------------- from a machine's trials
# Trials of one kind of CPU a fit needs before `proxy cost` uses it. The step is most of a trial, and at one batch and
# image size its fit is one speed factor, the median of the trials' measured step over the committed model's; but
# architectures of equal FLOPs step up to ~20% apart on top of the machine's own drift (the module docstring), so a
# fit on one or two trials is mostly those architectures'. `scripts/bench/trial_cost_held_out.py` measures the error
# on the trials a fit did not see against the trials it fitted: on the committed databases it falls most of the way
# to its floor by five (results/trial_cost_held_out.json, trials_needed). Five also hold a fresh worker's trial in
# every search of those databases (trials_per_worker is 5 there), so the setup is this machine's too.
MIN_FIT_TRIALS = 5
# The newest trials of the kind are fitted, no more: today's speed is what a prediction is for (a machine's step
# drifts between days), and only their learning curves are read.
MAX_FIT_TRIALS = 50
# The overhead and the rate are fitted from the trials themselves only where their work a step (images a step times
# FLOPs an image) spans this factor, e.g. batches 4 and 8 or 128 and 256 px. Over a narrower span (one search: one
# batch and size, FLOPs within ~+-6%) a line through ~20% of noise has no slope worth the name, so the committed
# line is kept in shape and scaled by the measured speed.
LINE_SPAN = 2.0
_TRAINED_STATUSES = ("completed", "pruned")
# What the trainer's metrics hold and the surrogate's do not: a trial that trained and was timed.
_TIMINGS = ("step_s", "images_per_s", "trace_s", "build_s")


@dataclasses.dataclass(frozen=True)
class MeasuredTrial:
    """One RetinaNet trial as the database stores it, in the model's parts.

    Attributes:
      trial_id: its id in the database.
      host: the worker's host name (None: not recorded).
      cpu_model_id: `proxy_task.devices.cpu_model_id` of its CPU's model (None: a trial from before it was recorded).
      cpus: the CPUs its process could run on (None: not recorded).
      flops: multiply-adds per image of its detector (from its own training FLOP rate, else its arch's).
      batch_size: images a training step (its images/s times its step seconds).
      steps: training steps taken.
      step_s: a steady step's seconds (the traced first step left out).
      setup_s: import, build and the first step's trace.
      warm: a warm worker's later trial (an earlier trial of the process paid the import and part of the build).
      eval_s: each evaluation's seconds in step order, the final one last.
      eval_images: images an evaluation scored (None: unknown).
      wall_s: the whole trial, as its worker measured it.
      reported_s: the seconds from the trial's start to its last report (`elapsed_s`, None: not reported); what
        `wall_s` has beyond it was spent after training and the final evaluation (releasing TensorFlow, a stall).
    """

    trial_id: int
    host: str | None
    cpu_model_id: int | None
    cpus: int | None
    flops: int
    batch_size: int
    steps: int
    step_s: float
    setup_s: float
    warm: bool
    eval_s: tuple[float, ...]
    eval_images: int | None
    wall_s: float
    reported_s: float | None = None


@dataclasses.dataclass(frozen=True)
class CpuKind:
    """A kind of CPU device: its model and the CPUs a trial's process may use, and the host it is on.

    Attributes:
      model: the CPU's model name ('' when the machine does not say).
      cpus: CPUs a trial's process may run on.
      host: the host name, which is all a trial from before the CPU was recorded has to match by.
    """

    model: str
    cpus: int
    host: str

    @classmethod
    def this_machine(cls) -> CpuKind:
        """This machine's kind (`proxy_task.devices`: /proc/cpuinfo and the process's CPU affinity)."""
        import socket

        from proxy_task.devices import cpu_model, usable_cpus

        return cls(model=cpu_model(), cpus=usable_cpus(), host=socket.gethostname())

    @property
    def model_id(self) -> int | None:
        from proxy_task.devices import cpu_model_id

        return cpu_model_id(self.model) if self.model else None

    @property
    def label(self) -> str:
        """E.g. 'AMD EPYC (2 CPUs)'."""
        return f"{self.model or 'an unnamed CPU'} ({self.cpus} CPU{'s' if self.cpus != 1 else ''})"

    def match(self, trial: MeasuredTrial, *, any_host: bool = False) -> str | None:
        """How `trial` is of this kind: 'cpu' (its recorded CPU model and count are these), 'host' (it records no
        CPU and ran on this host), 'any' (it records no CPU and `any_host` takes it whatever its host), or None."""
        if trial.cpu_model_id is not None:
            same = trial.cpu_model_id == self.model_id and trial.cpus in (None, self.cpus)
            return "cpu" if same else None
        if trial.host is not None and trial.host == self.host:
            return "host"
        return "any" if any_host else None


def _number(metrics: Any, key: str) -> float | None:
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _stored_eval_images(config: str) -> int | None:
    """Images an evaluation of a stored search's trials scored, read from its resolved config (for trials from
    before they recorded it): every ``proxy`` section in it (a calibration study holds one per fidelity) on a
    synthetic split, all of one count; None otherwise (a made split's count is its dataset's, not the config's)."""
    import yaml

    try:
        tree = yaml.safe_load(config) if config else None
    except yaml.YAMLError:
        return None
    counts: set[int | None] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                data = value.get("data") if key == "proxy" and isinstance(value, dict) else None
                if isinstance(data, dict):
                    n, cap = data.get("val_images"), value.get("eval_images") or 0
                    ok = data.get("kind") == "synth" and isinstance(n, int) and n > 0 and isinstance(cap, int)
                    counts.add((min(cap, n) if cap > 0 else n) if ok else None)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return next(iter(counts)) if len(counts) == 1 else None


def _measured(trial: Any, arch_flops: Callable[[], int | None], config_eval_images: int | None
              ) -> MeasuredTrial | None:
    """A stored trial (`results_db.records.TrialRecord`) as a `MeasuredTrial` without its evaluations, or None when
    it is not a timed CPU training (a surrogate's, a GPU's or mixed precision's, one without FLOPs)."""
    m = trial.metrics
    if any(_number(m, k) is None for k in _TIMINGS) or (_number(m, "gpus") or 0.0) > 0:
        return None
    if trial.precision not in (None, "float32") or not trial.wall_s or trial.wall_s <= 0:
        return None
    step_s, images_per_s = _number(m, "step_s"), _number(m, "images_per_s")
    steps = _number(m, "steps")
    if not step_s or not images_per_s or not steps or step_s <= 0 or images_per_s <= 0:
        return None
    rate = _number(m, "gflops_per_s")
    flops = round(rate * 1e9 / (6.0 * images_per_s)) if rate else arch_flops()  # the trial's own, at its image size
    if not flops or flops <= 0:
        return None
    model_id, cpus, images = _number(m, "cpu_model_id"), _number(m, "cpus"), _number(m, "eval_images")
    worker_trial = _number(m, "worker_trial")
    return MeasuredTrial(
        trial_id=trial.id, host=trial.host, cpu_model_id=None if model_id is None else int(model_id),
        cpus=None if cpus is None else int(cpus), flops=int(flops), batch_size=max(1, round(images_per_s * step_s)),
        steps=int(steps), step_s=step_s,
        setup_s=(_number(m, "import_s") or 0.0) + _number(m, "build_s") + _number(m, "trace_s"),
        warm=worker_trial is not None and worker_trial > 1, eval_s=(),
        eval_images=int(images) if images else config_eval_images, wall_s=float(trial.wall_s),
    )  # fmt: skip


def read_measured_trials(reader: Any, *, kind: CpuKind | None = None, any_host: bool = False,
                         newest: int | None = None) -> list[MeasuredTrial]:
    """The timed CPU trainings a results database holds (completed and pruned RetinaNet trials), oldest first.

    Args:
      reader: a `results_db` reader (`ResultReader` or `ResultStore`).
      kind: only trials of this kind (`CpuKind.match`); None: every one.
      any_host: with `kind`, also the trials that record no CPU, whatever their host.
      newest: only the newest this many (by trial id).
    """
    archs: dict[str, int | None] = {}

    def arch_flops(key: str) -> int | None:  # an arch's stored FLOPs, for a trial without its own FLOP rate
        if key not in archs:
            try:
                archs[key] = reader.find_arch(key).flops
            except LookupError:
                archs[key] = None
        return archs[key]

    found: list[MeasuredTrial] = []
    for search in reader.list_searches():
        images = _stored_eval_images(search.config)
        for t in reader.trials(search.name, status=_TRAINED_STATUSES):
            m = _measured(t, lambda key=t.arch_key: arch_flops(key), images)
            if m is not None and (kind is None or kind.match(m, any_host=any_host)):
                found.append(m)
    found.sort(key=lambda m: m.trial_id)
    if newest is not None:
        found = found[-newest:] if newest > 0 else []
    curves = reader.reports([m.trial_id for m in found])
    out = []
    for m in found:
        curve = curves[m.trial_id]
        elapsed = [_number(r.metrics, "elapsed_s") for r in curve]
        out.append(dataclasses.replace(
            m, eval_s=tuple(float(r.metrics["eval_s"]) for r in curve if _number(r.metrics, "eval_s") is not None),
            reported_s=next((e for e in reversed(elapsed) if e is not None), None)))
    return out


@dataclasses.dataclass(frozen=True)
class StoredFit:
    """`fit_measured`'s answer: the constants, and what they came from.

    Attributes:
      device: the fitted CPU constants (`Device`), of a fresh worker's trial as the model predicts.
      trials: trials fitted.
      steps: 'line' (overhead and rate fitted from the trials: their work a step spans `LINE_SPAN`) or 'scaled'
        (the committed line times `speed`).
      speed: the trials' median measured step over the committed model's (1.1: 10% slower).
      setup_trials: fresh workers' trials the setup is the median of (0: the committed setup).
      eval_trials: trials of two or more evaluations the evaluation constants come from (0: the committed ones).
      warm_device: the same constants with a warm worker's setup and first evaluation (the process had imported,
        built and parsed the validation split for an earlier trial), when warm trials were fitted; else None.
    """

    device: Device
    trials: int
    steps: str
    speed: float
    setup_trials: int
    eval_trials: int
    warm_device: Device | None = None

    def device_for(self, trial: MeasuredTrial) -> Device:
        """The constants that predict `trial`: `warm_device` for a warm worker's trial where there is one."""
        return self.warm_device if trial.warm and self.warm_device is not None else self.device


def _evaluations(trials: Sequence[MeasuredTrial], *, flops: int, rate: float) -> tuple[int, float, float, int]:
    """(images, a first evaluation's seconds, a later one's, trials they come from) as `fit_cpu` takes them at
    `flops` and `rate`: the medians, over `trials` of two or more evaluations and a known image count, of a later
    evaluation's seconds an image beyond its own forward passes (plus those of `flops` at `rate`, times the median
    count) and of a first one's extra seconds over a later one's. (1, 0, 0, 0) for no such trial."""
    import statistics

    evaluated = [t for t in trials if len(t.eval_s) >= 2 and t.eval_images]
    if not evaluated:
        return 1, 0.0, 0.0, 0
    later = {t.trial_id: statistics.median(t.eval_s[1:]) for t in evaluated}
    images = round(statistics.median(t.eval_images for t in evaluated))
    host = statistics.median(later[t.trial_id] / t.eval_images - 2.0 * t.flops / rate for t in evaluated)
    later_s = images * (host + 2.0 * flops / rate)
    first_s = later_s + statistics.median(t.eval_s[0] - later[t.trial_id] for t in evaluated)
    return images, first_s, later_s, len(evaluated)


def fit_measured(trials: Sequence[MeasuredTrial], *, source: str, base: Device = CPU) -> StoredFit:
    """CPU constants from stored trials, by `fit_cpu`, where the trials cannot say something `base`'s stands.

    - Steps: the points (images a step scaled to the smallest FLOPs, step seconds) when the trials' work a step
      spans `LINE_SPAN`; otherwise two points on `base`'s line scaled by the median measured-over-modelled step
      (so `fit_cpu` gives that line back: overhead and seconds an image both times the speed).
    - Setup and first evaluation: of fresh workers' trials (a warm worker's later trial paid no import and parses
      no validation split), the medians; else `base`'s. The warm trials' give `StoredFit.warm_device`.
    - Evaluations: from trials of two or more evaluations whose image count is known, the medians of a later
      evaluation's seconds an image and of a first one's extra seconds over a later one's (`_evaluations`); else
      `base`'s.

    Raises:
      ValueError: no trials.
    """
    import statistics

    if not trials:
        raise ValueError("fitting the CPU constants needs at least one measured trial, got none")
    ref = min(t.flops for t in trials)
    points = [(t.batch_size * t.flops / ref, t.step_s) for t in trials]
    xs = [x for x, _ in points]
    speed = statistics.median(t.step_s / base.step_s(flops=t.flops, batch_size=t.batch_size) for t in trials)
    line = max(xs) / min(xs) >= LINE_SPAN
    if not line:
        points = [(b, speed * base.step_s(flops=ref, batch_size=b)) for b in (1, 16)]
    fresh = [t for t in trials if not t.warm]
    warm = [t for t in trials if t.warm]
    rate = 6.0 * ref / fit_steps(points)[1]  # what `fit_cpu` makes of the points
    images, first_s, later_s, evaluated = _evaluations(trials, flops=ref, rate=rate)
    fitted = fit_cpu(flops=ref, batch_size=trials[0].batch_size, step_points=points,
                     setup_s=statistics.median(t.setup_s for t in fresh) if fresh else base.setup_s,
                     first_eval_s=first_s, later_eval_s=later_s, eval_images=images, source=source)
    fitted = dataclasses.replace(fitted, label="this machine's CPU (fitted on its trials)")
    if not evaluated:
        fitted = dataclasses.replace(fitted, first_eval_s=base.first_eval_s,
                                     host_s_per_eval_image=base.host_s_per_eval_image)

    def first_extra(group: Sequence[MeasuredTrial], default: float) -> float:
        _, first, later, n = _evaluations(group, flops=ref, rate=rate)
        return max(0.0, first - later) if n else default

    device = dataclasses.replace(fitted, first_eval_s=first_extra(fresh, fitted.first_eval_s))
    warm_device = None
    if warm:
        warm_device = dataclasses.replace(device, setup_s=statistics.median(t.setup_s for t in warm),
                                          first_eval_s=first_extra(warm, device.first_eval_s))
    return StoredFit(device=device, trials=len(trials), steps="line" if line else "scaled", speed=speed,
                     setup_trials=len(fresh), eval_trials=evaluated, warm_device=warm_device)


def predict_measured(device: Device, trial: MeasuredTrial) -> TrialCost:
    """`predict` for a stored trial: its FLOPs, batch, steps and evaluations on `device`.

    Raises:
      ValueError: the trial's evaluated image count is unknown.
    """
    if trial.eval_images is None:
        raise ValueError(f"trial {trial.trial_id} does not record how many images its evaluations scored")
    return predict(device, flops=trial.flops, batch_size=trial.batch_size, train_steps=trial.steps,
                   eval_images=trial.eval_images, evaluations=len(trial.eval_s))


__all__ = ["CPU", "DEVICES", "LINE_SPAN", "MAX_FIT_TRIALS", "MIN_FIT_TRIALS", "CpuKind", "Device", "GPU_UTILIZATION",
           "MeasuredTrial", "StoredFit", "TrialCost", "VERTEX_512", "fit_cpu", "fit_measured", "fit_steps",
           "precision_on", "predict", "predict_measured", "proxy_trial_cost", "read_measured_trials",
           "relative_error"]

#!/usr/bin/env python
"""Where a demo training step's time goes, part by part, against the time its FLOPs take at the fitted rate.

One fresh process builds a demo trial (Model Garden's RetinaNet task, model, optimizer and training input, as
`proxy_task.trainer` builds them) and times, after a warm-up of each, `--steps` steps of:

- ``step``: the trial's own training loop on its real input (what a trial's ``step_s`` measures);
- ``step_fixed``: the same loop on one fixed batch held in memory: the step without the input pipeline;
- ``forward_backward``: the forward pass, the loss and the gradients, without the optimizer's update;
- ``forward``: the forward pass and the loss;
- ``input``: the input pipeline alone, pulling batches and nothing else (its rate when it has the CPUs to itself);
- ``step_fixed_b1``: the fixed-batch loop at batch 1 (with the batch-8 figure: the part of a step that does not grow
  with the batch: dispatch, per-op overhead, small ops);
- with ``--xla``, ``step_fixed_xla``: one XLA-compiled step per call on the fixed batch, and its compile seconds.

From them: input's cost inside a step (step - step_fixed), the optimizer's (step_fixed - forward_backward), the
backward pass's (forward_backward - forward), and the FLOP-limited time (6 x the detector's multiply-adds x batch at
`nas.export.cost.CPU`'s fitted rate, without its overhead): the issue's target is a step within 1.3x of it.
`--trace DIR` also writes a TensorFlow profiler trace of 10 real steps there (open it with TensorBoard's profile
plugin where one is installed).

    python scripts/bench/step_parts.py [--steps 40] [--rounds 3] [--set proxy.KEY=VALUE ...] [--env NAME=VALUE ...]
        [--xla] [--trace DIR] [--note TEXT] [--out FILE]

Writes scripts/bench/results/step_parts.json (machine, commit, command) and prints the table. The process takes the
shared CPU lock; time it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from scripts.bench.common import LOCK, machine, provenance, versions  # noqa: E402

RESULTS = os.path.join(ROOT, "scripts", "bench", "results", "step_parts.json")


def child(steps: int, rounds: int, trace_dir: str, overrides: list[str], xla: bool = False) -> None:
    """The measuring process (`--child`): prints one JSON line of per-step seconds and facts. A file of its own,
    not ``python -c``: AutoGraph converts the loops below from their source."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nas.config.codec import resolve
    from nas.config.presets import get_preset
    from nas.config.schema import NasConfig
    from proxy_task import trainer
    from proxy_task.data import ensure_dataset
    from search_space import SPINENET_49

    cfg = resolve(NasConfig, get_preset("demo"), overrides).proxy
    cfg = dataclasses.replace(cfg, threads=cfg.threads or os.cpu_count())  # a demo trial's: its 2 CPUs
    trainer.configure_tensorflow(cfg)
    import tensorflow as tf

    dataset = ensure_dataset(cfg.data)
    parts = trainer._build_trial(SPINENET_49.canonical(), cfg, dataset)
    task, model, optimizer, metrics = parts.task, parts.model, parts.optimizer, parts.train_metrics
    flops = trainer.count_flops(model, cfg.image_size)

    @tf.function
    def train_loop(iterator, n):
        losses = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            logs = task.train_step(next(iterator), model, optimizer, metrics=metrics)
            losses = losses.write(i, tf.cast(logs[task.loss], tf.float32))
        return losses.stack()

    def loss_of(features, labels):
        outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), model(features, training=True))
        return task.build_losses(outputs=outputs, labels=labels, aux_losses=model.losses)[0]

    @tf.function
    def forward_loop(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            features, labels = next(iterator)
            total += loss_of(features, labels)
        return total

    @tf.function
    def forward_backward_loop(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            features, labels = next(iterator)
            with tf.GradientTape() as tape:
                loss = loss_of(features, labels)
            grads = tape.gradient(loss, model.trainable_variables)
            total += tf.linalg.global_norm(grads)
        return total

    @tf.function
    def input_loop(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            features, _ = next(iterator)
            total += tf.reduce_sum(tf.cast(features[:1, :1, :1, :1], tf.float32))
        return total

    @tf.function(jit_compile=True)
    def xla_step(features, labels):
        return task.train_step((features, labels), model, optimizer, metrics=None)[task.loss]

    def xla_loop(iterator, n):
        total = 0.0
        for _ in range(int(n)):
            total += float(xla_step(*next(iterator)))
        return tf.constant(total)

    batch = next(parts.train_iter)
    fixed = iter(tf.data.Dataset.from_tensors(batch).repeat())
    fixed_b1 = iter(tf.data.Dataset.from_tensors(tf.nest.map_structure(lambda t: t[:1], batch)).repeat())
    runs = {"step": (train_loop, parts.train_iter), "step_fixed": (train_loop, fixed),
            "forward_backward": (forward_backward_loop, fixed), "forward": (forward_loop, fixed),
            "input": (input_loop, parts.train_iter), "step_fixed_b1": (train_loop, fixed_b1)}
    if xla:  # one XLA-compiled step per call on the fixed batch (its compile is timed apart)
        t0 = time.perf_counter()
        xla_loop(fixed, 1)
        compile_s = time.perf_counter() - t0
        runs["step_fixed_xla"] = (xla_loop, fixed)
    times: dict[str, list[float]] = {name: [] for name in runs}
    n = tf.constant(steps, tf.int32)
    for fn, it in runs.values():  # traces and warms each one
        fn(it, tf.constant(2, tf.int32)).numpy()
    for _ in range(rounds):  # the parts interleaved, so a slow spell of the machine touches them all
        for name, (fn, it) in runs.items():
            t0 = time.perf_counter()
            fn(it, n).numpy()
            times[name].append((time.perf_counter() - t0) / steps)
    if trace_dir:
        tf.profiler.experimental.start(trace_dir)
        train_loop(parts.train_iter, tf.constant(10, tf.int32)).numpy()
        tf.profiler.experimental.stop()
    print(json.dumps({"flops": flops, "batch_size": cfg.batch_size, "image_size": cfg.image_size,
                      "threads": cfg.threads, "seconds": times, "xla_compile_s": compile_s if xla else None,
                      "median": {k: statistics.median(v) for k, v in times.items()}}), flush=True)


def analyse(row: dict) -> dict:
    """The parts of a step and its ratio to the FLOP-limited time."""
    from nas.export.cost import CPU

    m = row["median"]
    flop_s = 6.0 * row["flops"] * row["batch_size"] / CPU.rate("float32")
    return {
        "step_s": m["step"],
        "flop_limited_s": flop_s,
        "step_over_flops": m["step"] / flop_s,
        "input_in_step_s": m["step"] - m["step_fixed"],
        "optimizer_s": m["step_fixed"] - m["forward_backward"],
        "backward_s": m["forward_backward"] - m["forward"],
        "forward_s": m["forward"],
        "input_alone_s": m["input"],
        "batch1_step_s": m["step_fixed_b1"],
        "xla_step_s": m.get("step_fixed_xla"),
        "xla_compile_s": row.get("xla_compile_s"),
        "rate_used": CPU.rate("float32"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps timed per part and round (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all parts, medians taken (default 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override of the demo preset, e.g. proxy.batch_size=16 (repeatable)")
    parser.add_argument("--trace", default="", metavar="DIR", help="also write a profiler trace of 10 steps here")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the measuring process, e.g. TF_ENABLE_ONEDNN_OPTS=0")
    parser.add_argument("--xla", action="store_true",
                        help="also time the step XLA-compiled (jit_compile) on the fixed batch, and its compile")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran meanwhile)")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*json.loads(args.child))
        return 0
    if args.steps < 5 or args.rounds < 1:
        parser.error("--steps must be at least 5 and --rounds at least 1")
    if any("=" not in item for item in args.env):
        parser.error("--env expects NAME=VALUE")
    doc: dict = {**provenance(__file__, argv), "note": args.note, "steps": args.steps, "rounds": args.rounds,
                 "overrides": args.set, "env": args.env, "machine": machine(**versions("tensorflow", "tf-models-official"))}
    env = {**os.environ, **dict(item.split("=", 1) for item in args.env)}
    proc = subprocess.run(["flock", LOCK, sys.executable, __file__, "--child", json.dumps(
        [args.steps, args.rounds, args.trace, args.set, args.xla])], capture_output=True, text=True, cwd=ROOT, env=env)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not rows:
        raise SystemExit(f"the measuring process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    doc["measured"] = rows[0]
    doc["parts"] = analyse(rows[0])
    doc["machine"]["loadavg_after"] = list(os.getloadavg())
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    p = doc["parts"]
    print(f"step {p['step_s']:.3f} s = {p['step_over_flops']:.2f}x its FLOPs' {p['flop_limited_s']:.3f} s "
          f"(batch {rows[0]['batch_size']}, {rows[0]['image_size']} px, {rows[0]['threads']} threads)")
    for key in ("forward_s", "backward_s", "optimizer_s", "input_in_step_s", "input_alone_s", "batch1_step_s",
                "xla_step_s", "xla_compile_s"):
        if p[key] is not None:
            print(f"  {key:16s} {p[key]:.3f} s")
    spread = {k: (min(v), max(v)) for k, v in rows[0]["seconds"].items()}
    print("  rounds' range: " + ", ".join(f"{k} {lo:.3f}-{hi:.3f}" for k, (lo, hi) in spread.items()))
    print(f"written to {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

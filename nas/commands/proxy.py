"""`spinenas data synth|coco` and `spinenas proxy run`: the proxy task's data and one trial from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

from nas.commands.common import load_config
from nas.ui import UserError, print_table

logger = logging.getLogger(__name__)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- data
def _cmd_data_synth(args: argparse.Namespace) -> int:
    from proxy_task.data import DataError, make_synth
    from proxy_task.synth import SynthSpec

    if args.images < 2:
        raise UserError(f"--images must be at least 2, got {args.images}")
    val = args.val_images if args.val_images is not None else max(1, round(args.images * 0.13))
    spec = SynthSpec(images=args.images, val_images=val, image_size=args.size, seed=args.seed)
    t0 = time.time()
    try:
        info = make_synth(args.out, spec, force=args.force, progress=_progress)
    except DataError as e:
        raise UserError(str(e)) from None
    _print_dataset(info, time.time() - t0, args.json)
    return 0


def _cmd_data_coco(args: argparse.Namespace) -> int:
    from proxy_task.data import DataError, carve_coco

    t0 = time.time()
    try:
        info = carve_coco(
            args.coco_dir,
            args.out,
            val_images=args.val_images,
            train_images=args.train_images,
            seed=args.seed,
            force=args.force,
            verify_images=args.verify_images,
            skip_bad_images=args.skip_bad_images,
            progress=_progress,
        )
    except DataError as e:
        raise UserError(str(e)) from None
    _print_dataset(info, time.time() - t0, args.json)
    return 0


def _print_dataset(info: Any, seconds: float, as_json: bool) -> None:
    import dataclasses

    if as_json:
        print(json.dumps({**dataclasses.asdict(info), "seconds": round(seconds, 1)}, indent=2))
        return
    print(f"dataset ready in {info.root} ({seconds:.0f} s)")
    print(f"  proxy-train: {info.train_images} images   proxy-val: {info.val_images} images   "
          f"num_classes: {info.num_classes}")
    if info.skipped_images:
        print(f"  skipped {info.skipped_images} bad image{'s' if info.skipped_images > 1 else ''} and their "
              f"annotations (listed in {info.root}/dataset.json)")
    print(f"  use it with: --set proxy.data.kind=dir --set proxy.data.path={info.root}")


# ---------------------------------------------------------------------------------------------------- proxy
def _cmd_proxy_run(args: argparse.Namespace) -> int:
    import dataclasses

    from nas.commands.common import load_arch_or_exit

    arch = load_arch_or_exit(args.arch)
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"proxy.train_steps={args.steps}")
        if args.steps <= 30:
            overrides.append(f"proxy.warmup_steps={max(0, args.steps // 4)}")
    if args.seed is not None:
        overrides.append(f"proxy.seed={args.seed}")
    cfg = load_config(args.preset, overrides).proxy

    from proxy_task.data import DataError, ensure_dataset

    try:
        dataset = ensure_dataset(cfg.data, progress=_progress)
    except DataError as e:
        raise UserError(str(e)) from None
    if cfg.data.kind == "synth" and dataset.image_size and dataset.image_size != cfg.image_size:
        logger.warning("the dataset's images are %d px, the proxy trains at %d px", dataset.image_size,
                       cfg.image_size)

    # The trial's log on stderr; stdout stays for the result. Its per-report lines are left out: the reporter
    # below prints each report itself.
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress.addFilter(lambda record: not hasattr(record, "report_step"))
    trial_logger = logging.getLogger("proxy_task")
    trial_logger.setLevel(logging.INFO)
    trial_logger.addHandler(progress)
    trial_logger.propagate = False
    from proxy_task.trainer import result_summary, run_trial

    _progress(
        f"proxy trial of {arch.key} ({args.arch}): {cfg.train_steps} steps at {cfg.image_size} px, batch "
        f"{cfg.batch_size}, on {dataset.train_images} images; AP on {dataset.val_images} proxy-val images"
    )
    import contextlib

    # The learning curve: kept for the result, and one progress line per report.
    curve: list[dict[str, Any]] = []

    def report(step: int, metrics: Any) -> bool:
        curve.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        _progress(_curve_line(step, cfg.train_steps, metrics))
        return False

    # pycocotools prints its tables on stdout; keep stdout for the result (--json must be parseable).
    with contextlib.redirect_stdout(sys.stderr):
        result = run_trial(arch, cfg, dataset, trial_label=f"proxy {arch.key[:8]}", report=report)
    summary = result_summary(result)
    summary["key"] = arch.key
    summary["process_s"] = round(_process_age(), 1)
    summary["curve"] = curve
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        rows = [(k, _fmt(summary.get(k))) for k in (
            "ap", "ap50", "ap75", "aps", "apm", "apl", "train_loss", "params", "flops", "images_per_s",
            "gflops_per_s", "trace_s", "eval_s", "peak_rss_mb", "wall_s", "process_s", "error")]
        print_table(("metric", "value"), rows)
        evaluations = [p for p in curve if "ap" in p]
        if evaluations:
            print()
            print_table(("step", "ap", "ap50", "ap75", "loss"),
                        [(p["step"], *(_fmt(p.get(k)) for k in ("ap", "ap50", "ap75", "loss"))) for p in evaluations])
        _ = dataclasses  # keeps the import local to this command
    return 0 if result.error is None else 1


def _curve_line(step: int, steps: int, metrics: Any) -> str:
    """One report of a trial as a progress line: 'HH:MM:SS step 40/450 loss 1.2345 lr 0.00187 ... AP 0.1234'."""
    parts = [time.strftime("%H:%M:%S"), f"step {step}/{steps}"]
    if "loss" in metrics:
        parts.append(f"loss {metrics['loss']:.4f}")
    if "learning_rate" in metrics:
        parts.append(f"lr {metrics['learning_rate']:.3g}")
    if "images_per_s" in metrics:
        parts.append(f"{metrics['images_per_s']:.1f} img/s")
    if "ap" in metrics:
        parts.append(f"AP {metrics['ap']:.4f} AP50 {metrics.get('ap50', float('nan')):.4f}")
    return "  ".join(parts)


def _process_age() -> float:
    """Seconds since this process started (interpreter start included)."""
    try:
        import psutil

        return time.time() - psutil.Process(os.getpid()).create_time()
    except Exception:  # noqa: BLE001 - a nicety, never a failure
        return float("nan")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# ---------------------------------------------------------------------------------------------------- parsers
def register(sub: Any) -> None:
    """Adds `data` and `proxy` to the `spinenas` subcommands."""
    p = sub.add_parser("data", help="make the proxy task's datasets", description="Make a proxy dataset: COCO-"
                       "format annotations, TFRecords written by Model Garden's converter, and a manifest.")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(p), required=True)

    q = data_sub.add_parser(
        "synth",
        help="the embedded synthetic dataset (deterministic shapes in COCO format)",
        description="Draw the embedded synthetic detection dataset: four shape categories at many scales on "
        "textured backgrounds with unannotated clutter, boxes and polygon masks, split into proxy-train and "
        "proxy-val and converted with Model Garden's converter. The same seed gives byte-identical files. "
        "The demo preset makes this itself (cached under ~/.cache/spinenet-nas/data, or $SPINENAS_DATA).",
    )
    q.add_argument("--out", required=True, help="folder to write (must be empty or missing unless --force)")
    q.add_argument("--images", type=int, default=2300, help="images in all (default 2300)")
    q.add_argument("--val-images", type=int, default=None, help="images held out for proxy-val (default 13%%)")
    q.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    q.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    q.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    q.add_argument("--json", action="store_true", help="print the dataset summary as JSON")
    q.set_defaults(func=_cmd_data_synth)

    q = data_sub.add_parser(
        "coco",
        help="carve the paper's proxy split out of COCO train2017",
        description="Carve a deterministic proxy split out of COCO train2017 (the paper held out 7,392 images "
        "for the reward), write its annotation files and convert it with Model Garden's converter. Expects "
        "DIR/train2017/ and DIR/annotations/instances_train2017.json. Every image of the split is checked before "
        "anything is written: a non-empty JPEG (FF D8 ... FF D9) or PNG (signature ... IEND chunk), NUL padding "
        "after the end marker allowed; --verify-images also decodes each one. A bad image is an error naming the "
        "file, unless --skip-bad-images leaves it and its annotations out (the split is drawn first, so a split "
        "is smaller by the images skipped from it; the summary counts them and dataset.json lists them).",
    )
    q.add_argument("--coco-dir", required=True, help="the COCO folder")
    q.add_argument("--out", required=True, help="folder to write (must be empty or missing unless --force)")
    q.add_argument("--val-images", type=int, default=7392, help="proxy-val images (default 7392, as the paper)")
    q.add_argument("--train-images", type=int, default=0, help="proxy-train images (default 0: all the rest)")
    q.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    q.add_argument("--verify-images", action="store_true",
                   help="decode every image of the split with Pillow (slower) instead of checking its size, format "
                        "and end marker only")
    q.add_argument("--skip-bad-images", action="store_true",
                   help="leave bad images and their annotations out (counted in the summary) instead of stopping")
    q.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    q.add_argument("--json", action="store_true", help="print the dataset summary as JSON")
    q.set_defaults(func=_cmd_data_coco)

    p = sub.add_parser("proxy", help="run the proxy task", description="Run the proxy task.")
    proxy_sub = p.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND", parser_class=type(p), required=True)
    q = proxy_sub.add_parser(
        "run",
        help="train and score one architecture (one search trial)",
        description="Train one architecture with the proxy task (a scaled-down SpineNet in Model Garden's "
        "RetinaNet) and score it with COCO AP on proxy-val: exactly what one search trial does. With the demo "
        "preset and no data prepared, the embedded synthetic dataset is made first (cached). Exit code 1 when "
        "the trial fails (NaN loss, divergence, a build error); the reason is in 'error'.",
    )
    q.add_argument("--arch", required=True, help="'spinenet-49' or a JSON spec file")
    q.add_argument("--preset", default="demo", help="demo (default), paper, vertex-gpu, or a YAML file")
    q.add_argument("--steps", type=int, default=None, help="training steps (overrides proxy.train_steps)")
    q.add_argument("--seed", type=int, default=None, help="training seed (overrides proxy.seed)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set proxy.learning_rate=0.001 (repeatable)")
    q.add_argument("--json", action="store_true", help="print the result as one JSON object")
    q.set_defaults(func=_cmd_proxy_run)

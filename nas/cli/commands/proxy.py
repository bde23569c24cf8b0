"""`spinenas data synth|coco`, `spinenas proxy run` and `proxy cost`: the proxy task's data, one trial from the shell,
and what trials cost."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

from nas.cli.commands.common import load_config
from nas.cli.ui import UserError, print_table, printable

logger = logging.getLogger(__name__)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- data
def _cmd_data_synth(args: argparse.Namespace) -> int:
    from proxy_task.data import DataError, make_synth
    from proxy_task.synth import SynthSpec

    from proxy_task.config import MAX_IMAGE_SIZE, MAX_SYNTH_IMAGES

    if not 2 <= args.images <= MAX_SYNTH_IMAGES:
        raise UserError(f"--images must be between 2 and {MAX_SYNTH_IMAGES:,}, got {args.images}")
    if args.size > MAX_IMAGE_SIZE:
        raise UserError(f"--size must be at most {MAX_IMAGE_SIZE} pixels, got {args.size}")
    _check_seed(args.seed)
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

    _check_seed(args.seed)
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


def _check_seed(seed: int) -> None:
    """A --seed in the range every seed of the project takes (`proxy_task.config.MAX_SEED`)."""
    from proxy_task.config import MAX_SEED

    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be an integer in [0, {MAX_SEED}], got {seed}")


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

    from nas.cli.commands.common import load_arch_or_exit

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


def cost_rows(cfg: Any, devices: list[str], *, arch: Any, gpus: int = 1, cpu: Any = None) -> list[dict[str, Any]]:
    """`spinenas proxy cost`'s rows: one trial of `cfg`'s proxy on each device, and its search's device-hours; the
    CPU row from `cpu` (a `nas.export.cost.Device`) when given, else from the committed fit."""
    from nas.config.schema import trial_proxy
    from nas.export.cost import DEVICES, proxy_trial_cost
    from proxy_task.data import DataError, load_dataset, num_classes_of

    proxy = trial_proxy(cfg)  # with the scheduler's rungs as evaluations, as the trials run
    try:
        flops = proxy.cost(arch, num_classes_of(proxy.data)).flops
    except ValueError as e:  # a stem the builder does not build
        raise UserError(str(e)) from None
    val_images = proxy.data.val_images
    if proxy.data.kind != "synth":
        try:  # a made split's own count, when it exists here
            val_images = load_dataset(proxy.data.path).val_images
        except DataError:
            pass
    # GPUs a trial holds (a share below 1 counts as that share; its time still assumes the whole GPU).
    per_trial = gpus if gpus > 1 else (cfg.search.gpus_per_trial or 1.0)
    rows = []
    for name in devices:
        device = cpu if name == "cpu" and cpu is not None else DEVICES[name]
        c = proxy_trial_cost(proxy, device, flops=flops, eval_images=val_images, gpus=gpus)
        trial_h = c.total_s / 3600.0
        rows.append({
            "device": name, "label": device.label, "measured": device.measured, "source": device.source,
            "precision": c.precision, "gpus": gpus, "flops": flops, "image_size": proxy.image_size,
            "batch_size": proxy.batch_size, "train_steps": proxy.train_steps,
            "setup_s": c.setup_s, "train_s": c.train_s, "eval_s": c.eval_s, "trial_s": c.total_s,
            "trial_hours": trial_h, "trials": cfg.search.trials,
            # CPU rows: machine-hours of this 2-core machine; GPU rows: GPU-hours.
            "search_device_hours": trial_h * cfg.search.trials * (1.0 if name == "cpu" else per_trial),
            "search_wall_hours": trial_h * cfg.search.trials / max(1, cfg.search.workers),
        })
    return rows


def _cmd_proxy_cost(args: argparse.Namespace) -> int:
    from nas.cli.commands.common import load_arch_or_exit
    from nas.export.cost import DEVICES

    if args.gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {args.gpus}")
    devices = list(DEVICES) if args.device == "all" else [args.device]
    arch = load_arch_or_exit(args.arch)
    cfg = load_config(args.preset, list(args.set or []))
    cpu, fit = _stored_cpu(args.db, any_host=args.any_host) if "cpu" in devices else (None, None)
    rows = cost_rows(cfg, devices, arch=arch, gpus=args.gpus, cpu=cpu)
    for r in rows:
        if r["device"] == "cpu":
            r["fit"] = fit
    if args.json:
        print(json.dumps({"preset": args.preset, "arch": arch.key, "rows": rows}, indent=2))
        return 0
    r0 = rows[0]
    print(f"a trial of preset {args.preset} ({args.arch}, {r0['flops'] / 1e9:.2f} G multiply-adds per image at "
          f"{r0['image_size']} px): {r0['train_steps']:,} steps of batch {r0['batch_size']}, "
          f"{cfg.search.trials:,} trials on {cfg.search.workers} worker{'s' if cfg.search.workers != 1 else ''}")
    table = [(r["device"], r["precision"], f"{r['setup_s']:.0f}", f"{r['train_s']:,.0f}", f"{r['eval_s']:,.0f}",
              _hours(r["trial_hours"]), _count(r["search_device_hours"]), _hours(r["search_wall_hours"]),
              "measured" if r["measured"] else "estimate") for r in rows]
    print_table(("device", "precision", "setup s", "train s", "eval s", "trial", "search device-h", "search wall",
                 "kind"), table)
    if fit is not None:
        cpu_row = next(r for r in rows if r["device"] == "cpu")
        why = f" ({fit['why']})" if fit.get("why") else ""
        print(f"cpu: {printable(cpu_row['source'])}{printable(why)}")
    if any(not r["measured"] for r in rows):
        from nas.export.cost import GPU_UTILIZATION

        print(f"GPU rows are estimates, never run on a GPU: published dense peaks x {GPU_UTILIZATION:.1%} (the share "
              "Vertex AI's 512-px SpineNet proxy sustained on V100s), the committed CPU fit's setup and COCO work; a "
              "lower bound (Vertex's 384-px proxy took ~9x the model's time).")
    return 0


def _stored_cpu(db: str | None, *, any_host: bool) -> tuple[Any, dict[str, Any]]:
    """The CPU constants `proxy cost` uses and what they came from: fitted on the database's newest trials of this
    machine's kind of CPU (`nas.export.cost.read_measured_trials`) when it holds `MIN_FIT_TRIALS` of them, else the
    committed fit (also when there is no database). Read-only; a database that cannot be read is a `UserError`."""
    from nas.cli.commands.common import open_reader
    from nas.export.cost import CPU, MAX_FIT_TRIALS, MIN_FIT_TRIALS, CpuKind, fit_measured, read_measured_trials
    from results_db.url import ENV_VAR, resolve_url, sqlite_path

    try:
        url = resolve_url(db)
    except ValueError as e:
        raise UserError(str(e)) from None
    shown = db if db is not None else (os.environ.get(ENV_VAR) or "runs/spinenas.db")
    kind = CpuKind.this_machine()
    info: dict[str, Any] = {"db": shown, "cpu": kind.model, "cpus": kind.cpus, "host": kind.host, "trials": 0,
                            "needed": MIN_FIT_TRIALS, "why": None}
    path = sqlite_path(url)
    if path and not os.path.exists(path):
        info["why"] = f"no database at {shown}"
        return CPU, info
    with open_reader(db) as reader:
        if path is None:  # a database server's URL: its password hidden
            shown = info["db"] = reader.display_url
        trials = read_measured_trials(reader, kind=kind, any_host=any_host, newest=MAX_FIT_TRIALS)
    by = {k: sum(1 for t in trials if kind.match(t, any_host=any_host) == k) for k in ("cpu", "host", "any")}
    info.update(trials=len(trials), matched=by)
    if len(trials) < MIN_FIT_TRIALS:
        info["why"] = (f"{len(trials)} trial{'s' if len(trials) != 1 else ''} of {kind.label} in {shown}, "
                       f"{MIN_FIT_TRIALS} needed")
        return CPU, info
    # Trials from before trials recorded their CPU are matched by their host (or taken from any, --any-host).
    unlabelled = by["host"] + by["any"]
    where = f"host {kind.host}" if not by["any"] else "any host" if not by["host"] else f"host {kind.host} or any host"
    if not unlabelled:
        what = kind.label
    elif by["cpu"]:
        what = f"{kind.label} ({unlabelled} recording no CPU model, matched by {where})"
    else:
        what = f"{where} (no CPU model recorded)"
    fit = fit_measured(trials, source=f"fitted on {len(trials)} trials of {what} in {shown}")
    info.update(steps=fit.steps, speed=fit.speed, setup_trials=fit.setup_trials, eval_trials=fit.eval_trials)
    return fit.device, info


def _count(h: float) -> str:
    return f"{h:,.1f}" if h < 100 else f"{h:,.0f}"


def _hours(h: float) -> str:
    if h >= 48:
        return f"{h / 24:,.1f} days"
    minutes = round(h * 60, 1)
    if minutes < 60:
        return f"{minutes:.1f} min"
    whole, rest = divmod(round(h * 60), 60)
    return f"{whole}h{rest:02d}m"


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

    from nas.export.cost import MIN_FIT_TRIALS as _MIN_FIT_TRIALS
    from results_db.url import DB_HELP

    q = proxy_sub.add_parser(
        "cost",
        help="predict what a preset's trials cost on a CPU or GPU (a FLOPs model; no TensorFlow)",
        description="Predict one proxy trial's seconds and a search's device-hours from the detector's FLOPs "
        "(counted from the spec): training steps (a per-step overhead plus their FLOPs at the device's sustained "
        "FLOP/s at the trial's precision, proxy.mixed_precision, 'auto' decided per device), evaluations, and the "
        "setup (import, build, trace). "
        "The CPU row is fitted on this machine's own trials when the database (--db) holds at least "
        f"{_MIN_FIT_TRIALS} timed RetinaNet trials of its kind of CPU (the same CPU model and count, recorded by "
        "each trial; a trial from before that was recorded counts when it ran on this host, or on any with "
        "--any-host): the newest ones, their step, setup and evaluations; its source then says so. Otherwise (no "
        "database, too few trials) it is the committed fit, made on SpineNet-49 at 128 px and checked on held-out "
        "architectures and sizes (scripts/bench/trial_cost.py). GPU rows are estimates from published peaks, never "
        "run here.",
    )
    q.add_argument("--preset", default="demo", help="demo (default), paper, vertex-gpu, or a YAML file")
    from nas.export.cost import DEVICES

    q.add_argument("--device", default="all", choices=["all", *DEVICES],
                   help="one device, or all of them (default)")
    q.add_argument("--arch", default="spinenet-49", help="the architecture costed (default spinenet-49; a search's "
                   "architectures differ in FLOPs by about +-6%%)")
    q.add_argument("--gpus", type=int, default=1, help="GPUs a trial would train on, at linear scaling (trials "
                   "here train on one; e.g. 2 to compare with Vertex AI's 2-V100 proxy)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set proxy.image_size=512 (repeatable)")
    q.add_argument("--db", help=DB_HELP + "; read only, and a missing one means the committed CPU fit")
    q.add_argument("--any-host", action="store_true", help="fit the CPU row also on trials that record no CPU "
                   "model (from before trials recorded it) whatever host they ran on (default: only this host's)")
    q.add_argument("--json", action="store_true", help="print the rows as JSON (the CPU row's 'fit' says what it "
                   "was fitted on)")
    q.set_defaults(func=_cmd_proxy_cost)

"""`spinenas export` (a searched spec -> Model Garden files) and `spinenas train` (Model Garden's training library)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from nas.cli.commands.common import check_output_path, writing_output
from nas.cli.ui import UserError, error_text
from results_db.status import TrialStatus

logger = logging.getLogger(__name__)


def _resolve(ref: str, db: str | None, search: str | None,
             all_fingerprints: bool = False) -> tuple[Any, dict[str, Any], str]:
    """(arch, provenance, default name) of 'best', a key or key prefix in the database, a built-in name or a file."""
    from search_space import InvalidArchError, get_named, load_arch

    if ref.endswith(".json") or os.sep in ref or os.path.exists(ref):
        try:
            arch = load_arch(ref)
        except (FileNotFoundError, InvalidArchError, LookupError) as e:
            raise UserError(error_text(e)) from None
        return arch, {"source": os.path.abspath(ref)}, os.path.splitext(os.path.basename(ref))[0]
    try:
        return get_named(ref), {"source": "Model Garden SPINENET_BLOCK_SPECS"}, ref
    except LookupError:
        pass
    from nas.cli.commands.common import describe_fingerprint, open_reader, ranking_fingerprint
    from search_space import ArchSpec

    with open_reader(db) as reader:
        if ref == "best":
            searches = [search] if search else None
            fingerprint = ranking_fingerprint(reader, searches, all_fingerprints)
            ranked = reader.top(searches=searches, k=1, fingerprint=fingerprint)
            if not ranked:
                raise UserError("no completed trial to export" + (f" in search {search!r}" if search else ""))
            print(f"best of {describe_fingerprint(reader, fingerprint)}: {ranked[0].arch_key} (reward "
                  f"{ranked[0].reward:.4f}, search {ranked[0].search})", file=sys.stderr)
            rec = reader.get_arch(ranked[0].arch_key)
        else:
            rec = reader.find_arch(ref)
        trials = [t for t in reader.arch_trials(rec.key) if t.status == TrialStatus.COMPLETED and t.reward is not None]
        provenance: dict[str, Any] = {"database": reader.display_url}
        if trials:
            best = max(trials, key=lambda t: t.reward)
            provenance.update(search=best.search, trial=best.index, reward=best.reward,
                              ap=best.metrics.get("ap"), proxy_flops=rec.flops, proxy_params=rec.params)
            try:
                from nas.config.codec import MAX_STORED_YAML_BYTES, load_yaml

                config = load_yaml(reader.open_search(best.search).config, what="the stored config",
                                   max_bytes=MAX_STORED_YAML_BYTES) or {}
                provenance["proxy"] = config.get("proxy", {})
            except Exception:  # noqa: BLE001 - provenance is a courtesy; the export does not depend on it
                pass
        return ArchSpec.from_json(rec.spec_json), provenance, f"spinenet-{rec.key[:8]}"


def _cmd_export(args: argparse.Namespace) -> int:
    from nas.export.modelgarden import SCALES, ExportError

    if args.scale not in SCALES:
        raise UserError(f"unknown scale {args.scale!r}; expected one of {', '.join(SCALES)}")
    if args.image_size is not None and (args.image_size < 128 or args.image_size % 128):
        raise UserError(f"--image-size must be a positive multiple of 128, got {args.image_size}")
    # Before the database is read and the model is built (a minute through Model Garden at full scale).
    check_output_path(args.out, "--out", directory=True)
    with writing_output(args.out, "--out", directory=True):
        if os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
            raise UserError(f"--out {args.out} is not empty (pass --force to write into it)")
    arch, provenance, default_name = _resolve(args.arch, args.db, args.search, args.all_fingerprints)
    name = args.name or default_name
    print(f"building {name} (SpineNet-{args.scale} scaling, {args.task}) through Model Garden to check it ...",
          file=sys.stderr, flush=True)
    _quiet_tensorflow()
    from nas.export.modelgarden import export_arch

    try:
        with _native_output_aside():
            summary = export_arch(arch, args.out, name=name, scale=args.scale, image_size=args.image_size,
                                  task=args.task, num_classes=args.num_classes, provenance=provenance,
                                  force=args.force)
    except ExportError as e:
        raise UserError(str(e)) from None
    if args.json:
        import dataclasses

        print(json.dumps(dataclasses.asdict(summary), indent=2))
    else:
        print(f"exported {summary.key} as {name}: SpineNet-{summary.scale} scaling at {summary.image_size} px, "
              f"{summary.params:,} params, {summary.flops / 1e9:.2f} B multiply-adds per image")
        for f in summary.files:
            print(f"  {f}")
        yaml_file = [f for f in summary.files if f.endswith(".yaml")][0]
        print(f"train it: spinenas train --config {yaml_file} --model-dir DIR --params-override "
              "'task.train_data.input_path=...,task.validation_data.input_path=...,task.annotation_file=...'")
    return 0


def _quiet_tensorflow() -> None:
    """An export builds its model on the CPU once, to check it: TensorFlow's start-up lines (no CUDA driver, oneDNN,
    CPU features) and Model Garden's deprecation warnings say nothing about it, and a real failure still arrives as
    an exception. A level the user set is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _native_output_aside() -> Iterator[None]:
    """TensorFlow's native lines (Grappler's session, absl's start-up notice), which no log level silences, go to a
    file while the model is built; when the build fails, their tail is printed, since it may say why."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as aside:
        os.dup2(aside.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            aside.seek(0)
            tail = aside.read().decode("utf-8", "replace").splitlines()[-20:]
            if tail:
                print("TensorFlow's output before the failure:", *tail, sep="\n  ", file=sys.stderr)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_EXPERIMENT_LINE = re.compile(r"^# Model Garden experiment: (\S+)")


def _cmd_train(args: argparse.Namespace) -> int:
    from nas.config.codec import ConfigError, read_yaml_file

    try:  # within bounds, before Model Garden (and TensorFlow) read it
        read_yaml_file(args.config, what="--config")
    except FileNotFoundError:
        raise UserError(f"config file not found: {args.config}") from None
    except ConfigError as e:
        raise UserError(str(e)) from None
    with open(args.config, encoding="utf-8") as fh:
        first = fh.readline()
    match = _EXPERIMENT_LINE.match(first)
    experiment = args.experiment or (match.group(1) if match else "retinanet_spinenet_nas_coco")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from proxy_task import builder  # noqa: F401 - registers the spinenet_nas backbone and experiments

    import tensorflow as tf
    from official.common import distribute_utils
    from official.core import task_factory, train_lib, train_utils
    from official.modeling import performance

    try:
        params = train_utils.parse_configuration(
            train_utils.ParseConfigOptions(experiment=experiment, config_file=[args.config],
                                           params_override=args.params_override or ""),
            print_return=False,
        )
    except (KeyError, ValueError, AttributeError, TypeError) as e:
        raise UserError(f"{args.config}: {str(e).strip(chr(34)).splitlines()[0]}") from None
    os.makedirs(args.model_dir, exist_ok=True)
    if "train" in args.mode:
        train_utils.serialize_config(params, args.model_dir)
    if params.runtime.mixed_precision_dtype:
        performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    strategy = distribute_utils.get_distribution_strategy(
        distribution_strategy=params.runtime.distribution_strategy, all_reduce_alg=params.runtime.all_reduce_alg,
        num_gpus=params.runtime.num_gpus, tpu_address=params.runtime.tpu)
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=args.model_dir)
    print(f"training {experiment} from {args.config} in {args.model_dir} ({args.mode}) with Model Garden's "
          f"train_lib", file=sys.stderr, flush=True)
    import contextlib

    # Model Garden prints its logs on stdout; keep stdout for the summary below.
    with contextlib.redirect_stdout(sys.stderr):
        _, logs = train_lib.run_experiment(distribution_strategy=strategy, task=task, mode=args.mode,
                                           params=params, model_dir=args.model_dir)
    shown = {}
    for k, v in (logs or {}).items():
        try:
            shown[k] = float(v)
        except (TypeError, ValueError):
            continue
    print(json.dumps({"model_dir": os.path.abspath(args.model_dir), "checkpoint": tf.train.latest_checkpoint(
        args.model_dir), "logs": {k: round(v, 6) for k, v in shown.items()}}, indent=2))
    return 0


def register(sub: Any) -> None:
    """Adds `export` and `train` to the `spinenas` subcommands."""
    from nas.export.modelgarden import SCALES, TASKS
    from results_db.url import DB_HELP

    p = sub.add_parser(
        "export",
        help="write a searched architecture as Model Garden experiment files",
        description="Export an architecture to TF Model Garden: NAME.spec.json (canonical spec and provenance), "
        "NAME.yaml (a Model Garden experiment config based on retinanet_spinenet_coco or maskrcnn_spinenet_coco, "
        "with the registered spinenet_nas backbone at the chosen SpineNet scale), NAME.md and NAME.png (a model "
        "card). The model is built through Model Garden from that YAML and its params and FLOPs counted before "
        "anything is written.",
    )
    p.add_argument("arch", help="'best' (the best of --search, or of the database), a key or key prefix in the "
                                "database, 'spinenet-49', or a JSON spec file")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--search", help="with 'best': the search to take it from")
    p.add_argument("--all-fingerprints", action="store_true",
                   help="with 'best': rank the results of every fingerprint together (default: only those of the "
                        "newest search's fingerprint, as `spinenas top`)")
    p.add_argument("--out", required=True, help="output folder (must be empty or missing unless --force)")
    p.add_argument("--name", help="file name stem (default spinenet-KEY8)")
    p.add_argument("--scale", default="49", help=f"SpineNet scale: {', '.join(SCALES)} (default 49)")
    p.add_argument("--image-size", type=int, help="image side (default per scale: 640 for 49S/49, 1024 for 96, "
                                                  "1280 for 143/190)")
    p.add_argument("--task", choices=TASKS, default="retinanet", help="retinanet (default) or maskrcnn")
    p.add_argument("--num-classes", type=int, help="classes of the detector (default Model Garden's COCO 91)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "train",
        help="train an exported config with Model Garden's training library",
        description="Train, evaluate and checkpoint an exported model exactly like a Model Garden experiment: "
        "registers the spinenet_nas backbone, then hands the config to official.core.train_lib.run_experiment "
        "(as official/vision/train.py does).",
    )
    p.add_argument("--config", required=True, help="the exported NAME.yaml")
    p.add_argument("--model-dir", required=True, help="checkpoints and summaries")
    p.add_argument("--mode", choices=("train", "eval", "train_and_eval"), default="train_and_eval")
    p.add_argument("--params-override", help="Model Garden overrides, e.g. 'trainer.train_steps=1000,"
                                             "task.train_data.input_path=/data/train*'")
    p.add_argument("--experiment", help="the base experiment (default: read from the YAML's first line)")
    p.set_defaults(func=_cmd_train)

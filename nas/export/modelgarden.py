"""Export a searched spec to TF Model Garden: a full-scale experiment config, checked by building it first.

`export_arch` writes, into an output folder, files a Model Garden user recognizes:

- ``NAME.spec.json``: the canonical architecture with its provenance (search, trial, reward, proxy settings);
- ``NAME.yaml``: a Model Garden experiment config (``retinanet_spinenet_nas_coco`` or
  ``maskrcnn_spinenet_nas_coco``, i.e. Model Garden's SpineNet experiments with the registered ``spinenet_nas``
  backbone) at the chosen scale (Model Garden's ``SCALING_MAP``) and image size;
- ``NAME.md`` and ``NAME.png``: a model card (spec table, diagram, params, FLOPs, the training command).

Before anything is written the model is built through Model Garden from exactly that YAML, and its parameters and
FLOPs (multiply-adds per image) are counted; if the build fails, nothing is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_space import ArchSpec

logger = logging.getLogger(__name__)

# The SpineNet family (paper 4.1): scale -> image size. Filter scale, resample alpha, block repeats and endpoint
# dimensions come from Model Garden's own `spinenet.SCALING_MAP` at export time.
SCALES: dict[str, int] = {"49S": 640, "49": 640, "96": 1024, "143": 1280, "190": 1280}
# RetinaNet heads per scale (PAPER.md): 4 shared convs of 256; 128 for 49S; 7 convs of 512 for 190.
HEADS: dict[str, tuple[int, int]] = {"49S": (4, 128), "49": (4, 256), "96": (4, 256), "143": (4, 256),
                                     "190": (7, 512)}
TASKS = ("retinanet", "maskrcnn")


class ExportError(ValueError):
    """An export that cannot be made (bad arguments, an output folder in the way, a model that does not build)."""


@dataclasses.dataclass(frozen=True)
class ExportSummary:
    """What `export_arch` wrote.

    Attributes:
      name, key: the export's name and the architecture's key.
      scale, image_size, task, experiment: the Model Garden setting.
      params: parameters of the whole detector built from the YAML.
      flops: multiply-adds per image of the backbone, decoder and head(s) at `image_size`.
      files: the files written (absolute paths).
    """

    name: str
    key: str
    scale: str
    image_size: int
    task: str
    experiment: str
    params: int
    flops: int
    num_classes: int
    files: tuple[str, ...]


def scaling(scale: str) -> dict[str, Any]:
    """Model Garden's `SCALING_MAP` entry of a scale (read, never modified)."""
    from official.vision.modeling.backbones import spinenet

    if scale not in SCALES:
        raise ExportError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    return dict(spinenet.SCALING_MAP[scale])


def build_config(arch: ArchSpec, *, scale: str = "49", image_size: int | None = None, task: str = "retinanet",
                 num_classes: int | None = None) -> Any:
    """The Model Garden experiment config of `arch` at a scale.

    Raises:
      ExportError: unknown scale or task, or an image size that is not a multiple of 128.
    """
    from proxy_task import builder

    if task not in TASKS:
        raise ExportError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    size = image_size or SCALES.get(scale, 0)
    s = scaling(scale)
    if size < 128 or size % 128:
        raise ExportError(f"--image-size must be a positive multiple of 128 (levels L3..L7), got {size}")
    exp = builder.get_experiment_config(builder.EXPERIMENT if task == "retinanet" else builder.MASKRCNN_EXPERIMENT)
    old = exp.task.model.backbone.spinenet_nas
    exp.task.model.backbone = builder.Backbone(
        type=builder.BACKBONE_TYPE,
        spinenet_nas=builder.arch_to_config(
            arch,
            filter_size_scale=s["filter_size_scale"],
            resample_alpha=s["resample_alpha"],
            block_repeats=s["block_repeats"],
            endpoints_num_filters=s["endpoints_num_filters"],
            stochastic_depth_drop_rate=old.stochastic_depth_drop_rate,
            min_level=old.min_level,
            max_level=old.max_level,
        ),
    )
    override: dict[str, Any] = {"model": {"input_size": [size, size, 3]}}
    if num_classes:
        override["model"]["num_classes"] = num_classes
    if task == "retinanet":
        convs, filters = HEADS[scale]
        override["model"]["head"] = {"num_convs": convs, "num_filters": filters}
    exp.override({"task": override}, is_strict=True)
    exp.validate()
    return exp


def measure(exp: Any) -> tuple[int, int]:
    """Builds the model of an experiment config with Model Garden and counts (params, multiply-adds per image)."""
    import tensorflow as tf
    import tf_keras
    from official.core import task_factory, train_utils

    task = task_factory.get_task(exp.task)
    model = task.build_model()
    size = exp.task.model.input_size[0]
    images = tf.zeros([1, size, size, 3])
    if hasattr(model, "head"):  # RetinaNet: the head is built lazily
        model(images, training=True)
        params = int(model.count_params())
        inputs = tf_keras.Input(shape=[size, size, 3], batch_size=1)
        features = model.backbone(inputs)
        features = model.decoder(features) if model.decoder is not None else features
        outputs = tf.nest.flatten(model.head(features))
    else:  # Mask R-CNN: count the whole model; FLOPs of backbone, decoder and RPN head
        image_shape = tf.constant([[size, size]], tf.float32)
        anchors = None
        try:
            from official.vision.ops import anchor

            anchors = anchor.Anchor(min_level=exp.task.model.min_level, max_level=exp.task.model.max_level,
                                    num_scales=exp.task.model.anchor.num_scales,
                                    aspect_ratios=exp.task.model.anchor.aspect_ratios,
                                    anchor_size=exp.task.model.anchor.anchor_size,
                                    image_size=(size, size)).multilevel_boxes
            anchors = {k: tf.expand_dims(v, 0) for k, v in anchors.items()}
        except Exception:  # noqa: BLE001 - the params count below does not need the anchors
            anchors = None
        model(images, image_shape, anchors, training=False)
        params = int(model.count_params())
        inputs = tf_keras.Input(shape=[size, size, 3], batch_size=1)
        features = model.backbone(inputs)
        features = model.decoder(features) if model.decoder is not None else features
        outputs = tf.nest.flatten(model.rpn_head(features))
    wrapper = tf_keras.Model(inputs=inputs, outputs=outputs)
    ops = train_utils.try_count_flops(wrapper)
    return params, int(ops // 2) if ops else 0


def _card(name: str, arch: ArchSpec, summary: ExportSummary, provenance: Mapping[str, Any], yaml_name: str,
          png_name: str) -> str:
    lines = [
        f"# {name}: a searched SpineNet ({summary.scale}) for Model Garden",
        "",
        f"Architecture key `{arch.key}`; exported {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        "by spinenet-nas.",
        "",
        f"![{name}]({png_name})",
        "",
        "| | |",
        "|---|---|",
        f"| task | {summary.task} (`{summary.experiment}`) |",
        f"| scale | SpineNet-{summary.scale} scaling (Model Garden `SCALING_MAP`) |",
        f"| image size | {summary.image_size} x {summary.image_size} |",
        f"| classes | {summary.num_classes} |",
        f"| parameters | {summary.params:,} |",
        f"| FLOPs | {summary.flops / 1e9:.2f} B multiply-adds per image (backbone, decoder, head) |",
    ]
    if provenance:
        lines += ["", "## Provenance", ""]
        for k, v in provenance.items():
            if k != "proxy":
                lines.append(f"- {k}: {v}")
        if provenance.get("proxy"):
            lines.append(f"- proxy task: `{json.dumps(provenance['proxy'], sort_keys=True)}`")
    lines += ["", "## Blocks", "", "Offsets index [stem candidates, block 0, block 1, ...] as in Model Garden's "
              "`SPINENET_BLOCK_SPECS`.", "", "| offset | level | block_fn | inputs | output |", "|---|---|---|---|---|"]
    m = arch.num_stem_candidates
    for j, lvl in enumerate(arch.stem_levels):
        lines.append(f"| {j} | L{lvl} | bottleneck (stem) | - | |")
    for i, b in enumerate(arch.blocks):
        lines.append(f"| {m + i} | L{b.level} | {b.block_fn} | {b.input_offsets[0]}, {b.input_offsets[1]} | "
                     f"{'yes' if b.is_output else ''} |")
    lines += [
        "",
        "## Train it",
        "",
        "Point the config at your COCO TFRecords (Model Garden's `create_coco_tf_record` output) and train with "
        "Model Garden's training library:",
        "",
        "```bash",
        f"spinenas train --config {yaml_name} --model-dir /tmp/{name} --mode train_and_eval \\",
        "  --params-override 'task.train_data.input_path=/data/coco/train*,"
        "task.validation_data.input_path=/data/coco/val*,task.annotation_file=/data/coco/instances_val2017.json'",
        "```",
        "",
        "`spinenas train` registers the `spinenet_nas` backbone and runs `official.core.train_lib.run_experiment`, "
        "exactly as Model Garden's `official/vision/train.py` does for its own experiments.",
        "",
    ]
    return "\n".join(lines)


def export_arch(
    arch: ArchSpec,
    out: str,
    *,
    name: str,
    scale: str = "49",
    image_size: int | None = None,
    task: str = "retinanet",
    num_classes: int | None = None,
    provenance: Mapping[str, Any] | None = None,
    force: bool = False,
) -> ExportSummary:
    """Writes the export files of `arch` into `out` (see the module docstring).

    Raises:
      ExportError: a bad argument, an output folder that is not empty (without `force`) or not writable, or a
        model that Model Garden cannot build; nothing is written then.
    """
    staging_dir, names = _output_plan(out, name=name, force=force)
    arch = arch.canonical()
    experiment, text = _experiment_yaml(arch, scale=scale, image_size=image_size, task=task, num_classes=num_classes)
    check, params, flops = _build_from_yaml(text, task)
    size = check.task.model.input_size[0]
    summary = ExportSummary(name=name, key=arch.key, scale=scale, image_size=size, task=task, experiment=experiment,
                            params=params, flops=flops, num_classes=check.task.model.num_classes, files=())
    files = _write_export(arch, out, staging_dir, names, text, summary, provenance)
    return dataclasses.replace(summary, files=tuple(files))


def _output_plan(out: str, *, name: str, force: bool) -> tuple[str, dict[str, str]]:
    """The folder to stage the files in and the file names (by kind), once `name` and `out` are checked.

    Raises:
      ExportError: a name that is not a plain file name; an output folder that is a file, not empty (without
        `force`), not writable, or holds a folder where a file is to go.
    """
    if not name or os.sep in name or name.startswith("."):
        raise ExportError(f"--name must be a plain file name, got {name!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"--out {out} exists and is not a folder")
    try:
        full = os.path.isdir(out) and bool(os.listdir(out))
    except OSError as e:
        raise ExportError(f"cannot write --out {out}: {e.strerror}") from None
    if full and not force:
        raise ExportError(f"--out {out} is not empty (pass --force to write into it)")
    parent = os.path.dirname(os.path.abspath(out))
    # The files are staged where they will be moved to (inside `out` when it exists), so every move is a rename.
    staging_dir = out if os.path.isdir(out) else parent
    if not os.path.isdir(staging_dir):
        raise ExportError(f"cannot write --out {out}: {parent}: No such file or directory")
    if not os.access(staging_dir, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write --out {out}: {staging_dir}: Permission denied")
    names = {"spec": f"{name}.spec.json", "yaml": f"{name}.yaml", "md": f"{name}.md", "png": f"{name}.png"}
    for fname in names.values():
        if os.path.isdir(os.path.join(out, fname)):
            raise ExportError(f"cannot write --out {out}: {os.path.join(out, fname)} is a directory")
    return staging_dir, names


def _experiment_yaml(arch: ArchSpec, *, scale: str, image_size: int | None, task: str,
                     num_classes: int | None) -> tuple[str, str]:
    """The Model Garden experiment's name and the YAML text of its config (`build_config`), as written."""
    import yaml

    exp = build_config(arch, scale=scale, image_size=image_size, task=task, num_classes=num_classes)
    experiment = "retinanet_spinenet_nas_coco" if task == "retinanet" else "maskrcnn_spinenet_nas_coco"
    text = f"# Model Garden experiment: {experiment} (train with: spinenas train --config THIS_FILE ...)\n"
    text += yaml.safe_dump(exp.as_dict(), sort_keys=False, default_flow_style=None)
    return experiment, text


def _build_from_yaml(text: str, task: str) -> tuple[Any, int, int]:
    """The experiment config read back from exactly the YAML that will be written, and its model's params and
    FLOPs (`measure`).

    Raises:
      ExportError: Model Garden cannot build the model.
    """
    import yaml

    from proxy_task import builder

    check = builder.get_experiment_config(builder.EXPERIMENT if task == "retinanet" else builder.MASKRCNN_EXPERIMENT)
    check.override(yaml.safe_load(text), is_strict=True)
    check.validate()
    try:
        params, flops = measure(check)
    except Exception as e:  # noqa: BLE001 - the reason goes to the user in one line; nothing is written
        raise ExportError(f"Model Garden could not build the model: {type(e).__name__}: {str(e).splitlines()[0]}")
    return check, params, flops


def _write_export(arch: ArchSpec, out: str, staging_dir: str, names: Mapping[str, str], text: str,
                  summary: ExportSummary, provenance: Mapping[str, Any] | None) -> list[str]:
    """Writes the files in a staging folder, then moves each into `out`; returns their absolute paths.

    Raises:
      ExportError: a write or a move failed (a full disk, a folder changed under us); what this export added is
        taken back (files it replaced under --force stay replaced).
    """
    made_out = not os.path.isdir(out)
    staging = None
    moved: list[str] = []  # files of this export that did not exist before
    try:
        staging = tempfile.mkdtemp(prefix=".spinenas-export-", dir=staging_dir)
        _write_staged(staging, arch, names, text, summary, provenance)
        os.makedirs(out, exist_ok=True)
        files = []
        for fname in names.values():
            target = os.path.join(out, fname)
            existed = os.path.lexists(target)
            os.replace(os.path.join(staging, fname), target)
            if not existed:
                moved.append(target)
            files.append(os.path.abspath(target))
    except OSError as e:
        for target in moved:
            with contextlib.suppress(OSError):
                os.remove(target)
        if made_out:
            with contextlib.suppress(OSError):
                os.rmdir(out)
        raise ExportError(f"cannot write --out {out}: {e.strerror or e}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return files


def _write_staged(staging: str, arch: ArchSpec, names: Mapping[str, str], text: str, summary: ExportSummary,
                  provenance: Mapping[str, Any] | None) -> None:
    """The four files of the export, into `staging`: the spec JSON, the YAML, the diagram and the model card."""
    spec = {"name": summary.name, "key": arch.key, "spec": arch.to_dict(), "model_garden_tuples":
            [list(t[:2]) + [list(t[2]), t[3]] for t in arch.to_model_garden()], "scale": summary.scale,
            "image_size": summary.image_size, "task": summary.task, "params": summary.params,
            "flops": summary.flops, "provenance": dict(provenance or {})}
    with open(os.path.join(staging, names["spec"]), "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(staging, names["yaml"]), "w", encoding="utf-8") as fh:
        fh.write(text)
    from nas.cli.diagram import draw_arch

    draw_arch(arch, os.path.join(staging, names["png"]), title=f"{summary.name} ({arch.key})")
    with open(os.path.join(staging, names["md"]), "w", encoding="utf-8") as fh:
        fh.write(_card(summary.name, arch, summary, provenance or {}, names["yaml"], names["png"]))

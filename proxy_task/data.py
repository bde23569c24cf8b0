"""Proxy datasets on disk: the synthetic set, a COCO proxy split, their TFRecords and a manifest (TF-free).

A dataset folder holds::

    dataset.json                      the manifest, written last (its presence means the folder is complete)
    annotations/instances_proxy_{train,val}.json   COCO-format annotations of each split
    images/{train,val}/               the synthetic images (COCO splits point at train2017 instead)
    tfrecords/{train,val}-*.tfrecord  written by Model Garden's converter (official.vision.data.create_coco_tf_record)

Model Garden's converter runs as its own command-line program, exactly as its documentation shows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from proxy_task.config import DataConfig
from proxy_task.synth import CATEGORIES, GENERATOR_VERSION, SynthSpec, write_coco_split

logger = logging.getLogger(__name__)

MANIFEST = "dataset.json"
MANIFEST_VERSION = 1
COCO_PROXY_VAL_IMAGES = 7392  # the paper's held-out split of COCO train2017 (section 5.1)


class DataError(ValueError):
    """A dataset that is missing, incomplete, or cannot be made from what the user gave."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A ready dataset: what the proxy trainer needs to read it.

    Attributes:
      root: the dataset folder.
      kind: 'synth' or 'coco'.
      num_classes: Model Garden's num_classes (the largest category id + 1: ids are not remapped).
      train_pattern, val_pattern: TFRecord file patterns of proxy-train and proxy-val.
      val_annotation_file: the COCO annotation file of proxy-val (for COCO AP).
      train_images, val_images: image counts.
      image_size: side of the images for the synthetic set (None for COCO).
    """

    root: str
    kind: str
    num_classes: int
    train_pattern: str
    val_pattern: str
    val_annotation_file: str
    train_images: int
    val_images: int
    image_size: int | None = None


def default_data_root() -> str:
    """Where datasets made on demand are cached: $SPINENAS_DATA, else ~/.cache/spinenet-nas/data."""
    env = os.environ.get("SPINENAS_DATA")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".cache", "spinenet-nas", "data")


def synth_spec_from_config(cfg: DataConfig) -> SynthSpec:
    """The generator settings of a 'synth' data config."""
    return SynthSpec(images=cfg.images, val_images=cfg.val_images, image_size=cfg.image_size, seed=cfg.seed)


def default_synth_dir(spec: SynthSpec) -> str:
    """The cache folder of a synthetic dataset (one per generator settings and version)."""
    name = f"synth-v{GENERATOR_VERSION}-{spec.image_size}px-{spec.images}img-{spec.val_images}val-seed{spec.seed}"
    return os.path.join(default_data_root(), name)


# ---------------------------------------------------------------------------------------------- reading
def load_dataset(root: str) -> DatasetInfo:
    """Reads a dataset folder's manifest.

    Raises:
      DataError: no dataset there (with the command that makes one).
    """
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        if not os.path.isdir(root):
            raise DataError(f"no dataset folder {root}: make one with 'spinenas data synth --out {root}' or "
                            f"'spinenas data coco --coco-dir DIR --out {root}'")
        raise DataError(f"{root} holds no complete dataset ({MANIFEST} is missing): make it again with "
                        "'spinenas data synth' or 'spinenas data coco'")
    try:
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
        info = DatasetInfo(
            root=os.path.abspath(root),
            kind=m["kind"],
            num_classes=int(m["num_classes"]),
            train_pattern=os.path.join(os.path.abspath(root), m["train"]["tfrecords"]),
            val_pattern=os.path.join(os.path.abspath(root), m["val"]["tfrecords"]),
            val_annotation_file=os.path.join(os.path.abspath(root), m["val"]["annotations"]),
            train_images=int(m["train"]["images"]),
            val_images=int(m["val"]["images"]),
            image_size=m.get("image_size"),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a valid dataset manifest: {e}") from None
    for pattern in (info.train_pattern, info.val_pattern):
        if not glob.glob(pattern):
            raise DataError(f"dataset {root} is incomplete: no files match {pattern}")
    return info


def ensure_dataset(cfg: DataConfig, progress: Callable[[str], None] | None = None) -> DatasetInfo:
    """The dataset a data config names; the synthetic one is made (once, under a lock) when missing.

    Raises:
      DataError: for a 'coco' or 'dir' dataset that does not exist.
    """
    if cfg.kind != "synth":
        return load_dataset(cfg.path)
    spec = synth_spec_from_config(cfg)
    root = cfg.path or default_synth_dir(spec)
    if os.path.isfile(os.path.join(root, MANIFEST)):
        return load_dataset(root)
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    with _locked(root + ".lock"):
        if not os.path.isfile(os.path.join(root, MANIFEST)):
            if progress:
                progress(f"making the synthetic dataset in {root} (once; later runs reuse it)")
            make_synth(root, spec, progress=progress)
    return load_dataset(root)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- writing
def _check_out_dir(out: str, force: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"--out {out} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise DataError(f"--out {out} is not empty (pass --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise DataError(f"the parent folder of --out does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise DataError(f"cannot write into {parent}")


@contextlib.contextmanager
def _staging(out: str) -> Iterator[str]:
    """A temporary folder next to `out` that replaces it atomically when the block succeeds."""
    parent = os.path.dirname(os.path.abspath(out))
    tmp = tempfile.mkdtemp(prefix=".spinenas-data-", dir=parent)
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def convert_to_tfrecords(
    image_dir: str, annotation_file: str, output_prefix: str, num_shards: int, include_masks: bool = True
) -> None:
    """Runs Model Garden's COCO -> TFRecord converter (single process, so the output is deterministic).

    Raises:
      DataError: when the converter fails (with the end of its error output).
    """
    cmd = [
        sys.executable,
        "-m",
        "proxy_task.convert",
        f"--image_dir={image_dir}",
        f"--object_annotations_file={annotation_file}",
        f"--output_file_prefix={output_prefix}",
        f"--num_shards={num_shards}",
        "--num_processes=0",
    ]
    if include_masks:
        cmd.append("--include_masks")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        raise DataError(f"Model Garden's TFRecord converter failed on {annotation_file}: {tail[0]}")


def _write_manifest(root: str, doc: dict[str, Any]) -> None:
    with open(os.path.join(root, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")


def _shards(images: int) -> int:
    return max(1, min(16, images // 1000))


def make_synth(
    out: str, spec: SynthSpec, *, force: bool = True, progress: Callable[[str], None] | None = None
) -> DatasetInfo:
    """Writes the synthetic dataset into `out`: images, COCO annotations, TFRecords and manifest.

    The same spec gives byte-identical files. The folder appears complete or not at all.
    """
    if spec.val_images <= 0 or spec.val_images >= spec.images:
        raise DataError(f"--val-images must be between 1 and --images - 1 ({spec.images - 1}), got {spec.val_images}")
    if spec.image_size < 32:
        raise DataError(f"--size must be at least 32 pixels, got {spec.image_size}")
    _check_out_dir(out, force)
    n_train = spec.images - spec.val_images
    splits = {"train": range(0, n_train), "val": range(n_train, spec.images)}
    with _staging(out) as tmp:
        counts = {}
        for split, indices in splits.items():
            ann = os.path.join(tmp, "annotations", f"instances_proxy_{split}.json")
            os.makedirs(os.path.dirname(ann), exist_ok=True)

            def report(done: int, total: int, split: str = split) -> None:
                if progress and (done == total or done % 500 == 0):
                    progress(f"  {split}: drew {done}/{total} images")

            counts[split] = write_coco_split(spec, indices, os.path.join(tmp, "images", split), ann, report)
            if progress:
                progress(f"  {split}: converting to TFRecords with Model Garden's converter")
            os.makedirs(os.path.join(tmp, "tfrecords"), exist_ok=True)
            convert_to_tfrecords(
                os.path.join(tmp, "images", split), ann, os.path.join(tmp, "tfrecords", split), _shards(len(indices))
            )
        _write_manifest(
            tmp,
            {
                "format": MANIFEST_VERSION,
                "kind": "synth",
                "generator_version": GENERATOR_VERSION,
                "seed": spec.seed,
                "image_size": spec.image_size,
                "num_classes": max(c["id"] for c in CATEGORIES) + 1,
                "categories": [c["name"] for c in CATEGORIES],
                "train": {
                    "images": n_train,
                    "boxes": counts["train"],
                    "annotations": "annotations/instances_proxy_train.json",
                    "tfrecords": "tfrecords/train-*.tfrecord",
                },
                "val": {
                    "images": spec.val_images,
                    "boxes": counts["val"],
                    "annotations": "annotations/instances_proxy_val.json",
                    "tfrecords": "tfrecords/val-*.tfrecord",
                },
            },
        )
    return load_dataset(out)


def carve_coco(
    coco_dir: str,
    out: str,
    *,
    val_images: int = COCO_PROXY_VAL_IMAGES,
    train_images: int = 0,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DatasetInfo:
    """Carves a deterministic proxy split out of COCO train2017 and converts it with Model Garden's converter.

    Proxy-val is `val_images` images of train2017 chosen by `seed` (the paper held out 7,392); proxy-train is the
    next `train_images` of the same shuffle (0: all the rest).

    Raises:
      DataError: missing folder, annotation file or images, or sizes that do not fit.
    """
    if not os.path.isdir(coco_dir):
        raise DataError(f"--coco-dir {coco_dir} does not exist")
    ann_file = os.path.join(coco_dir, "annotations", "instances_train2017.json")
    image_dir = os.path.join(coco_dir, "train2017")
    if not os.path.isfile(ann_file):
        raise DataError(f"missing COCO annotation file {ann_file} (expected COCO's annotations/ folder)")
    if not os.path.isdir(image_dir):
        raise DataError(f"missing COCO image folder {image_dir}")
    if val_images < 1 or train_images < 0:
        raise DataError(f"--val-images must be >= 1 and --train-images >= 0, got {val_images} and {train_images}")
    _check_out_dir(out, force)
    if progress:
        progress(f"reading {ann_file}")
    try:
        with open(ann_file, encoding="utf-8") as fh:
            coco = json.load(fh)
        images = sorted(coco["images"], key=lambda im: im["id"])
        annotations, categories = coco["annotations"], coco["categories"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{ann_file} is not a COCO annotation file: {e}") from None
    if val_images >= len(images):
        raise DataError(f"--val-images {val_images} leaves no training images: train2017 has {len(images)}")
    order = np.random.default_rng(seed).permutation(len(images))
    val_ids = [images[i] for i in order[:val_images]]
    rest = order[val_images:]
    if train_images:
        if train_images > len(rest):
            raise DataError(f"--train-images {train_images} is more than the {len(rest)} images left after proxy-val")
        rest = rest[:train_images]
    train_ids = [images[i] for i in rest]
    missing = [im["file_name"] for im in val_ids + train_ids if not os.path.isfile(os.path.join(image_dir,
                                                                                                 im["file_name"]))]
    if missing:
        raise DataError(f"{len(missing)} images of the split are missing from {image_dir}, e.g. {missing[0]}")
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in annotations:
        by_image.setdefault(a["image_id"], []).append(a)
    with _staging(out) as tmp:
        os.makedirs(os.path.join(tmp, "annotations"))
        os.makedirs(os.path.join(tmp, "tfrecords"))
        split_images = {"train": sorted(train_ids, key=lambda im: im["id"]),
                        "val": sorted(val_ids, key=lambda im: im["id"])}
        boxes = {}
        for split, ims in split_images.items():
            anns = [a for im in ims for a in by_image.get(im["id"], [])]
            boxes[split] = len(anns)
            doc = {"info": coco.get("info", {}), "licenses": coco.get("licenses", []), "images": ims,
                   "annotations": anns, "categories": categories}
            path = os.path.join(tmp, "annotations", f"instances_proxy_{split}.json")
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            if progress:
                progress(f"  {split}: {len(ims)} images, {len(anns)} boxes; converting to TFRecords")
            convert_to_tfrecords(image_dir, path, os.path.join(tmp, "tfrecords", split), _shards(len(ims)))
        _write_manifest(
            tmp,
            {
                "format": MANIFEST_VERSION,
                "kind": "coco",
                "seed": seed,
                "source": os.path.abspath(coco_dir),
                "num_classes": max(c["id"] for c in categories) + 1,
                "categories": [c["name"] for c in categories],
                "train": {"images": len(train_ids), "boxes": boxes["train"],
                          "annotations": "annotations/instances_proxy_train.json",
                          "tfrecords": "tfrecords/train-*.tfrecord"},
                "val": {"images": len(val_ids), "boxes": boxes["val"],
                        "annotations": "annotations/instances_proxy_val.json",
                        "tfrecords": "tfrecords/val-*.tfrecord"},
            },
        )
    return load_dataset(out)


def file_digests(root: str, patterns: Sequence[str] = ("**/*",)) -> dict[str, str]:
    """sha256 of every file under `root` (for determinism checks)."""
    import hashlib

    out = {}
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out

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
      skipped_images: images of a COCO split left out as bad (`--skip-bad-images`; listed in the manifest).
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
    skipped_images: int = 0


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
            skipped_images=len(m.get("skipped_images", [])),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a valid dataset manifest: {e}") from None
    for pattern in (info.train_pattern, info.val_pattern):
        if not glob.glob(pattern):
            raise DataError(f"dataset {root} is incomplete: no files match {pattern}")
    return info


#: Model Garden's ``num_classes`` of COCO (category ids 1..90, id + 1 classes): what a dataset folder not made yet
#: is counted with.
COCO_NUM_CLASSES = 91


def num_classes_of(cfg: DataConfig) -> int:
    """The class count a data config gives the detector, without making or reading TFRecords.

    The synthetic dataset's is fixed by its generator; a converted dataset's is in its manifest. A folder without
    one (not converted yet) counts as COCO's 91: only the surrogate, which trains nothing, asks before the data
    exists (a RetinaNet search checks its dataset first).
    """
    if cfg.kind == "synth":
        return max(c["id"] for c in CATEGORIES) + 1
    try:
        return load_dataset(cfg.path).num_classes
    except DataError:
        return COCO_NUM_CLASSES


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
    try:
        full = os.path.isdir(out) and bool(os.listdir(out))
    except OSError as e:
        raise DataError(f"cannot write --out {out}: {e.strerror}") from None
    if full and not force:
        raise DataError(f"--out {out} is not empty (pass --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise DataError(f"cannot write --out {out}: {parent}: Not a directory")
    if not os.path.isdir(parent):
        raise DataError(f"the parent folder of --out does not exist: {parent}")
    # The folder is staged in `parent`: try it (os.access passes for root on /proc and read-only mounts).
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".spinenas-probe-", dir=parent))
    except OSError as e:
        raise DataError(f"cannot write --out {out}: {parent}: {e.strerror}") from None


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


# ---------------------------------------------------------------------------------------------- images
# Model Garden's converter stores an image's bytes as they are (it never decodes them), so an empty or cut-off file
# becomes a record that fails only when a trial reads it. What the cheap check accepts, from each file's first and
# last bytes: JPEG (SOI FF D8 FF first, EOI FF D9 last) or PNG (the 8-byte signature first, the IEND chunk last).
# NUL bytes after the end marker are tolerated (some writers pad files; decoders stop at the marker), up to
# IMAGE_TAIL_BYTES. A file whose last bytes are not its end marker (a cut-off file, or a camera's trailer after a
# whole image) is decoded in full to tell which: it passes when it decodes.
JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # length 0, type IEND, its CRC
IMAGE_TAIL_BYTES = 4096
EXPECTED_IMAGE = "expected a JPEG (FF D8 ... FF D9) or PNG (89 50 4E 47 ... IEND)"


def image_problem(path: str, *, decode: bool = False) -> str | None:
    """What is wrong with an image file for the converter, or None when it looks whole.

    Args:
      path: the image file.
      decode: also decode it fully with Pillow (slower: reads the whole file), which finds damage between the
        markers, e.g. a bad PNG chunk CRC or a JPEG data stream that breaks off.

    Returns:
      A short reason (e.g. 'empty file (0 bytes)', 'truncated JPEG: ...'), or None.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return f"empty file (0 bytes); {EXPECTED_IMAGE}"
        with open(path, "rb") as fh:
            head = fh.read(len(PNG_SIGNATURE))
            fh.seek(max(0, size - IMAGE_TAIL_BYTES))
            tail = fh.read().rstrip(b"\x00")
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if head.startswith(JPEG_SOI):
        kind, end, end_name = "JPEG", JPEG_EOI, "end marker FF D9"
    elif head == PNG_SIGNATURE:
        kind, end, end_name = "PNG", PNG_IEND, "IEND chunk"
    else:
        return f"not a JPEG or PNG (starts with {head.hex(' ').upper()}); {EXPECTED_IMAGE}"
    if not tail.endswith(end):
        broken = _decode_problem(path)
        return None if broken is None else f"truncated {kind} ({size} bytes): no {end_name} at the end ({broken})"
    if decode:
        broken = _decode_problem(path)
        if broken is not None:
            return f"{kind} does not decode: {broken}"
    return None


def _decode_problem(path: str) -> str | None:
    """Why Pillow cannot decode an image in full, or None when it can."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # PNG: every chunk's CRC
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        return str(e) or type(e).__name__
    return None


def find_bad_images(paths: Sequence[str], *, decode: bool = False) -> list[tuple[str, str]]:
    """(path, reason) of each bad image among `paths`, in their order (see `image_problem`)."""
    if not decode:
        found = [(p, image_problem(p)) for p in paths]
    else:
        # Decoding is most of the time; Pillow releases the GIL while it decodes.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            found = list(zip(paths, pool.map(lambda p: image_problem(p, decode=True), paths)))
    return [(p, why) for p, why in found if why is not None]


def carve_coco(
    coco_dir: str,
    out: str,
    *,
    val_images: int = COCO_PROXY_VAL_IMAGES,
    train_images: int = 0,
    seed: int = 0,
    force: bool = False,
    verify_images: bool = False,
    skip_bad_images: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DatasetInfo:
    """Carves a deterministic proxy split out of COCO train2017 and converts it with Model Garden's converter.

    Proxy-val is `val_images` images of train2017 chosen by `seed` (the paper held out 7,392); proxy-train is the
    next `train_images` of the same shuffle (0: all the rest).

    Every image of the split is checked before anything is written (`image_problem`: size, format, start and end
    markers; with `verify_images` also a full decode). A bad image is an error, or with `skip_bad_images` it is left
    out with its annotations after the split is drawn, so the other images keep their splits (a split is smaller
    by the images skipped from it) and the manifest lists what was skipped and why.

    Raises:
      DataError: missing folder, annotation file or images, a bad image (without `skip_bad_images`), or sizes that
        do not fit.
    """
    ann_file, image_dir = _coco_source(coco_dir, val_images=val_images, train_images=train_images)
    _check_out_dir(out, force)
    if progress:
        progress(f"reading {ann_file}")
    coco, images, annotations, categories = _read_coco(ann_file)
    val_ids, train_ids = _draw_split(images, val_images=val_images, train_images=train_images, seed=seed)
    _check_present(image_dir, val_ids + train_ids)
    val_ids, train_ids, skipped = _check_images(image_dir, val_ids, train_ids, decode=verify_images,
                                                skip=skip_bad_images, progress=progress)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in annotations:
        by_image.setdefault(a["image_id"], []).append(a)
    with _staging(out) as tmp:
        split_images = {"train": sorted(train_ids, key=lambda im: im["id"]),
                        "val": sorted(val_ids, key=lambda im: im["id"])}
        boxes = _write_coco_splits(tmp, coco, image_dir, split_images, by_image, progress)
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
                "image_check": "decoded" if verify_images else "markers",
                "skipped_images": skipped,
            },
        )
    return load_dataset(out)


def _coco_source(coco_dir: str, *, val_images: int, train_images: int) -> tuple[str, str]:
    """The annotation file and the image folder of COCO train2017 under `coco_dir`, checked with the split sizes.

    Raises:
      DataError: a missing folder or annotation file, or sizes below their minimum.
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
    return ann_file, image_dir


def _read_coco(
    ann_file: str,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The annotation file's document, its images by id, its annotations and its categories.

    Raises:
      DataError: a file that cannot be read or lacks one of those.
    """
    try:
        with open(ann_file, encoding="utf-8") as fh:
            coco = json.load(fh)
        images = sorted(coco["images"], key=lambda im: im["id"])
        annotations, categories = coco["annotations"], coco["categories"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{ann_file} is not a COCO annotation file: {e}") from None
    return coco, images, annotations, categories


def _draw_split(
    images: list[dict[str, Any]], *, val_images: int, train_images: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(proxy-val, proxy-train): the first `val_images` of a shuffle by `seed`, then the next `train_images` of it
    (0: all the rest).

    Raises:
      DataError: sizes that do not fit the images.
    """
    if val_images >= len(images):
        raise DataError(f"--val-images {val_images} leaves no training images: train2017 has {len(images)}")
    order = np.random.default_rng(seed).permutation(len(images))
    val_ids = [images[i] for i in order[:val_images]]
    rest = order[val_images:]
    if train_images:
        if train_images > len(rest):
            raise DataError(f"--train-images {train_images} is more than the {len(rest)} images left after proxy-val")
        rest = rest[:train_images]
    return val_ids, [images[i] for i in rest]


def _check_present(image_dir: str, images: list[dict[str, Any]]) -> None:
    """Raises DataError when an image of the split is not in `image_dir`."""
    missing = [im["file_name"] for im in images if not os.path.isfile(os.path.join(image_dir, im["file_name"]))]
    if missing:
        raise DataError(f"{len(missing)} images of the split are missing from {image_dir}, e.g. {missing[0]}")


def _check_images(
    image_dir: str,
    val_ids: list[dict[str, Any]],
    train_ids: list[dict[str, Any]],
    *,
    decode: bool,
    skip: bool,
    progress: Callable[[str], None] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(val, train, skipped) after checking each split's images; a bad one is a DataError unless `skip`."""
    splits = {"val": val_ids, "train": train_ids}
    paths = {split: [os.path.join(image_dir, im["file_name"]) for im in ims] for split, ims in splits.items()}
    if progress:
        how = "decoding each" if decode else "size, format and end markers"
        progress(f"checking {len(val_ids) + len(train_ids)} images ({how})")
    bad = {split: dict(find_bad_images(paths[split], decode=decode)) for split in splits}
    found = [(path, why) for split in splits for path, why in bad[split].items()]
    if found and not skip:
        path, why = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise DataError(f"bad image {path}: {why}{more}; pass --skip-bad-images to leave bad images and their "
                        "annotations out")
    kept, skipped = {}, []
    for split, ims in splits.items():
        kept[split] = [im for im, path in zip(ims, paths[split]) if path not in bad[split]]
        skipped += [{"split": split, "id": im["id"], "file_name": im["file_name"], "problem": bad[split][path]}
                    for im, path in zip(ims, paths[split]) if path in bad[split]]
        if not kept[split]:
            path, why = next(iter(bad[split].items()))
            raise DataError(f"all {len(ims)} images of proxy-{split} are bad, e.g. {path}: {why}")
    if progress:
        for s in skipped[:10]:
            progress(f"  skipping {os.path.join(image_dir, s['file_name'])} ({s['split']}): {s['problem']}")
        if len(skipped) > 10:
            progress(f"  ... and {len(skipped) - 10} more (listed in {MANIFEST})")
    return kept["val"], kept["train"], skipped


def _write_coco_splits(
    root: str,
    coco: dict[str, Any],
    image_dir: str,
    split_images: dict[str, list[dict[str, Any]]],
    by_image: dict[int, list[dict[str, Any]]],
    progress: Callable[[str], None] | None,
) -> dict[str, int]:
    """Writes each split's COCO annotation file and its TFRecords into `root`; returns each split's box count."""
    os.makedirs(os.path.join(root, "annotations"))
    os.makedirs(os.path.join(root, "tfrecords"))
    boxes = {}
    for split, ims in split_images.items():
        anns = [a for im in ims for a in by_image.get(im["id"], [])]
        boxes[split] = len(anns)
        doc = {"info": coco.get("info", {}), "licenses": coco.get("licenses", []), "images": ims,
               "annotations": anns, "categories": coco["categories"]}
        path = os.path.join(root, "annotations", f"instances_proxy_{split}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        if progress:
            progress(f"  {split}: {len(ims)} images, {len(anns)} boxes; converting to TFRecords")
        convert_to_tfrecords(image_dir, path, os.path.join(root, "tfrecords", split), _shards(len(ims)))
    return boxes

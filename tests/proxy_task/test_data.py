"""Datasets on disk: byte-identical synthetic sets, the COCO carve, clear errors."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from proxy_task.config import DataConfig
from proxy_task.data import (
    DataError,
    carve_coco,
    ensure_dataset,
    image_problem,
    load_dataset,
    make_synth,
)
from proxy_task.synth import SynthSpec, write_coco_split


def _file_digests(root):
    """sha256 of every file under `root`, by relative path."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**/*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.mark.slow
@pytest.mark.tf
def test_synth_is_byte_identical_for_a_seed(tmp_path):
    spec = SynthSpec(images=24, val_images=6)
    a = make_synth(str(tmp_path / "a"), spec)
    b = make_synth(str(tmp_path / "b"), spec)
    da, db = _file_digests(a.root), _file_digests(b.root)
    assert da == db
    assert any(k.startswith("tfrecords/") for k in da)
    assert a.num_classes == 5 and a.train_images == 18 and a.val_images == 6
    c = make_synth(str(tmp_path / "c"), SynthSpec(images=24, val_images=6, seed=1))
    assert _file_digests(c.root) != da


def _fake_coco(root, images=12, image_size=128):
    spec = SynthSpec(images=images, val_images=1, image_size=image_size)
    os.makedirs(root / "annotations")
    write_coco_split(spec, range(images), str(root / "train2017"), str(root / "annotations" /
                                                                       "instances_train2017.json"))
    return root


@pytest.mark.slow
@pytest.mark.tf
def test_coco_carve_on_a_tiny_fake_coco_tree(tmp_path):
    coco = _fake_coco(tmp_path / "coco")
    a = carve_coco(str(coco), str(tmp_path / "a"), val_images=4, train_images=5, seed=3)
    assert (a.train_images, a.val_images) == (5, 4)
    val = json.loads(open(a.val_annotation_file).read())
    train = json.loads(open(os.path.join(a.root, "annotations", "instances_proxy_train.json")).read())
    val_ids = {im["id"] for im in val["images"]}
    assert not val_ids & {im["id"] for im in train["images"]}
    assert all(ann["image_id"] in val_ids for ann in val["annotations"])
    assert a.num_classes == 5
    b = carve_coco(str(coco), str(tmp_path / "b"), val_images=4, train_images=5, seed=3)
    assert _file_digests(a.root) == _file_digests(b.root)  # deterministic for a seed


def test_coco_carve_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        carve_coco(str(tmp_path / "nope"), str(tmp_path / "out"))
    (tmp_path / "coco").mkdir()
    with pytest.raises(DataError, match="missing COCO annotation file"):
        carve_coco(str(tmp_path / "coco"), str(tmp_path / "out"))
    coco = _fake_coco(tmp_path / "coco2", images=6)
    os.remove(coco / "train2017" / "000002.jpg")
    with pytest.raises(DataError, match=r"1 images of the split are missing .* 000002.jpg"):
        carve_coco(str(coco), str(tmp_path / "out"), val_images=2)
    with pytest.raises(DataError, match="leaves no training images"):
        carve_coco(str(coco), str(tmp_path / "out"), val_images=6)
    assert not (tmp_path / "out").exists()  # nothing written on error
    shutil.rmtree(coco / "train2017")
    with pytest.raises(DataError, match="missing COCO image folder"):
        carve_coco(str(coco), str(tmp_path / "out"))


def test_missing_or_incomplete_dataset(tmp_path):
    with pytest.raises(DataError, match="no dataset folder"):
        load_dataset(str(tmp_path / "nope"))
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="holds no complete dataset"):
        load_dataset(str(tmp_path / "half"))
    with pytest.raises(DataError, match="no dataset folder"):
        ensure_dataset(DataConfig(kind="dir", path=str(tmp_path / "nope")))


def test_out_dir_rules(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(DataError, match="is not empty"):
        make_synth(str(tmp_path / "full"), SynthSpec(images=4, val_images=1), force=False)
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(DataError, match="val-images must be between"):
        make_synth(str(tmp_path / "o"), SynthSpec(images=4, val_images=4))


# --------------------------------------------------------------------------------------------------- bad images
def _png_bytes(size=64):
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _damage(kind, good_jpeg):
    """(bytes, extension) of a damaged image of one kind."""
    return {
        "empty": (b"", ".jpg"),
        "truncated_jpeg": (good_jpeg[: len(good_jpeg) // 2], ".jpg"),
        "png_without_iend": (_png_bytes()[:-12], ".png"),
        "text_as_jpeg": (b"this is not an image\n", ".jpg"),
        # Markers intact, data broken: only the decode (--verify-images) finds it.
        "garbled_jpeg": (good_jpeg[:400] + bytes(200) + good_jpeg[600:], ".jpg"),
    }[kind]


def _fake_coco_with_bad(root, kinds, images=8):
    """A tiny 64 px COCO tree whose images 1, 2, ... are replaced by the damaged ones of `kinds`."""
    coco = _fake_coco(root, images=images, image_size=64)
    ann_file = coco / "annotations" / "instances_train2017.json"
    doc = json.loads(ann_file.read_text())
    names = []
    for n, kind in enumerate(kinds, start=1):
        im = doc["images"][n]
        old = coco / "train2017" / im["file_name"]
        data, ext = _damage(kind, old.read_bytes())
        os.remove(old)
        im["file_name"] = os.path.splitext(im["file_name"])[0] + ext
        (coco / "train2017" / im["file_name"]).write_bytes(data)
        names.append(im["file_name"])
    ann_file.write_text(json.dumps(doc))
    return coco, names


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "empty file (0 bytes)"),
        ("truncated_jpeg", "truncated JPEG"),
        ("png_without_iend", "truncated PNG"),
        ("text_as_jpeg", "not a JPEG or PNG (starts with 74 68 69 73"),
    ],
)
def test_a_bad_image_is_named_and_nothing_is_written(tmp_path, kind, reason):
    coco, (name,) = _fake_coco_with_bad(tmp_path / "coco", [kind])
    with pytest.raises(DataError, match="bad image") as e:
        carve_coco(str(coco), str(tmp_path / "out"), val_images=2)
    message = str(e.value)
    assert str(coco / "train2017" / name) in message and reason in message and "--skip-bad-images" in message
    assert "\n" not in message
    assert sorted(os.listdir(tmp_path)) == ["coco"]  # no --out, no staging folder


def test_every_bad_image_is_counted_in_the_error(tmp_path):
    coco, names = _fake_coco_with_bad(tmp_path / "coco", ["empty", "truncated_jpeg", "png_without_iend",
                                                          "text_as_jpeg"])
    with pytest.raises(DataError, match=r"bad image .*\(and 3 more\)"):
        carve_coco(str(coco), str(tmp_path / "out"), val_images=2)
    assert sorted(os.listdir(tmp_path)) == ["coco"]


def test_verify_images_decodes_what_the_markers_miss(tmp_path):
    coco, (name,) = _fake_coco_with_bad(tmp_path / "coco", ["garbled_jpeg"])
    path = str(coco / "train2017" / name)
    assert image_problem(path) is None
    assert "JPEG does not decode" in image_problem(path, decode=True)
    with pytest.raises(DataError, match=f"bad image {path}: JPEG does not decode"):
        carve_coco(str(coco), str(tmp_path / "out"), val_images=2, verify_images=True)
    assert sorted(os.listdir(tmp_path)) == ["coco"]


def test_good_images_pass_both_checks(tmp_path):
    jpeg = _fake_coco(tmp_path / "coco", images=2, image_size=64) / "train2017" / "000000.jpg"
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(jpeg.read_bytes() + bytes(100))  # NUL padding after the end marker is tolerated
    png = tmp_path / "a.png"
    png.write_bytes(_png_bytes())
    for path in (jpeg, padded, png):
        assert image_problem(str(path)) is None and image_problem(str(path), decode=True) is None, path
    trailing = tmp_path / "trailing.jpg"  # a camera's trailer after a whole image: decoders read it
    trailing.write_bytes(jpeg.read_bytes() + b"appended data")
    assert image_problem(str(trailing)) is None


def test_all_bad_images_of_a_split_is_an_error_even_when_skipping(tmp_path):
    coco, _ = _fake_coco_with_bad(tmp_path / "coco", ["empty", "empty", "empty"], images=4)
    with pytest.raises(DataError, match="images of proxy-.* are bad"):
        carve_coco(str(coco), str(tmp_path / "out"), val_images=1, seed=0, skip_bad_images=True)
    assert sorted(os.listdir(tmp_path)) == ["coco"]


def _tfrecords(pattern):
    """The records of TFRecord files, read without TensorFlow (length, its CRC, data, its CRC)."""
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as fh:
            while header := fh.read(12):
                (length,) = struct.unpack("<Q", header[:8])
                out.append(fh.read(length))
                fh.read(4)
    return out


@pytest.mark.slow
@pytest.mark.tf
def test_skip_bad_images_leaves_them_out_and_counts_them(tmp_path):
    kinds = ["empty", "truncated_jpeg", "png_without_iend", "text_as_jpeg"]
    coco, bad = _fake_coco_with_bad(tmp_path / "coco", kinds, images=8)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "data", "coco", "--coco-dir", str(coco), "--out",
                           str(out), "--val-images", "4", "--skip-bad-images"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 4 bad images and their annotations" in proc.stdout
    # Seed 0 draws images 2, 3, 4, 6 for proxy-val: three bad ones are skipped from it, one from proxy-train.
    assert "proxy-train: 3 images   proxy-val: 1 images" in proc.stdout
    manifest = json.loads((out / "dataset.json").read_text())
    assert sorted(s["file_name"] for s in manifest["skipped_images"]) == sorted(bad)
    records = _tfrecords(str(out / "tfrecords" / "*.tfrecord"))
    good = sorted(set(os.listdir(coco / "train2017")) - set(bad))
    assert len(records) == len(good) == manifest["train"]["images"] + manifest["val"]["images"] == 4
    assert sorted(n for n in good if any(n.encode() in r for r in records)) == good
    assert not any(n.encode() in r for n in bad for r in records)
    anns = [json.loads((out / "annotations" / f"instances_proxy_{s}.json").read_text()) for s in ("train", "val")]
    kept_ids = {im["id"] for a in anns for im in a["images"]}
    assert all(ann["image_id"] in kept_ids for a in anns for ann in a["annotations"])

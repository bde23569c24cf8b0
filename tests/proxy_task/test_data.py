"""Datasets on disk: byte-identical synthetic sets, the COCO carve, clear errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from proxy_task.config import DataConfig
from proxy_task.data import DataError, carve_coco, ensure_dataset, file_digests, load_dataset, make_synth
from proxy_task.synth import SynthSpec, write_coco_split


@pytest.mark.slow
@pytest.mark.tf
def test_synth_is_byte_identical_for_a_seed(tmp_path):
    spec = SynthSpec(images=24, val_images=6)
    a = make_synth(str(tmp_path / "a"), spec)
    b = make_synth(str(tmp_path / "b"), spec)
    da, db = file_digests(a.root), file_digests(b.root)
    assert da == db
    assert any(k.startswith("tfrecords/") for k in da)
    assert a.num_classes == 5 and a.train_images == 18 and a.val_images == 6
    c = make_synth(str(tmp_path / "c"), SynthSpec(images=24, val_images=6, seed=1))
    assert file_digests(c.root) != da


def _fake_coco(root, images=12):
    spec = SynthSpec(images=images, val_images=1)
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
    assert file_digests(a.root) == file_digests(b.root)  # deterministic for a seed


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

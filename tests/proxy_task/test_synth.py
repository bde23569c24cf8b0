"""The embedded synthetic dataset: deterministic drawing and valid COCO annotations (TF-free)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from proxy_task.synth import CATEGORIES, SynthSpec, draw_image, write_coco_split


def test_same_spec_same_bytes_and_different_seed_different_bytes():
    spec = SynthSpec(images=10, val_images=2)
    assert draw_image(spec, 3) == draw_image(spec, 3)
    assert draw_image(spec, 3)[0] != draw_image(SynthSpec(images=10, val_images=2, seed=1), 3)[0]
    assert draw_image(spec, 3)[0] != draw_image(spec, 4)[0]


@pytest.mark.parametrize("size", [128, 256])
def test_annotations_are_valid_coco(size):
    from PIL import Image

    spec = SynthSpec(images=30, val_images=5, image_size=size)
    ids = {c["id"] for c in CATEGORIES}
    widths = []
    for i in range(30):
        jpeg, anns = draw_image(spec, i)
        assert Image.open(io.BytesIO(jpeg)).size == (size, size)
        assert spec.min_objects <= len(anns) <= spec.max_objects or len(anns) >= 1
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= size and y + h <= size  # Model Garden drops boxes past the edge
            assert w >= 3 and h >= 3
            assert a["category_id"] in ids
            assert a["iscrowd"] == 0
            assert 0 < a["area"] <= w * h + 1e-6
            poly = np.asarray(a["segmentation"][0]).reshape(-1, 2)
            assert poly.shape[0] >= 3
            widths.append(w)
    # Objects span small to large scales (this is what makes the backbone's levels matter).
    assert min(widths) < size * 0.12 and max(widths) > size * 0.4


def test_write_coco_split(tmp_path):
    spec = SynthSpec(images=6, val_images=2)
    ann = tmp_path / "a.json"
    n = write_coco_split(spec, range(4), str(tmp_path / "img"), str(ann))
    doc = json.loads(ann.read_text())
    assert len(doc["images"]) == 4 and len(doc["annotations"]) == n
    assert [a["id"] for a in doc["annotations"]] == list(range(1, n + 1))
    assert {a["image_id"] for a in doc["annotations"]} <= {im["id"] for im in doc["images"]}
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [im["file_name"] for im in doc["images"]]

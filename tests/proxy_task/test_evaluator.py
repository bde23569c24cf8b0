"""Model Garden's COCO evaluator on the synthetic split: AP 1.0 for perfect predictions, less when jittered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from proxy_task.synth import SynthSpec, write_coco_split

pytestmark = [pytest.mark.tf]


def _predictions(doc, jitter=0.0, rng=None):
    import tensorflow as tf

    by_image = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    ids = [im["id"] for im in doc["images"]]
    k = max(len(v) for v in by_image.values())
    boxes = np.zeros([len(ids), k, 4], np.float32)
    classes = np.zeros([len(ids), k], np.int32)
    scores = np.zeros([len(ids), k], np.float32)
    for i, image_id in enumerate(ids):
        for j, a in enumerate(by_image.get(image_id, [])):
            x, y, w, h = a["bbox"]
            if jitter:
                x, y = x + rng.normal(0, jitter * w), y + rng.normal(0, jitter * h)
            boxes[i, j] = [y, x, y + h, x + w]  # ymin, xmin, ymax, xmax in image pixels
            classes[i, j] = a["category_id"]
            scores[i, j] = 0.9
    info = np.tile(np.array([[128, 128], [128, 128], [1, 1], [0, 0]], np.float32), [len(ids), 1, 1])
    return {
        "source_id": tf.constant(ids, tf.int64),
        "image_info": tf.constant(info),
        "num_detections": tf.constant([k] * len(ids), tf.int32),
        "detection_boxes": tf.constant(boxes),
        "detection_classes": tf.constant(classes),
        "detection_scores": tf.constant(scores),
    }


def test_perfect_predictions_score_ap_1_and_jittered_less(tmp_path):
    from official.vision.evaluation import coco_evaluator

    ann = tmp_path / "val.json"
    write_coco_split(SynthSpec(images=20, val_images=10), range(10), str(tmp_path / "img"), str(ann))
    doc = json.loads(ann.read_text())

    def score(preds):
        ev = coco_evaluator.COCOEvaluator(annotation_file=str(ann), include_mask=False)
        ev.update_state(None, preds)
        return ev.result()

    perfect = score(_predictions(doc))
    assert perfect["AP"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["AP50"] == pytest.approx(1.0, abs=1e-6)
    jittered = score(_predictions(doc, jitter=0.15, rng=np.random.default_rng(0)))
    assert 0.0 < jittered["AP"] < 0.9
    assert jittered["AP50"] >= jittered["AP75"]

"""The embedded dataset: deterministic synthetic shapes in COCO format (boxes, polygon masks, area, iscrowd).

No real detection data can be downloaded on a fresh machine, so the default proxy task trains on this. It is made
to reward multi-scale backbones: objects range from a few pixels to half the image, sit on textured backgrounds
among unannotated clutter, and their class is their outline, not their colour. Everything is drawn with numpy and
Pillow from a seed; image i depends only on (seed, i), and the same seed gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from proxy_task.config import GENERATOR_VERSION  # one home, numpy-free (result fingerprints read it)

logger = logging.getLogger(__name__)

CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "disc", "supercategory": "shape"},
    {"id": 2, "name": "square", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
    {"id": 4, "name": "cross", "supercategory": "shape"},
)


@dataclasses.dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    Attributes:
      images: images in all (train + val).
      val_images: images held out as proxy-val (the last ones).
      image_size: side of the square images in pixels.
      seed: the generator's seed.
      min_objects, max_objects: annotated objects per image.
      min_size, max_size: object size range as a fraction of the image side (log-uniform).
    """

    images: int = 2300
    val_images: int = 300
    image_size: int = 128
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 6
    min_size: float = 0.06
    max_size: float = 0.55


def _polygon(kind: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape of radius r around (cx, cy), rotated by `angle`."""
    if kind == 1:  # disc
        pts = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    elif kind == 2:  # square
        pts = [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)]
    elif kind == 3:  # triangle
        pts = [(math.cos(t), math.sin(t)) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    else:  # cross
        a, b = 0.3, 0.95
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
               (-a, -a)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient with noise and a few faint stripes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 215, size=3), rng.uniform(40, 215, size=3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    img = c0 * (1 - t) + c1 * t
    freq = rng.uniform(4, 16)
    img += rng.uniform(0, 18) * np.sin(2 * math.pi * freq * (xx * rng.uniform(-1, 1) + yy))[..., None]
    img += rng.normal(0, rng.uniform(3, 10), size=img.shape)
    return img


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box: high when one object would hide (part of) the other."""
    ax0, ay0, ax1, ay1 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx0, by0, bx1, by1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return iw * ih / smaller if smaller > 0 else 0.0


def draw_image(spec: SynthSpec, index: int) -> tuple[bytes, list[dict[str, Any]]]:
    """Image `index` as JPEG bytes and its annotations (COCO fields except ids).

    Deterministic in (spec, index).
    """
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    size = spec.image_size
    rng = np.random.default_rng([spec.seed, index, GENERATOR_VERSION])
    canvas = Image.fromarray(np.clip(_background(rng, size), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    # Clutter: unannotated strokes and specks, drawn under the objects.
    for _ in range(int(rng.integers(3, 9))):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, size=4))
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)))
        else:
            cx, cy = rng.uniform(0, size, size=2)
            r = rng.uniform(1, 3)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)

    annotations: list[dict[str, Any]] = []
    target = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    attempts = 0
    while len(annotations) < target and attempts < 50:
        attempts += 1
        kind = int(rng.integers(1, len(CATEGORIES) + 1))
        side = size * math.exp(rng.uniform(math.log(spec.min_size), math.log(spec.max_size)))
        r = side / 2
        cx, cy = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        angle = rng.uniform(0, 2 * math.pi) if kind != 1 else 0.0
        poly = [(min(max(x, 0.0), float(size)), min(max(y, 0.0), float(size))) for x, y in _polygon(kind, cx, cy,
                                                                                                   r, angle)]
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        if bbox[2] < 3 or bbox[3] < 3:
            continue
        if any(_overlap(bbox, a["bbox"]) > 0.2 for a in annotations):
            continue
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.polygon(poly, fill=colour, outline=tuple(int(v * 0.6) for v in colour))
        flat = [round(float(v), 2) for p in poly for v in p]
        rle = mask_utils.frPyObjects([flat], size, size)
        area = float(mask_utils.area(mask_utils.merge(rle)))
        annotations.append(
            {
                "category_id": kind,
                "bbox": [round(float(v), 2) for v in bbox],
                "segmentation": [flat],
                "area": round(area, 2),
                "iscrowd": 0,
            }
        )
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=92, optimize=False)
    return buf.getvalue(), annotations


def write_coco_split(
    spec: SynthSpec, indices: Sequence[int], image_dir: str, annotation_file: str, progress: Any = None
) -> int:
    """Draws the images `indices`, writes them as JPEGs and one COCO annotation file. Returns the box count."""
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for n, i in enumerate(indices):
        jpeg, anns = draw_image(spec, i)
        name = f"{i:06d}.jpg"
        with open(os.path.join(image_dir, name), "wb") as fh:
            fh.write(jpeg)
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "height": spec.image_size, "width": spec.image_size})
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
        if progress is not None:
            progress(n + 1, len(indices))
    doc = {
        "info": {
            "description": "spinenet-nas synthetic shapes",
            "version": str(GENERATOR_VERSION),
            "seed": spec.seed,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES],
    }
    with open(annotation_file, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return len(annotations)

"""Detections from the golden model (or any model with the same interface) and drawing them.

A *model* here is anything with ``config``, ``__call__(images) -> last-layer acc`` and
``decode_inputs(acc) -> real head`` — :class:`dupnet.sw.golden.GoldenModel`, or an object
replaying accumulators captured from the RTL (``dupnet flow`` uses both and compares).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from ..errors import DupnetError
from .datasets import letterbox
from .yolo import decode_predictions, nms

__all__ = ["read_image", "detect_image", "draw_boxes"]


def read_image(path, channels):
    """``(network input [h, w] or [h, w, 3] uint8 in the config's channels, RGB for drawing)``."""
    try:
        with Image.open(path) as im:
            net = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
            return net.copy(), np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DupnetError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DupnetError(f"{path}: not a readable image ({e})") from None


def detect_image(model, image, conf=0.5, iou=0.45):
    """Golden-model detections of one uint8 image ``[h, w]`` or ``[h, w, C]``.

    Returns ``(boxes [N, 4] in the image's pixels, scores [N])``, best first.
    """

    cfg = model.config
    h, w = image.shape[:2]
    size = (cfg.input_height, cfg.input_width)
    # letterbox the image and a probe box covering it: the probe gives the exact mapping
    net_in, probe = letterbox(image, np.array([[0, 0, w, h]], np.float32), size)
    if net_in.ndim == 2:
        net_in = net_in[:, :, None]
    acc = model(net_in[None])
    head = model.decode_inputs(acc)[0]
    boxes, scores = decode_predictions(head, cfg.anchors, size, conf)
    keep = nms(boxes, scores, iou)
    boxes, scores = boxes[keep], scores[keep]
    x0, y0, x1, y1 = (float(v) for v in probe[0])
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    out = np.empty_like(boxes)
    out[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - x0) / sx, 0, w)
    out[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - y0) / sy, 0, h)
    return out, scores


def draw_boxes(image, boxes, scores):
    """An RGB PIL image of ``image`` with the boxes and scores drawn."""

    img = image if image.ndim == 3 else image[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    pil = Image.fromarray(np.ascontiguousarray(img), "RGB")
    d = ImageDraw.Draw(pil)
    width = max(1, round(min(pil.size) / 128))
    for (x0, y0, x1, y1), s in zip(boxes, scores):
        d.rectangle([x0, y0, x1, y1], outline=(255, 32, 32), width=width)
        d.text((x0 + 2, y0 + 1), f"{s:.2f}", fill=(255, 255, 0))
    return pil

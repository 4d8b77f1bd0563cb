"""Detections from the golden model (or any model with the same interface) and drawing them.

A *model* here is anything with ``config``, ``__call__(images) -> last-layer acc`` and
``decode_inputs(acc) -> real head`` — :class:`dupnet.sw.golden.GoldenModel`, or an object
replaying accumulators captured from the RTL (``dupnet flow`` uses both and compares).

Two ways to look at a photo:

* :func:`detect_image` letterboxes the whole photo into the network input (one frame);
* :func:`detect_tiled` scans it the way the accelerator would scan a camera frame: at several
  scales (:func:`tile_scales`, chosen from the anchors' face sizes), each rescaled photo cut
  into overlapping network-size tiles (:func:`tile_plan`), every tile's boxes kept only when
  their centre lies in the part of the tile it owns (:meth:`TileLevel.owned`), mapped back to
  photo pixels (:func:`canvas_to_photo`), and duplicates across tiles and scales merged by NMS
  (:func:`merge_detections`).  Faces a few pixels tall in a big group photo, which the
  letterboxed frame shrinks below anything the anchors cover, are found at the finer scales.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from ..errors import DupnetError
from .datasets import letterbox
from .yolo import decode_predictions, nms

__all__ = ["read_image", "detect_image", "draw_boxes", "anchor_face_sizes", "tile_scales",
           "axis_tiles", "TileLevel", "tile_plan", "should_tile", "render_level",
           "canvas_to_photo", "merge_detections", "indexed_nms", "detect_tiled",
           "MIN_SCALE_STEP", "TILE_FACTOR"]

#: tiling is automatic when the photo is more than this many times the network input in
#: height or width (``dupnet detect`` without ``--tile`` / ``--no-tile``)
TILE_FACTOR = 2
#: the smallest ratio between consecutive scales (anchors of nearly one size would otherwise
#: ask for very many scales)
MIN_SCALE_STEP = math.sqrt(2)
#: a scale this close (ratio) to the previous one adds nothing
_NEAR = 1.25


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


def _frame_detections(model, frames: np.ndarray, conf: float, iou: float) -> list:
    """Per network-size frame ``[N, H, W, C]``: its ``(boxes, scores)`` in frame pixels after
    the per-frame NMS, best first."""
    cfg = model.config
    size = (cfg.input_height, cfg.input_width)
    heads = model.decode_inputs(model(frames))
    out = []
    for head in heads:
        boxes, scores = decode_predictions(head, cfg.anchors, size, conf)
        keep = nms(boxes, scores, iou)
        out.append((boxes[keep], scores[keep]))
    return out


def detect_image(model, image, conf=0.5, iou=0.45):
    """Golden-model detections of one uint8 image ``[h, w]`` or ``[h, w, C]``, the whole image
    letterboxed into the network input.

    Returns ``(boxes [N, 4] in the image's pixels, scores [N])``, best first.
    """
    cfg = model.config
    h, w = image.shape[:2]
    size = (cfg.input_height, cfg.input_width)
    # letterbox the image and a probe box covering it: the probe gives the exact mapping
    net_in, probe = letterbox(image, np.array([[0, 0, w, h]], np.float32), size)
    if net_in.ndim == 2:
        net_in = net_in[:, :, None]
    boxes, scores = _frame_detections(model, net_in[None], conf, iou)[0]
    return canvas_to_photo(boxes, probe[0], (h, w)), scores


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


# ----------------------------------------------------------------------------------------------
# Tiled, multi-scale detection


def anchor_face_sizes(cfg) -> tuple[float, float]:
    """The smallest and largest face size the anchors stand for, in network-input pixels.

    An anchor ``(w, h)`` in grid cells is a face of ``sqrt(w * h)`` cells, one cell being
    ``input / grid`` pixels (the network's stride; the grid is the last layer's output).
    """
    from .config import network_geometry
    last = next(g for g in network_geometry(cfg) if g.is_last)
    cell = math.sqrt((cfg.input_height / last.out_height) * (cfg.input_width / last.out_width))
    sides = [math.sqrt(w * h) * cell for w, h in cfg.anchors]
    return min(sides), max(sides)


def tile_scales(photo_hw: tuple[int, int], net_hw: tuple[int, int],
                face_sizes: tuple[float, float], min_face: float | None = None) -> list[float]:
    """The scales (network pixels per photo pixel) a photo is scanned at, coarsest first.

    Parameters
    ----------
    photo_hw, net_hw : (height, width) of the photo and of the network input
    face_sizes : (smallest, largest) anchor face size in network pixels
        (:func:`anchor_face_sizes`)
    min_face : the smallest face to look for, in photo pixels (default: the smallest anchor
        face size, i.e. the finest scale is the photo's own resolution)

    Returns
    -------
    list of float
        The coarsest scale is the whole photo letterboxed into one frame (faces up to the
        photo's size land in the anchors' range there); each next scale is finer by the
        ratio of the largest to the smallest anchor face (at least :data:`MIN_SCALE_STEP`),
        so that the face sizes the anchors cover at one scale meet those of the next; the
        finest maps a face of ``min_face`` photo pixels onto the smallest anchor face.
    """
    (h, w), (nh, nw) = photo_hw, net_hw
    a_min, a_max = face_sizes
    if min(h, w, nh, nw) < 1 or a_min <= 0:
        raise DupnetError(f"tile_scales: bad sizes photo {photo_hw}, input {net_hw}, "
                          f"faces {face_sizes}")
    if min_face is not None and min_face <= 0:
        raise DupnetError(f"the smallest face must be > 0 pixels, got {min_face}")
    fit = min(nh / h, nw / w)
    finest = a_min / (a_min if min_face is None else min_face)
    step = max(a_max / a_min, MIN_SCALE_STEP)
    scales = [fit]
    while scales[-1] * step < finest:
        scales.append(scales[-1] * step)
    if finest / scales[-1] >= _NEAR:
        scales.append(finest)
    elif len(scales) > 1:
        scales[-1] = finest              # nearly the finest already: that one instead
    return scales


def axis_tiles(length: int, tile: int, overlap: int) -> list[int]:
    """Left (top) edges of tiles of ``tile`` pixels covering ``[0, length)`` with at least
    ``overlap`` pixels shared by neighbours; the last tile ends at ``length``."""
    if tile < 1 or not 0 <= overlap < tile:
        raise DupnetError(f"axis_tiles: tile {tile} with overlap {overlap}: need "
                          f"0 <= overlap < tile")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


@dataclass(frozen=True)
class TileLevel:
    """One scale of a tile plan: the photo resized by ``scale`` (letterboxed into a canvas of
    ``canvas`` = (height, width) pixels, at least one tile in each dimension) and cut into
    tiles of ``tile`` = (height, width) pixels at the left edges ``xs`` and top edges ``ys``."""
    scale: float
    canvas: tuple[int, int]
    tile: tuple[int, int]
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    def tiles(self) -> list[tuple[int, int]]:
        """``(x, y)`` top-left corners of every tile, row by row."""
        return [(x, y) for y in self.ys for x in self.xs]

    def owned(self, x: int, y: int) -> tuple[float, float, float, float]:
        """The canvas region ``[x0, x1) x [y0, y1)`` the tile at ``(x, y)`` owns: a box found
        in this tile is kept when its centre lies there.  Neighbours split their overlap in
        the middle, so the owned regions tile the canvas without gaps or double cover."""
        x0, x1 = _owned_span(self.xs, x, self.tile[1])
        y0, y1 = _owned_span(self.ys, y, self.tile[0])
        return x0, y0, x1, y1


def _owned_span(starts: tuple[int, ...], start: int, tile: int) -> tuple[float, float]:
    """``[lo, hi)`` owned along one axis by the tile at ``start``: from the middle of the
    overlap with the previous tile to the middle of the overlap with the next (unbounded at
    the canvas edges)."""
    i = starts.index(start)
    lo = -math.inf if i == 0 else (starts[i - 1] + tile + start) / 2
    hi = math.inf if i == len(starts) - 1 else (start + tile + starts[i + 1]) / 2
    return lo, hi


def tile_plan(photo_hw: tuple[int, int], net_hw: tuple[int, int],
              face_sizes: tuple[float, float], min_face: float | None = None
              ) -> list[TileLevel]:
    """The tiles a photo of ``photo_hw`` is scanned with, one :class:`TileLevel` per scale of
    :func:`tile_scales`.  Neighbouring tiles overlap by the largest anchor face (at most half
    a tile), so every face the anchors cover lies whole inside the tile that owns its
    centre."""
    (h, w), (nh, nw) = photo_hw, net_hw
    overlap = min(math.ceil(face_sizes[1]), nh // 2, nw // 2)
    levels = []
    for s in tile_scales(photo_hw, net_hw, face_sizes, min_face):
        ch, cw = max(nh, round(h * s)), max(nw, round(w * s))
        levels.append(TileLevel(scale=s, canvas=(ch, cw), tile=(nh, nw),
                                xs=tuple(axis_tiles(cw, nw, overlap)),
                                ys=tuple(axis_tiles(ch, nh, overlap))))
    return levels


def should_tile(photo_hw: tuple[int, int], net_hw: tuple[int, int]) -> bool:
    """Whether ``dupnet detect`` tiles a photo by default: it is more than
    :data:`TILE_FACTOR` times the network input in height or width."""
    return photo_hw[0] > TILE_FACTOR * net_hw[0] or photo_hw[1] > TILE_FACTOR * net_hw[1]


def render_level(image: np.ndarray, level: TileLevel) -> tuple[np.ndarray, np.ndarray]:
    """The canvas of one level (``uint8 [H, W, C]``: the photo resized and letterboxed as
    :func:`~dupnet.sw.datasets.letterbox` does for training) and the photo's rectangle in it
    (``[x0, y0, x1, y1]``, the exact mapping for :func:`canvas_to_photo`)."""
    h, w = image.shape[:2]
    canvas, probe = letterbox(image, np.array([[0, 0, w, h]], np.float32), level.canvas)
    if canvas.ndim == 2:
        canvas = canvas[:, :, None]
    return canvas, probe[0]


def canvas_to_photo(boxes: np.ndarray, rect, photo_hw: tuple[int, int]) -> np.ndarray:
    """Boxes ``[N, 4]`` in canvas (or letterboxed frame) pixels -> photo pixels, clipped to the
    photo; ``rect`` = ``[x0, y0, x1, y1]``: where the photo lies in the canvas."""
    h, w = photo_hw
    x0, y0, x1, y1 = (float(v) for v in rect)
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = np.empty_like(b)
    out[:, [0, 2]] = np.clip((b[:, [0, 2]] - x0) / sx, 0, w)
    out[:, [1, 3]] = np.clip((b[:, [1, 3]] - y0) / sy, 0, h)
    return out


def merge_detections(boxes: list[np.ndarray], scores: list[np.ndarray], iou: float = 0.45
                     ) -> tuple[np.ndarray, np.ndarray]:
    """NMS across tiles and scales: the boxes (photo pixels) and scores of every tile, as
    lists, merged into one ``(boxes [N, 4], scores [N])``, best first; a face seen by several
    tiles or at several scales keeps its best-scoring box.  The result is
    :func:`~dupnet.sw.yolo.nms`'s (greedy, by descending score), computed with a grid index
    so that thousands of boxes over a big photo only meet their neighbours."""
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    b = np.concatenate([np.asarray(x, np.float32).reshape(-1, 4) for x in boxes])
    s = np.concatenate([np.asarray(x, np.float32).reshape(-1) for x in scores])
    keep = indexed_nms(b, s, iou)
    return b[keep], s[keep]


def indexed_nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float = 0.45,
                cell: float | None = None) -> np.ndarray:
    """Greedy NMS with the result of :func:`~dupnet.sw.yolo.nms` (kept indices, descending
    score, ties by index), each box compared only with the boxes sharing a grid cell of
    ``cell`` pixels (default: the median box side) instead of with every box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) != len(sc):
        raise ValueError(f"indexed_nms: {len(b)} boxes but {len(sc)} scores")
    if len(b) == 0:
        return np.zeros((0,), np.int64)
    sides = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    cell = cell or max(1.0, float(np.median(sides)))
    lo, hi = np.floor(b[:, :2] / cell).astype(int), np.floor(b[:, 2:] / cell).astype(int)
    buckets: dict[tuple[int, int], list[int]] = {}
    for i in range(len(b)):
        for gx in range(lo[i, 0], hi[i, 0] + 1):
            for gy in range(lo[i, 1], hi[i, 1] + 1):
                buckets.setdefault((gx, gy), []).append(i)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    suppressed = np.zeros(len(b), bool)
    keep = []
    for i in np.argsort(-sc, kind="stable"):
        if suppressed[i]:
            continue
        keep.append(int(i))
        near = np.unique(np.concatenate([buckets[(gx, gy)]
                                         for gx in range(lo[i, 0], hi[i, 0] + 1)
                                         for gy in range(lo[i, 1], hi[i, 1] + 1)]))
        near = near[~suppressed[near] & (near != i)]
        w = np.clip(np.minimum(b[i, 2], b[near, 2]) - np.maximum(b[i, 0], b[near, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[near, 3]) - np.maximum(b[i, 1], b[near, 1]), 0, None)
        inter = w * h
        union = area[i] + area[near] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            ov = np.where(union > 0, inter / union, 0.0)
        suppressed[near[ov > iou_thresh]] = True
    return np.asarray(keep, dtype=np.int64)


def _owned_mask(boxes: np.ndarray, owned: tuple[float, float, float, float]) -> np.ndarray:
    """Which boxes (canvas pixels) have their centre in ``owned`` = ``[x0, x1) x [y0, y1)``."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    x0, y0, x1, y1 = owned
    return (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)


def detect_tiled(model, image: np.ndarray, conf: float = 0.5, iou: float = 0.45,
                 min_face: float | None = None, batch: int = 128):
    """Multi-scale tiled detections of one uint8 photo ``[h, w]`` or ``[h, w, C]``.

    Parameters
    ----------
    model : GoldenModel or the same interface
    image : the photo in the network's channels
    conf, iou : score threshold, and NMS IoU (within a tile and across tiles and scales)
    min_face : smallest face to look for, photo pixels (:func:`tile_scales`)
    batch : tiles per model call

    Returns
    -------
    tuple
        ``(boxes [N, 4] in photo pixels, scores [N], plan)``, best first; ``plan`` is the
        list of :class:`TileLevel` scanned.
    """
    cfg = model.config
    h, w = image.shape[:2]
    net = (cfg.input_height, cfg.input_width)
    plan = tile_plan((h, w), net, anchor_face_sizes(cfg), min_face)
    all_boxes, all_scores = [], []
    for level in plan:
        canvas, rect = render_level(image, level)
        corners = level.tiles()
        for k in range(0, len(corners), batch):
            part = corners[k:k + batch]
            frames = np.stack([canvas[y:y + net[0], x:x + net[1]] for x, y in part])
            for (x, y), (b, s) in zip(part, _frame_detections(model, frames, conf, iou)):
                b = b + np.array([x, y, x, y], np.float32)
                keep = _owned_mask(b, level.owned(x, y))
                all_boxes.append(canvas_to_photo(b[keep], rect, (h, w)))
                all_scores.append(s[keep])
    boxes, scores = merge_detections(all_boxes, all_scores, iou)
    return boxes, scores, plan

"""Tiled, multi-scale detection (dupnet.sw.detect): scales from the anchors, tiles that cover
the photo, ownership of overlaps, mapping back to photo pixels and NMS across tiles, checked
end to end with a stand-in detector that reports bright squares at their exact position."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from dupnet.errors import DupnetError
from dupnet.sw.config import parse_config
from dupnet.sw.detect import (MIN_SCALE_STEP, TileLevel, anchor_face_sizes, axis_tiles,
                              canvas_to_photo, detect_image, detect_tiled, indexed_nms,
                              merge_detections, should_tile, tile_plan, tile_scales)
from dupnet.sw.yolo import nms

from ..tiny_configs import tiny_config_toml


@pytest.fixture(scope="module")
def cfg():
    import tomllib
    # 32x32 input, grid 8 (stride 4), anchors 2 and 4 cells: faces of 8 and 16 pixels
    return parse_config(tomllib.loads(tiny_config_toml("tiles-tiny", size=32)))


class SquareModel:
    """A stand-in detector with the golden model's interface: every bright square (pixels
    > 127) between 3 pixels and 1.5 x the largest anchor face in a frame is reported at its
    exact position, larger squares scoring higher (so the finest scale's box wins NMS)."""

    def __init__(self, cfg):
        self.config = cfg
        self.face_max = anchor_face_sizes(cfg)[1]

    def __call__(self, frames):
        return np.asarray(frames)

    def decode_inputs(self, frames):
        return np.stack([self._head(f[:, :, 0]) for f in frames])

    def _head(self, frame):
        cfg = self.config
        grid, stride = 8, cfg.input_height / 8
        head = np.full((grid, grid, 12), -30.0, np.float32)
        labels, _ = ndimage.label(frame > 127)
        for sl in ndimage.find_objects(labels):
            y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            side = max(x1 - x0, y1 - y0)
            if not 3 <= side <= 1.5 * self.face_max:
                continue
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
            gx, gy = min(int(cx), grid - 1), min(int(cy), grid - 1)
            fx, fy = np.clip([cx - gx, cy - gy], 1e-7, 1 - 1e-7)
            aw = cfg.anchors[0][0] * stride
            score = 0.5 + 0.4 * min(side, self.face_max) / self.face_max
            head[gy, gx, :6] = [math.log(fx / (1 - fx)), math.log(fy / (1 - fy)),
                                math.log((x1 - x0) / aw), math.log((y1 - y0) / aw),
                                math.log(score / (1 - score)), 0.0]
        return head


def _photo(h, w, faces, side=12):
    img = np.zeros((h, w), np.uint8)
    for x, y in faces:
        img[y:y + side, x:x + side] = 255
    return img


def test_anchor_face_sizes(cfg):
    assert anchor_face_sizes(cfg) == pytest.approx((8.0, 16.0))


def test_scales_follow_the_anchor_face_sizes():
    s = tile_scales((300, 400), (32, 32), (8.0, 16.0))
    assert s[0] == pytest.approx(32 / 400)              # the whole photo in one frame
    assert s[-1] == pytest.approx(1.0)                  # a face of 8 px onto the 8 px anchor
    ratios = [b / a for a, b in zip(s, s[1:])]
    assert all(MIN_SCALE_STEP * 0.99 <= r <= 2.0 + 1e-9 for r in ratios), ratios
    assert tile_scales((300, 400), (32, 32), (8.0, 16.0), min_face=4)[-1] == pytest.approx(2.0)
    # nearly equal anchors: the step stays at least sqrt(2)
    s = tile_scales((640, 640), (32, 32), (10.0, 11.0))
    assert all(b / a >= MIN_SCALE_STEP * 0.99 for a, b in zip(s, s[1:]))


def test_a_photo_no_bigger_than_the_input_has_one_scale():
    assert tile_scales((30, 20), (32, 32), (8.0, 16.0)) == [pytest.approx(32 / 30)]
    assert tile_scales((32, 32), (32, 32), (8.0, 16.0)) == [pytest.approx(1.0)]


@pytest.mark.parametrize("bad", [dict(min_face=0), dict(min_face=-3)])
def test_scales_reject_bad_sizes(bad):
    with pytest.raises(DupnetError, match="smallest face"):
        tile_scales((300, 400), (32, 32), (8.0, 16.0), **bad)


@pytest.mark.parametrize("length", [1, 31, 32, 33, 47, 48, 100, 401])
def test_axis_tiles_cover_with_the_overlap(length):
    tile, overlap = 32, 16
    xs = axis_tiles(length, tile, overlap)
    assert xs[0] == 0 and xs == sorted(set(xs))
    assert xs[-1] + tile >= length
    if length > tile:
        assert xs[-1] + tile == length
        assert all(a + tile - b >= overlap for a, b in zip(xs, xs[1:]))
    with pytest.raises(DupnetError, match="overlap"):
        axis_tiles(length, tile, tile)


def test_tiles_cover_the_canvas_and_owned_regions_partition_it(cfg):
    plan = tile_plan((300, 400), (32, 32), anchor_face_sizes(cfg))
    assert len(plan) == 5 and plan[0].xs == (0,) and plan[0].ys == (0,)
    for level in plan:
        ch, cw = level.canvas
        assert ch >= 32 and cw >= 32
        covered = np.zeros((ch, cw), int)
        owners = np.zeros((ch, cw), int)
        yy, xx = np.mgrid[0:ch, 0:cw] + 0.5
        for x, y in level.tiles():
            covered[y:y + 32, x:x + 32] += 1
            x0, y0, x1, y1 = level.owned(x, y)
            mine = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
            owners += mine
            # a face up to the overlap (16 px) centred in the owned part lies in the tile:
            # owned points are >= 8 px from every tile edge inside the canvas
            px, py = xx[mine], yy[mine]
            assert x == 0 or (px - x).min() >= 8
            assert y == 0 or (py - y).min() >= 8
            assert x + 32 == cw or (x + 32 - px).min() >= 8
            assert y + 32 == ch or (y + 32 - py).min() >= 8
        assert covered.min() >= 1
        assert np.all(owners == 1)


def test_canvas_to_photo_maps_back_exactly():
    # a 30 x 40 photo letterboxed at scale 0.5 into a 32 x 32 canvas: rect (6, 8.5)-(26, 23.5)
    rect = [6.0, 8.5, 26.0, 23.5]
    photo = canvas_to_photo(np.array([[6.0, 8.5, 16.0, 16.0], [0, 0, 32, 32]]), rect, (30, 40))
    assert photo[0] == pytest.approx([0, 0, 20, 15])
    assert photo[1] == pytest.approx([0, 0, 40, 30])         # clipped to the photo


def test_merge_detections_keeps_one_box_per_face_across_tiles():
    a = np.array([[10, 10, 22, 22]], np.float32)
    b = np.array([[10.5, 10, 22.5, 22], [100, 100, 112, 112]], np.float32)
    boxes, scores = merge_detections([a, b], [np.array([0.7]), np.array([0.9, 0.6])], 0.45)
    assert len(boxes) == 2
    assert boxes[0] == pytest.approx([10.5, 10, 22.5, 22]) and scores[0] == pytest.approx(0.9)
    empty = merge_detections([], [])
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)


@pytest.mark.parametrize("seed", range(4))
def test_indexed_nms_is_greedy_nms(seed):
    rng = np.random.default_rng(seed)
    n = 400
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.choice([4.0, 12.0, 40.0, 150.0], (n, 1)) * rng.uniform(0.8, 1.2, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    boxes[50:60] = boxes[40:50]                               # exact duplicates
    scores = rng.choice([0.5, 0.6, 0.7, 0.9], n).astype(np.float32)   # many ties
    for thr in (0.0, 0.3, 0.45, 0.9):
        assert np.array_equal(indexed_nms(boxes, scores, thr), nms(boxes, scores, thr))
    assert indexed_nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_faces_in_a_big_photo_map_back_to_their_pixels(cfg):
    # 12-pixel faces: letterboxed whole (scale 0.08) they would be one pixel; one face
    # straddles tile borders at every scale, two share a tile at the coarse scales
    faces = [(37, 21), (200, 150), (230, 160), (381, 280), (5, 270)]
    photo = _photo(300, 400, faces)
    model = SquareModel(cfg)
    assert len(detect_image(model, photo)[0]) == 0           # the old path misses them all
    boxes, scores, plan = detect_tiled(model, photo, conf=0.5, iou=0.45)
    assert len(plan) == 5
    assert len(boxes) == len(faces)                           # no duplicates across tiles
    want = sorted([x, y, x + 12, y + 12] for x, y in faces)
    got = sorted(boxes.tolist())
    assert np.allclose(got, want, atol=0.01), (got, want)
    assert np.all(scores >= 0.5)


def test_min_face_adds_a_finer_scale(cfg):
    photo = _photo(160, 160, [(50, 60)], side=2)              # too small for native resolution
    model = SquareModel(cfg)
    assert len(detect_tiled(model, photo)[0]) == 0
    boxes, _, plan = detect_tiled(model, photo, min_face=2)
    assert plan[-1].scale == pytest.approx(4.0)               # upsampled: 2 px onto 8 px
    assert boxes.tolist() == [pytest.approx([50, 60, 52, 62], abs=0.3)]


def test_tiled_on_a_small_image_is_the_letterboxed_frame(cfg):
    photo = _photo(30, 24, [(5, 12)], side=10)
    model = SquareModel(cfg)
    b1, s1 = detect_image(model, photo)
    b2, s2, plan = detect_tiled(model, photo)
    assert len(plan) == 1 and plan[0].tiles() == [(0, 0)]
    assert len(b1) == 1 and np.array_equal(b1, b2) and np.array_equal(s1, s2)


def test_should_tile_over_twice_the_input():
    assert not should_tile((64, 64), (32, 32))
    assert should_tile((65, 20), (32, 32)) and should_tile((10, 65), (32, 32))


def test_tile_level_owned_spans_meet_in_the_middle():
    level = TileLevel(scale=1.0, canvas=(32, 80), tile=(32, 32), xs=(0, 16, 32, 48), ys=(0,))
    spans = [level.owned(x, 0)[::2] for x in level.xs]
    assert spans[0][0] == -math.inf and spans[-1][1] == math.inf
    assert [s[1] for s in spans[:-1]] == [s[0] for s in spans[1:]] == [24.0, 40.0, 56.0]

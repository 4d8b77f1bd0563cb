"""YOLOv2 head: decode, NMS, target assignment and loss (hand-computed cases)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dupnet.sw.yolo import (YoloLoss, box_iou, build_targets, decode_batch,
                            decode_predictions, detect, nms, sigmoid)

from ..tiny_configs import tiny_config_toml

TINY_TOML = tiny_config_toml("tiny-yolo-test", widths=(8, 16))


@pytest.fixture
def tiny_cfg(tmp_path):
    from dupnet.sw.config import load_config
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return load_config(p)


def logit(p):
    return math.log(p / (1 - p))


def _head_cfg(anchors, classes=1, size=(64, 64)):
    return SimpleNamespace(anchors=tuple(tuple(a) for a in anchors), classes=classes,
                           input_height=size[0], input_width=size[1])


# ---------------------------------------------------------------------------------------------
# decode


def test_decode_zero_head_gives_anchor_boxes_at_cell_centres():
    # 2x2 grid on a 16x16 image: stride 8; anchors (1,1) and (2,1) cells
    head = np.zeros((2, 2, 2 * 6), np.float32)
    boxes, scores = decode_predictions(head, [(1, 1), (2, 1)], (16, 16), conf_thresh=0.0)
    assert boxes.shape == (8, 4) and scores.shape == (8,)
    np.testing.assert_allclose(scores, 0.5)
    # order: cell (0,0) anchor 0, cell (0,0) anchor 1, cell (0,1) anchor 0, ...
    # cell (y=0, x=0): centre (4, 4); anchor 0: 8x8 px; anchor 1: 16x8 px -> clipped at 0
    np.testing.assert_allclose(boxes[0], [0, 0, 8, 8])
    np.testing.assert_allclose(boxes[1], [0, 0, 12, 8])
    # cell (y=0, x=1): centre (12, 4)
    np.testing.assert_allclose(boxes[2], [8, 0, 16, 8])
    # cell (y=1, x=0), anchor 1: centre (4, 12), 16x8 -> x clipped to [0, 12]
    np.testing.assert_allclose(boxes[5], [0, 8, 12, 16])


def test_decode_offsets_and_log_sizes():
    head = np.zeros((4, 4, 6), np.float32)
    # cell (y=2, x=1), anchor (2, 3): tx -> sigmoid 0.25, ty -> 0.75, tw = log 0.5, th = log 2
    head[2, 1] = [logit(0.25), logit(0.75), math.log(0.5), math.log(2.0), logit(0.9), 0.0]
    boxes, scores = decode_predictions(head, [(2.0, 3.0)], (64, 64), conf_thresh=0.8)
    assert len(boxes) == 1
    stride = 16
    bx, by = (1 + 0.25) * stride, (2 + 0.75) * stride        # 20, 44
    bw, bh = 2 * 0.5 * stride, 3 * 2.0 * stride               # 16, 96
    np.testing.assert_allclose(scores, [0.9], rtol=1e-6)
    np.testing.assert_allclose(boxes[0], [bx - bw / 2, max(0, by - bh / 2), bx + bw / 2,
                                          min(64, by + bh / 2)], rtol=1e-5)


def test_decode_non_square_stride_and_threshold():
    head = np.full((2, 4, 6), logit(0.2), np.float32)        # H'=2, W'=4 on 32x64 (H, W)
    head[..., :4] = 0.0
    head[1, 3, 4] = logit(0.7)
    boxes, scores = decode_predictions(head, [(1.0, 1.0)], (32, 64), conf_thresh=0.5)
    # strides 16 (both axes here: 32/2 and 64/4); cell (1, 3) centre (56, 24)
    np.testing.assert_allclose(boxes, [[48, 16, 64, 32]])
    np.testing.assert_allclose(scores, [0.7], rtol=1e-6)
    assert len(decode_predictions(head, [(1.0, 1.0)], (32, 64), conf_thresh=0.0)[0]) == 8


def test_decode_multiclass_score_and_labels():
    head = np.zeros((1, 1, 7), np.float32)                     # one anchor, 2 classes
    head[0, 0, 4] = logit(0.8)
    head[0, 0, 5:] = [0.0, math.log(3.0)]                      # softmax -> 0.25, 0.75
    boxes, scores, labels = decode_predictions(head, [(1, 1)], (8, 8), 0.0, with_classes=True)
    np.testing.assert_allclose(scores, [0.8 * 0.75], rtol=1e-6)
    assert labels.tolist() == [1]


def test_decode_rejects_bad_shapes():
    with pytest.raises(ValueError, match="anchors"):
        decode_predictions(np.zeros((2, 2, 11)), [(1, 1), (2, 2)], (16, 16))
    with pytest.raises(ValueError, match="anchors"):
        decode_predictions(np.zeros((2, 2, 6)), [(0, 1)], (16, 16))


def test_decode_extreme_logits_stay_finite():
    head = np.zeros((2, 2, 6), np.float32)
    head[..., 2:4] = 1e4
    head[..., 4] = -1e4
    boxes, scores = decode_predictions(head, [(1, 1)], (16, 16), conf_thresh=0.0)
    assert np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))
    assert boxes.min() >= 0 and boxes.max() <= 16


def test_torch_batch_decode_matches_numpy():
    rng = np.random.default_rng(0)
    anchors = [(1.5, 2.0), (3.0, 2.5)]
    head = rng.normal(0, 1.5, (3, 12, 4, 5)).astype(np.float32)     # [N, A*6, H', W']
    tb, ts = decode_batch(torch.from_numpy(head), anchors, (32, 40))
    for i in range(3):
        nb, ns = decode_predictions(head[i].transpose(1, 2, 0), anchors, (32, 40), 0.0)
        np.testing.assert_allclose(ts[i].numpy(), ns, rtol=1e-5, atol=1e-6)
        b = tb[i].numpy().copy()
        b[:, 0::2] = b[:, 0::2].clip(0, 40)
        b[:, 1::2] = b[:, 1::2].clip(0, 32)
        np.testing.assert_allclose(b, nb, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# NMS and IoU


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_nms_known_case():
    boxes = np.array([[0, 0, 10, 10],      # 0: score .6
                      [1, 0, 11, 10],      # 1: score .9, IoU with 0 = 90/110 = .818
                      [20, 20, 30, 30],    # 2: score .5, disjoint
                      [5, 0, 15, 10]],     # 3: score .7, IoU with 1 = 60/140 = .43, with 0 = .33
                     np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, 0.45).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 3, 0, 2]


def test_nms_ties_and_empty():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.5, 0.5]), 0.45).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(ValueError):
        nms(boxes, np.zeros(3))


def test_detect_is_decode_then_nms():
    head = np.full((2, 2, 6), -10.0, np.float32)
    head[0, 0, :4] = 0
    head[0, 0, 4] = 3.0
    head[0, 1, :4] = [-10, 0, 0, 0]          # box centred at x = 8 + 0: overlaps (0, 0)'s box
    head[0, 1, 4] = 2.0
    boxes, scores = detect(head, [(2, 2)], (16, 16), conf_thresh=0.1, iou_thresh=0.45)
    assert len(boxes) == 1 and scores[0] == pytest.approx(sigmoid(np.float32(3.0)))


# ---------------------------------------------------------------------------------------------
# targets


def test_build_targets_hand_case():
    # 64x64 image, 8x8 grid (stride 8), anchors 2x2 and 4x4 cells
    box = np.array([[10, 20, 30, 52]], np.float32)       # centre (20, 36), 20x32 px
    t = build_targets([box], [(2, 2), (4, 4)], (8, 8), (64, 64))
    assert t.mask.shape == (1, 2, 8, 8) and int(t.mask.sum()) == 1
    # centre in cells (2.5, 4.5) -> cell x=2, y=4; size (2.5, 4) cells: IoU with 2x2 = 4/10,
    # with 4x4 = 10/16 -> anchor 1
    assert bool(t.mask[0, 1, 4, 2])
    assert float(t.tx[0, 1, 4, 2]) == pytest.approx(0.5)
    assert float(t.ty[0, 1, 4, 2]) == pytest.approx(0.5)
    assert float(t.tw[0, 1, 4, 2]) == pytest.approx(math.log(2.5 / 4))
    assert float(t.th[0, 1, 4, 2]) == pytest.approx(math.log(4 / 4))
    assert float(t.scale[0, 1, 4, 2]) == pytest.approx(2 - (2.5 / 8) * (4 / 8))


def test_build_targets_collision_larger_wins_and_empty_boxes_skipped():
    small = [16, 16, 28, 28]          # centre (22, 22), 12 px = 1.5 cells -> anchor 0 (2x2)
    large = [14, 14, 30, 30]          # centre (22, 22), 16 px = 2 cells -> anchor 0
    empty = [40, 40, 40, 50]
    for order in ([small, large, empty], [large, empty, small]):
        t = build_targets([np.array(order, np.float32)], [(2, 2), (5, 5)], (8, 8), (64, 64))
        assert int(t.mask.sum()) == 1
        assert float(t.tw[0, 0, 2, 2]) == pytest.approx(math.log(2 / 2))
    t = build_targets([np.zeros((0, 4), np.float32)], [(2, 2)], (8, 8), (64, 64))
    assert int(t.mask.sum()) == 0


def test_targets_encode_what_decode_reads_back():
    """Writing the targets into a head as logits decodes to the ground-truth boxes."""
    anchors = [(1.0, 1.5), (3.0, 3.0)]
    gt = np.array([[3, 5, 14, 20], [30, 33, 60, 61], [40, 2, 47, 9]], np.float32)
    t = build_targets([gt], anchors, (8, 8), (64, 64))
    head = np.full((8, 8, 2, 6), -20.0, np.float32)
    m = t.mask[0].numpy()
    for a, y, x in zip(*np.nonzero(m)):
        tx, ty = float(t.tx[0, a, y, x]), float(t.ty[0, a, y, x])
        head[y, x, a] = [logit(tx), logit(ty), float(t.tw[0, a, y, x]),
                         float(t.th[0, a, y, x]), 10.0, 0.0]
    boxes, scores = decode_predictions(head.reshape(8, 8, 12), anchors, (64, 64), 0.5)
    assert len(boxes) == 3
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order], gt[np.argsort(gt[:, 0])], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# loss


def _perfect_head(t, anchors, nf=6):
    n, na, gh, gw = t.mask.shape
    head = torch.full((n, na, nf, gh, gw), -8.0)
    m = t.mask
    eps = 1e-4
    head[:, :, 0][m] = torch.logit(t.tx[m].clamp(eps, 1 - eps))
    head[:, :, 1][m] = torch.logit(t.ty[m].clamp(eps, 1 - eps))
    head[:, :, 2][m] = t.tw[m]
    head[:, :, 3][m] = t.th[m]
    head[:, :, 4][m] = 8.0
    return head.view(n, na * nf, gh, gw)


def test_loss_perfect_head_is_near_zero_and_zero_head_is_not():
    cfg = _head_cfg([(2, 2), (4, 4)])
    loss = YoloLoss(cfg)
    boxes = [np.array([[10, 20, 30, 52]], np.float32), np.zeros((0, 4), np.float32)]
    t = loss.targets(torch.zeros(2, 12, 8, 8), boxes)
    good, parts = loss(_perfect_head(t, cfg.anchors), boxes)
    assert float(good) < 0.05 and parts["box"] < 1e-6
    bad, _ = loss(torch.zeros(2, 12, 8, 8), boxes)
    assert float(bad) > 10 * float(good) + 1


def test_loss_ignore_rule_spares_good_unassigned_predictions():
    cfg = _head_cfg([(2, 2), (4, 4)])
    boxes = [np.array([[16, 16, 48, 48]], np.float32)]     # 4x4 cells at cell (4, 4)
    head = torch.full((1, 2, 6, 8, 8), -8.0)
    # anchor 0 at cell (4, 4) predicts the box exactly (w = 2 * e^log2 = 4 cells), objectness
    # high although the target is anchor 1: ignored (IoU 1 > 0.6), so no no-object loss
    head[0, 0, 2, 4, 4] = math.log(2.0)
    head[0, 0, 3, 4, 4] = math.log(2.0)
    head[0, 0, 4, 4, 4] = 5.0
    head = head.view(1, 12, 8, 8)
    with_ignore = YoloLoss(cfg, ignore_thresh=0.6)(head, boxes)[1]["noobj"]
    without = YoloLoss(cfg, ignore_thresh=1.01)(head, boxes)[1]["noobj"]
    assert without - with_ignore == pytest.approx(5.0 + math.log1p(math.exp(-5.0)), rel=1e-4)


def test_loss_class_term_only_with_several_classes():
    boxes = [np.array([[10, 10, 30, 30]], np.float32)]
    labels = [np.array([1])]
    two = YoloLoss(_head_cfg([(2, 2)], classes=2))
    head = torch.zeros(1, 7, 8, 8, requires_grad=True)
    total, parts = two(head, boxes, labels)
    assert parts["cls"] == pytest.approx(math.log(2.0), rel=1e-5)
    total.backward()
    g = head.grad.view(1, 7, 8, 8)[0, 5:, 2, 2]
    assert float(g[0]) > 0 > float(g[1])       # descent raises the true class's logit
    one = YoloLoss(_head_cfg([(2, 2)], classes=1))
    assert one(torch.zeros(1, 6, 8, 8), boxes)[1]["cls"] == 0.0


def test_loss_checks_shapes():
    loss = YoloLoss(_head_cfg([(2, 2), (4, 4)]))
    with pytest.raises(ValueError, match="channels"):
        loss(torch.zeros(1, 10, 8, 8), [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="box lists"):
        loss(torch.zeros(2, 12, 8, 8), [np.zeros((0, 4))])


def test_loss_decreases_when_overfitting_a_tiny_set(tiny_cfg):
    from dupnet.sw.datasets import builtin_dataset
    from dupnet.sw.qat import build_model
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # CI: two pytest workers share two cores
    ds = builtin_dataset("train", n=8, size=(32, 32))
    x = torch.from_numpy(np.stack([s.image for s in ds])).permute(0, 3, 1, 2).float()
    boxes = [s.boxes for s in ds]
    model = build_model(tiny_cfg)
    loss_fn = YoloLoss(tiny_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss, _ = loss_fn(model(x), boxes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clip_latent_(1.0)
        first = float(loss.detach()) if first is None else first
    model.train()
    with torch.no_grad():
        final = float(loss_fn(model(x), boxes)[0])
    torch.set_num_threads(threads)
    assert final < 0.5 * first, (first, final)

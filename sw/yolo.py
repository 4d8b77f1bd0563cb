"""YOLOv2-style detection head: target assignment, loss, decoding and NMS.

Head layout (the contract with :mod:`dupnet.sw.qat` and the exported artifact): the last conv
emits ``A * (5 + C)`` channels; channel ``a * (5 + C) + f`` holds field ``f`` of anchor ``a``
with fields ``tx, ty, tw, th, obj, class logits...``.  Anchors ``(w, h)`` are given in
output-grid cells (the config's ``[head] anchors``).  With ``stride = image / grid`` per axis,
a cell ``(cx, cy)`` and anchor ``(aw, ah)`` decode (YOLOv2) as::

    bx = (cx + sigmoid(tx)) * stride_x        bw = aw * exp(tw) * stride_x
    by = (cy + sigmoid(ty)) * stride_y        bh = ah * exp(th) * stride_y
    score = sigmoid(obj) * max softmax(class logits)   (= sigmoid(obj) for one class)

Boxes are ``(x0, y0, x1, y1)`` in input pixels, clipped to the image.

Training targets (:func:`build_targets`): each ground-truth box goes to the cell holding its
centre and to the anchor whose shape (both centred) overlaps it best; the regression targets
are the centre offset inside the cell (learned through a sigmoid) and ``log(w / aw)``.
:class:`YoloLoss` sums, per image,

* box regression: squared error of ``sigmoid(tx), sigmoid(ty), tw, th`` against the targets,
  scaled by ``2 - w*h`` (box area as a fraction of the image; small boxes weigh more);
* objectness: binary cross-entropy with target 1 at assigned anchors and 0 elsewhere, the
  no-object term down-weighted by ``noobj_weight`` and dropped where the predicted box already
  overlaps a ground truth by more than ``ignore_thresh`` (YOLOv2's ignore rule);
* class: cross-entropy at assigned anchors when ``classes > 1``;

and averages over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["sigmoid", "box_iou", "decode_predictions", "decode_batch", "nms",
           "build_targets", "Targets", "YoloLoss", "detect"]

_TW_CLIP = 12.0   # exp(12) ~ 1.6e5 cells: far beyond any image, and no float overflow


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float32 in, float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of ``(x0, y0, x1, y1)`` boxes (numpy)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _check_anchors(anchors) -> np.ndarray:
    a = np.asarray(anchors, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0 or np.any(a <= 0):
        raise ValueError(f"anchors must be a non-empty list of (w, h) > 0, got {anchors!r}")
    return a


def decode_predictions(head_nhwc: np.ndarray, anchors, image_size: tuple[int, int] = (64, 64),
                       conf_thresh: float = 0.5, with_classes: bool = False):
    """Decode one image's real-valued head into boxes and scores.

    Parameters
    ----------
    head_nhwc : ndarray ``[H', W', A*(5+C)]``
        The head of one image, channel-minor (``GoldenModel.decode_inputs(acc)[i]``, or the
        PyTorch head permuted to NHWC).
    anchors : sequence of (w, h)
        Anchor sizes in output-grid cells.
    image_size : (H, W)
        Input image size in pixels; the stride is ``H / H'`` and ``W / W'``.
    conf_thresh : float
        Keep predictions with ``score >= conf_thresh``.
    with_classes : bool
        Also return the class index of each box.

    Returns
    -------
    boxes : ndarray ``[N, 4]`` float32, ``(x0, y0, x1, y1)`` pixels, clipped to the image
    scores : ndarray ``[N]`` float32
    labels : ndarray ``[N]`` int64 (only with ``with_classes``)

    Order: raster over cells (y, then x), then anchor.
    """
    anchors = _check_anchors(anchors)
    head = np.asarray(head_nhwc, dtype=np.float32)
    if head.ndim != 3 or head.shape[2] % len(anchors):
        raise ValueError(f"head shape {head.shape}: expected [H', W', A*(5+C)] with "
                         f"A = {len(anchors)} anchors")
    gh, gw, ch = head.shape
    na = len(anchors)
    nf = ch // na
    if nf < 5:
        raise ValueError(f"head has {ch} channels for {na} anchors: fewer than 5 per anchor")
    classes = nf - 5
    img_h, img_w = image_size
    sx, sy = img_w / gw, img_h / gh
    p = head.reshape(gh, gw, na, nf)
    cy, cx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32),
                         indexing="ij")
    bx = (cx[:, :, None] + sigmoid(p[..., 0])) * sx
    by = (cy[:, :, None] + sigmoid(p[..., 1])) * sy
    bw = anchors[:, 0] * np.exp(np.clip(p[..., 2], -_TW_CLIP, _TW_CLIP)) * sx
    bh = anchors[:, 1] * np.exp(np.clip(p[..., 3], -_TW_CLIP, _TW_CLIP)) * sy
    score = sigmoid(p[..., 4])
    if classes > 1:
        logits = p[..., 5:]
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        prob = e / e.sum(axis=-1, keepdims=True)
        labels = prob.argmax(axis=-1)
        score = score * prob.max(axis=-1)
    else:
        labels = np.zeros(score.shape, dtype=np.int64)
    boxes = np.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], axis=-1)
    boxes = boxes.reshape(-1, 4)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, img_w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, img_h)
    score = score.reshape(-1)
    keep = score >= conf_thresh
    out = (boxes[keep].astype(np.float32), score[keep].astype(np.float32))
    if with_classes:
        return out + (labels.reshape(-1)[keep].astype(np.int64),)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float = 0.45) -> np.ndarray:
    """Greedy non-maximum suppression.

    Visits boxes by descending score (ties: lower index first) and drops every later box whose
    IoU with a kept one is greater than ``iou_thresh``.  Returns the kept indices (int64) in
    descending score order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    x0, y0, x1, y1 = boxes.T
    area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        h = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = w * h
        union = area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0.0)
        order = rest[iou <= iou_thresh]
    return np.asarray(keep, dtype=np.int64)


def detect(head_nhwc: np.ndarray, anchors, image_size: tuple[int, int],
           conf_thresh: float = 0.01, iou_thresh: float = 0.45, max_dets: int = 100):
    """Decode + NMS of one image: ``(boxes [N, 4], scores [N])``, best first."""
    boxes, scores = decode_predictions(head_nhwc, anchors, image_size, conf_thresh)
    keep = nms(boxes, scores, iou_thresh)[:max_dets]
    return boxes[keep], scores[keep]


# ----------------------------------------------------------------------------------------------
# torch: batch decode, targets and loss (torch imported lazily so numpy users stay light)

def decode_batch(head, anchors, image_size: tuple[int, int]):
    """Torch batch decode of a head ``[N, A*(5+C), H', W']``.

    Returns ``(boxes [N, H'*W'*A, 4], scores [N, H'*W'*A])`` in pixels, not clipped or
    thresholded, in the same order as :func:`decode_predictions` (cells in raster order, then
    anchor).  Scores follow the same rule (objectness times the best class probability).
    """
    import torch
    anchors_t = torch.as_tensor(_check_anchors(anchors), dtype=head.dtype, device=head.device)
    n, ch, gh, gw = head.shape
    na = anchors_t.shape[0]
    nf = ch // na
    p = head.view(n, na, nf, gh, gw).permute(0, 3, 4, 1, 2)          # [N, H', W', A, F]
    img_h, img_w = image_size
    sx, sy = img_w / gw, img_h / gh
    cy, cx = torch.meshgrid(torch.arange(gh, dtype=head.dtype, device=head.device),
                            torch.arange(gw, dtype=head.dtype, device=head.device),
                            indexing="ij")
    bx = (cx[..., None] + torch.sigmoid(p[..., 0])) * sx
    by = (cy[..., None] + torch.sigmoid(p[..., 1])) * sy
    bw = anchors_t[:, 0] * torch.exp(p[..., 2].clamp(-_TW_CLIP, _TW_CLIP)) * sx
    bh = anchors_t[:, 1] * torch.exp(p[..., 3].clamp(-_TW_CLIP, _TW_CLIP)) * sy
    score = torch.sigmoid(p[..., 4])
    if nf - 5 > 1:
        score = score * torch.softmax(p[..., 5:], dim=-1).amax(dim=-1)
    boxes = torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)
    return boxes.reshape(n, -1, 4), score.reshape(n, -1)


@dataclass
class Targets:
    """Per-anchor training targets of a batch, each ``[N, A, H', W']``.

    ``mask`` marks the assigned anchors; ``tx, ty`` are centre offsets in the cell (0..1),
    ``tw, th`` log-ratios to the anchor; ``scale`` the box-loss weight ``2 - w*h`` (w, h as
    fractions of the image); ``cls`` the class index.  ``gt`` lists each image's boxes in
    pixels (for the ignore rule).
    """
    mask: "torch.Tensor"
    tx: "torch.Tensor"
    ty: "torch.Tensor"
    tw: "torch.Tensor"
    th: "torch.Tensor"
    scale: "torch.Tensor"
    cls: "torch.Tensor"
    gt: list


def _shape_iou(w, h, aw, ah):
    inter = np.minimum(w, aw) * np.minimum(h, ah)
    return inter / (w * h + aw * ah - inter)


def build_targets(boxes: Sequence[np.ndarray], anchors, grid: tuple[int, int],
                  image_size: tuple[int, int], labels: Sequence[np.ndarray] | None = None,
                  device=None) -> Targets:
    """Assign ground-truth boxes to cells and anchors (YOLOv2).

    Parameters
    ----------
    boxes : per image, ``[M, 4]`` ``(x0, y0, x1, y1)`` in pixels (numpy or torch)
    anchors : (w, h) in grid cells
    grid : (H', W') of the head
    image_size : (H, W) in pixels
    labels : per image, ``[M]`` class indices (default all 0)

    Each box goes to the cell containing its centre and the anchor of best shape IoU.  Boxes
    with no area are skipped.  When two boxes claim the same cell and anchor, the larger one
    wins (assignment is by descending area, so the result does not depend on list order).
    """
    import torch
    anchors = _check_anchors(anchors).astype(np.float64)
    na = len(anchors)
    gh, gw = grid
    img_h, img_w = image_size
    sx, sy = img_w / gw, img_h / gh
    n = len(boxes)
    shape = (n, na, gh, gw)
    mask = np.zeros(shape, dtype=bool)
    tx = np.zeros(shape, dtype=np.float32)
    ty = np.zeros(shape, dtype=np.float32)
    tw = np.zeros(shape, dtype=np.float32)
    th = np.zeros(shape, dtype=np.float32)
    scale = np.zeros(shape, dtype=np.float32)
    cls = np.zeros(shape, dtype=np.int64)
    gts = []
    for i, b in enumerate(boxes):
        b = np.asarray(b.cpu() if hasattr(b, "cpu") else b, dtype=np.float64).reshape(-1, 4)
        lab = (np.zeros(len(b), dtype=np.int64) if labels is None
               else np.asarray(labels[i], dtype=np.int64).reshape(-1))
        w = (b[:, 2] - b[:, 0]) / sx
        h = (b[:, 3] - b[:, 1]) / sy
        ok = (w > 0) & (h > 0)
        b, lab, w, h = b[ok], lab[ok], w[ok], h[ok]
        gts.append(torch.as_tensor(b, dtype=torch.float32, device=device))
        # small first so that a larger box overwrites a smaller one on a collision
        for j in np.argsort(w * h, kind="stable"):
            cx = (b[j, 0] + b[j, 2]) / 2 / sx
            cy = (b[j, 1] + b[j, 3]) / 2 / sy
            gx = min(max(int(np.floor(cx)), 0), gw - 1)
            gy = min(max(int(np.floor(cy)), 0), gh - 1)
            a = int(np.argmax(_shape_iou(w[j], h[j], anchors[:, 0], anchors[:, 1])))
            mask[i, a, gy, gx] = True
            tx[i, a, gy, gx] = np.clip(cx - gx, 0.0, 1.0)
            ty[i, a, gy, gx] = np.clip(cy - gy, 0.0, 1.0)
            tw[i, a, gy, gx] = np.log(w[j] / anchors[a, 0])
            th[i, a, gy, gx] = np.log(h[j] / anchors[a, 1])
            scale[i, a, gy, gx] = 2.0 - (w[j] / gw) * (h[j] / gh)
            cls[i, a, gy, gx] = lab[j]
    t = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
    return Targets(t(mask), t(tx), t(ty), t(tw), t(th), t(scale), t(cls), gts)


def _torch_box_iou(a, b):
    import torch
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


class YoloLoss:
    """YOLOv2-style loss of a head ``[N, A*(5+C), H', W']`` (see the module docstring).

    Parameters
    ----------
    cfg : NetworkConfig
        Supplies anchors, classes and the input size.
    coord_weight, obj_weight, noobj_weight, class_weight : float
        Term weights; ``noobj_weight < 1`` down-weights the many empty anchors.
    ignore_thresh : float
        No-object loss is dropped for predictions whose box overlaps a ground truth by more
        than this IoU.

    Calling the loss returns ``(total, parts)`` with ``parts`` a dict of detached floats
    (``box``, ``obj``, ``noobj``, ``cls``); every term is summed over anchors and averaged
    over the batch.
    """

    def __init__(self, cfg, coord_weight: float = 1.0, obj_weight: float = 1.0,
                 noobj_weight: float = 0.5, class_weight: float = 1.0,
                 ignore_thresh: float = 0.6):
        self.anchors = [tuple(a) for a in cfg.anchors]
        self.classes = cfg.classes
        self.image_size = (cfg.input_height, cfg.input_width)
        self.coord_weight = coord_weight
        self.obj_weight = obj_weight
        self.noobj_weight = noobj_weight
        self.class_weight = class_weight
        self.ignore_thresh = ignore_thresh

    def targets(self, head, boxes, labels=None) -> Targets:
        return build_targets(boxes, self.anchors, (head.shape[2], head.shape[3]),
                             self.image_size, labels=labels, device=head.device)

    def __call__(self, head, boxes: Sequence, labels: Sequence | None = None):
        import torch
        import torch.nn.functional as F
        n, ch, gh, gw = head.shape
        na = len(self.anchors)
        nf = 5 + self.classes
        if ch != na * nf:
            raise ValueError(f"head has {ch} channels; anchors*(5+classes) = {na}*{nf}")
        if len(boxes) != n:
            raise ValueError(f"{len(boxes)} box lists for a batch of {n}")
        t = self.targets(head, boxes, labels)
        p = head.float().view(n, na, nf, gh, gw)                     # fields on dim 2
        m = t.mask
        # ignore rule: predicted boxes overlapping any ground truth well are not "no object"
        with torch.no_grad():
            pred, _ = decode_batch(head.detach().float(), self.anchors, self.image_size)
            ignore = torch.zeros(n, gh * gw * na, dtype=torch.bool, device=head.device)
            for i, g in enumerate(t.gt):
                if len(g):
                    ignore[i] = _torch_box_iou(pred[i], g).amax(dim=1) > self.ignore_thresh
            # decode order is (y, x, a): back to [N, A, H', W']
            ignore = ignore.view(n, gh, gw, na).permute(0, 3, 1, 2)
        obj_logit = p[:, :, 4]
        bce = F.binary_cross_entropy_with_logits(obj_logit, m.float(), reduction="none")
        obj = (bce * m).sum() / n
        noobj = (bce * (~m & ~ignore)).sum() / n
        if m.any():
            s = t.scale[m]
            px = torch.sigmoid(p[:, :, 0][m])
            py = torch.sigmoid(p[:, :, 1][m])
            box = (s * ((px - t.tx[m]) ** 2 + (py - t.ty[m]) ** 2
                        + (p[:, :, 2][m] - t.tw[m]) ** 2
                        + (p[:, :, 3][m] - t.th[m]) ** 2)).sum() / n
            if self.classes > 1:
                logits = p[:, :, 5:].permute(0, 1, 3, 4, 2)[m]          # [M, C]
                cls = F.cross_entropy(logits, t.cls[m], reduction="sum") / n
            else:
                cls = head.sum() * 0.0
        else:
            box = head.sum() * 0.0
            cls = head.sum() * 0.0
        total = (self.coord_weight * box + self.obj_weight * obj
                 + self.noobj_weight * noobj + self.class_weight * cls)
        parts = {"box": float(box.detach()), "obj": float(obj.detach()),
                 "noobj": float(noobj.detach()), "cls": float(cls.detach())}
        return total, parts

"""Detection metrics: average precision and the FDDB-style detection rate.

Both metrics share one matching rule (PASCAL VOC): all detections of the set are visited by
descending score (ties keep input order: image order, then the order within an image); a
detection is a true positive when its best-overlapping ground truth in the same image has
``IoU >= iou`` (0.5) and was not matched before, otherwise a false positive (a duplicate of a
matched face counts as a false positive).

* :func:`average_precision` — area under the precision/recall curve with **all-points
  interpolation** (VOC2010 and later): precision is made monotone (each point takes the
  maximum precision at any higher recall) and summed over every recall step.
* :func:`detection_rate_at_fp` — FDDB-style: the true-positive rate (recall) at the lowest score
  threshold that yields at most ``fp`` false positives over the whole set.  Thresholds are
  taken at distinct scores, so tied detections are kept or dropped together.  The FDDB
  benchmark reports this at 1000 false positives over its 2845 images; ``fp=None`` scales that
  operating point to the set's size, ``max(1, round(1000 * n_images / 2845))`` (70 for 200
  images), which :func:`default_fp` returns.

Inputs: ``dets`` is a list with one ``(boxes [K, 4], scores [K])`` pair per image and ``gts``
one ``[M, 4]`` array per image, boxes ``(x0, y0, x1, y1)`` in pixels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .yolo import box_iou

__all__ = ["match_detections", "average_precision", "detection_rate_at_fp", "default_fp",
           "precision_recall", "DetectionMetrics", "evaluate_detections", "FDDB_FP",
           "FDDB_IMAGES"]

FDDB_FP = 1000       # the FDDB operating point: 1000 false positives ...
FDDB_IMAGES = 2845   # ... over FDDB's 2845 images


def default_fp(n_images: int) -> int:
    """The FDDB operating point scaled to ``n_images``: ``max(1, round(1000 * n / 2845))``."""
    return max(1, int(round(FDDB_FP * n_images / FDDB_IMAGES)))


def _check(dets, gts):
    if len(dets) != len(gts):
        raise ValueError(f"{len(dets)} detection lists but {len(gts)} ground-truth lists "
                         f"(one of each per image)")


def match_detections(dets: Sequence, gts: Sequence, iou: float = 0.5):
    """Match every detection of the set (see the module docstring).

    Returns
    -------
    scores : ndarray [K] the detection scores, sorted descending
    tp : ndarray [K] bool, True for a true positive (same order)
    n_gt : int, the number of ground-truth boxes
    """
    _check(dets, gts)
    all_scores, all_img, all_idx = [], [], []
    for i, (b, s) in enumerate(dets):
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if len(np.asarray(b).reshape(-1, 4)) != len(s):
            raise ValueError(f"image {i}: {len(np.asarray(b).reshape(-1, 4))} boxes but "
                             f"{len(s)} scores")
        all_scores.append(s)
        all_img.append(np.full(len(s), i))
        all_idx.append(np.arange(len(s)))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    img = np.concatenate(all_img) if all_img else np.zeros(0, dtype=int)
    idx = np.concatenate(all_idx) if all_idx else np.zeros(0, dtype=int)
    order = np.argsort(-scores, kind="stable")
    gt_boxes = [np.asarray(g, dtype=np.float64).reshape(-1, 4) for g in gts]
    ious = [box_iou(np.asarray(b).reshape(-1, 4), g) for (b, _), g in zip(dets, gt_boxes)]
    matched = [np.zeros(len(g), dtype=bool) for g in gt_boxes]
    tp = np.zeros(len(order), dtype=bool)
    for r, k in enumerate(order):
        i, j = img[k], idx[k]
        if ious[i].shape[1] == 0:
            continue
        row = ious[i][j]
        g = int(np.argmax(row))
        if row[g] >= iou and not matched[i][g]:
            matched[i][g] = True
            tp[r] = True
    return scores[order], tp, int(sum(len(g) for g in gt_boxes))


def precision_recall(dets: Sequence, gts: Sequence, iou: float = 0.5):
    """``(precision [K], recall [K])`` after each detection, best first."""
    _, tp, n_gt = match_detections(dets, gts, iou)
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    precision = ctp / np.maximum(ctp + cfp, 1)
    recall = ctp / n_gt if n_gt else np.zeros(len(tp))
    return precision, recall


def average_precision(dets: Sequence, gts: Sequence, iou: float = 0.5) -> float:
    """AP at IoU ``iou`` with all-points interpolation (VOC2010+).

    Returns ``nan`` when the set has no ground-truth box (AP is undefined), 0.0 when there are
    boxes but no detections.
    """
    precision, recall = precision_recall(dets, gts, iou)
    n_gt = sum(len(np.asarray(g).reshape(-1, 4)) for g in gts)
    if n_gt == 0:
        return float("nan")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def detection_rate_at_fp(dets: Sequence, gts: Sequence, fp: int | None = None,
                         iou: float = 0.5) -> float:
    """FDDB-style detection rate: recall at ``fp`` false positives over the set.

    ``fp=None`` uses :func:`default_fp` of the number of images.  Returns ``nan`` when the
    set has no ground-truth box.
    """
    scores, tp, n_gt = match_detections(dets, gts, iou)
    if fp is None:
        fp = default_fp(len(gts))
    if fp < 0:
        raise ValueError(f"fp must be >= 0, got {fp}")
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    # a threshold keeps every detection with score >= it: evaluate at the end of tie groups
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    ok = ends[cfp[ends] <= fp]
    return float(ctp[ok].max() / n_gt) if len(ok) else 0.0


@dataclass
class DetectionMetrics:
    """The evaluation summary printed by ``dupnet eval`` and stored in a run."""
    ap: float
    detection_rate: float
    fp: int
    iou: float
    images: int
    faces: int
    detections: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"AP@{self.iou:g} = {self.ap:.4f}   detection rate @ {self.fp} FP = "
                f"{self.detection_rate:.4f}   ({self.images} images, {self.faces} faces, "
                f"{self.detections} detections)")


def evaluate_detections(dets: Sequence, gts: Sequence, iou: float = 0.5,
                        fp: int | None = None) -> DetectionMetrics:
    """Both metrics over one set."""
    fp_used = default_fp(len(gts)) if fp is None else int(fp)
    return DetectionMetrics(
        ap=average_precision(dets, gts, iou),
        detection_rate=detection_rate_at_fp(dets, gts, fp_used, iou),
        fp=fp_used, iou=iou, images=len(gts),
        faces=int(sum(len(np.asarray(g).reshape(-1, 4)) for g in gts)),
        detections=int(sum(len(np.asarray(s).reshape(-1)) for _, s in dets)))

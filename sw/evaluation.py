"""Evaluation of a detector on a data set: a PyTorch model (a run, eval mode) or an integer
artifact run by the bit-exact golden model, both scored as AP@IoU and FDDB-style detection
rate (:mod:`dupnet.sw.metrics`).  torch is imported lazily.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DupnetError
from .artifact import MAGIC
from .checkpoint import RunError, load_run
from .config import NetworkConfig
from .data import check_sample, load_split

__all__ = ["predict_heads", "detections_from_heads", "evaluate_model", "golden_heads",
           "is_artifact_file", "evaluate_path"]


def predict_heads(model, images_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The real-valued head, NHWC ``[N, H', W', A*(5+C)]``, of uint8 images ``[N, H, W, C]``
    (eval mode, no gradient; the model's mode is restored)."""
    import torch
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    outs = []
    try:
        with torch.no_grad():
            for k in range(0, len(images_nhwc), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images_nhwc[k:k + batch_size]))
                x = x.permute(0, 3, 1, 2).float().to(dev)
                outs.append(model(x).permute(0, 2, 3, 1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0,))


def golden_heads(artifact, images_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The real-valued head, NHWC, of an integer artifact run by the golden model."""
    from .golden import GoldenModel
    gm = GoldenModel(artifact)
    outs = [gm.decode_inputs(gm(images_nhwc[k:k + batch_size]))
            for k in range(0, len(images_nhwc), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,))


def detections_from_heads(heads: np.ndarray, cfg: NetworkConfig, conf_thresh: float = 0.005,
                          iou_thresh: float = 0.45, max_dets: int = 100) -> list:
    """Decode + NMS of NHWC heads: one ``(boxes, scores)`` pair per image."""
    from .yolo import detect
    size = (cfg.input_height, cfg.input_width)
    return [detect(h, cfg.anchors, size, conf_thresh, iou_thresh, max_dets) for h in heads]


def _checked_samples(dataset, cfg: NetworkConfig, empty_message: str) -> list:
    """Every sample of ``dataset``, each checked against ``cfg``; an error when there are none."""
    samples = [dataset[i] for i in range(len(dataset))]
    if not samples:
        raise DupnetError(empty_message)
    for i, s in enumerate(samples):
        check_sample(s, cfg, i)
    return samples


def _score(heads: np.ndarray, samples: list, cfg: NetworkConfig, iou: float, fp: int | None,
           conf_thresh: float, nms_thresh: float):
    """``DetectionMetrics`` of the heads of ``samples`` against their ground-truth boxes."""
    from .metrics import evaluate_detections
    dets = detections_from_heads(heads, cfg, conf_thresh, nms_thresh)
    return evaluate_detections(dets, [s.boxes for s in samples], iou=iou, fp=fp)


def evaluate_model(model, cfg: NetworkConfig, dataset, iou: float = 0.5,
                   fp: int | None = None, conf_thresh: float = 0.005,
                   nms_thresh: float = 0.45):
    """AP and detection rate of a PyTorch model on a dataset (``DetectionMetrics``)."""
    samples = _checked_samples(dataset, cfg, "the evaluation set is empty")
    heads = predict_heads(model, np.stack([s.image for s in samples]))
    return _score(heads, samples, cfg, iou, fp, conf_thresh, nms_thresh)


def is_artifact_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file starting with the integer artifact's magic bytes."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def evaluate_path(path: str | os.PathLike, data: str = "builtin", n: int | None = None,
                  split: str = "test", iou: float = 0.5, fp: int | None = None,
                  conf_thresh: float = 0.005, nms_thresh: float = 0.45):
    """Evaluate a run (PyTorch model, eval mode) or an artifact (golden integer model).

    Parameters
    ----------
    path : a run directory, a checkpoint ``.pt`` or an artifact file
    data, n, split : the data set spec, built-in set size, and split to evaluate on
    iou, fp : match IoU and false positives for the detection rate
    conf_thresh, nms_thresh : score threshold before NMS and NMS IoU

    Returns
    -------
    tuple
        ``(kind, cfg, DetectionMetrics)`` with kind ``"run"`` or ``"artifact"``.
    """
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: no such run directory, checkpoint or artifact")
    if is_artifact_file(p):
        from .artifact import Artifact
        kind, art = "artifact", Artifact.load(p)
        cfg = art.config
    else:
        kind = "run"
        cfg, model = load_run(p)
    dataset = load_split(cfg, data, split, n=n if data == "builtin" else None)
    samples = _checked_samples(dataset, cfg, f"the {split} split of {data} is empty")
    images = np.stack([s.image for s in samples])
    heads = golden_heads(art, images) if kind == "artifact" else predict_heads(model, images)
    return kind, cfg, _score(heads, samples, cfg, iou, fp, conf_thresh, nms_thresh)

"""Export a trained :class:`~dupnet.sw.qat.DupNet` to the integer :class:`Artifact`.

Folding (``docs/quantization.md``).  A hidden conv in eval mode computes, per output ``o``,
with the input real value ``s_in * code`` and the integer accumulator ``acc``::

    y = gamma * (alpha * s_in * acc - mu) / sqrt(var + eps) + beta = a * acc + c
    a = gamma * alpha * s_in / sqrt(var + eps),   c = beta - gamma * mu / sqrt(var + eps)
    q = clamp(floor(y / s + 1/2), 0, 2^b - 1)

so ``q >= t  <=>  a*acc + c >= (t - 1/2) * s``.  For ``a > 0``:
``T[o, t] = ceil(((t - 1/2) * s - c) / a)``.  For ``a < 0`` the stored weights of the
channel are negated (``acc' = -acc``) and ``T[o, t] = ceil(((t - 1/2) * s - c) / |a|)``, so
hardware only compares ``>=``.  For ``a == 0`` the code is the constant
``q0 = clamp(floor(c/s + 1/2), 0, 2^b - 1)``: the first ``q0`` thresholds are
``threshold_min`` (always met), the rest ``threshold_max`` (never met).  Every threshold is
clipped into ``[threshold_min, threshold_max]`` (beyond them the comparison cannot change).
The last conv exports ``scale = alpha * s_in`` and ``bias`` (float32).

:func:`export_model` walks the layers and asks each kind for its parameters
(:meth:`~dupnet.sw.layers.LayerKind.export_params`, the conv's in ``sw/kinds/conv.py``),
threading the step ``s_in`` of the codes through the kinds' ``qat_out_scale``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .artifact import Artifact
from .config import ConvGeometry, NetworkConfig, param_geometries
from .layers import get_kind
from ..errors import DupnetError

__all__ = ["ExportError", "export_model", "fold_thresholds",
           "export_checkpoint", "export_summary"]


class ExportError(DupnetError):
    """A model or training run cannot be exported. The message names the file/layer."""


def fold_thresholds(a: np.ndarray, c: np.ndarray, s: float, bits: int, g: ConvGeometry
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds of ``q = clamp(floor((a*acc + c)/s + 1/2), 0, 2^b-1)``.

    Parameters
    ----------
    a, c : float64 ``[C_out]``
        The affine map ``y = a * acc + c`` of each output channel.
    s : float
        The activation quantizer step.
    bits : int
        Activation code width ``b``.
    g : ConvGeometry
        The layer (saturation bounds).

    Returns
    -------
    thresholds : int64 ``[C_out, 2^b - 1]``, ascending, in ``[threshold_min, threshold_max]``
    negate : bool ``[C_out]``, True where the channel's stored weights must be negated.
    """
    a = np.asarray(a, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n = (1 << bits) - 1
    lo, hi = g.threshold_min, g.threshold_max
    t_half = (np.arange(1, n + 1, dtype=np.float64) - 0.5) * float(s)     # (t - 1/2) * s
    negate = a < 0
    abs_a = np.abs(a)
    out = np.empty((a.shape[0], n), dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = (t_half[None, :] - c[:, None]) / abs_a[:, None]
    r = np.clip(r, lo - 1.0, hi + 1.0)          # inf/huge -> just past the bounds
    const = abs_a == 0
    out[~const] = np.clip(np.ceil(r[~const]), lo, hi).astype(np.int64)
    for o in np.flatnonzero(const):
        q0 = int(np.clip(np.floor(c[o] / s + 0.5), 0, n))
        out[o, :q0] = lo
        out[o, q0:] = hi
    return out, negate


def export_model(model, cfg: NetworkConfig | None = None, meta: dict[str, Any] | None = None
                 ) -> Artifact:
    """Fold a :class:`~dupnet.sw.qat.DupNet` (eval-mode semantics: BN running statistics)
    into an :class:`Artifact`.  The model is not modified."""
    import torch

    from .qat import INPUT_SCALE

    cfg = cfg if cfg is not None else model.cfg
    if not cfg.is_binary:
        raise ExportError(f"config {cfg.name!r} has float weights (weights = \"float\"): only "
                          f"binary networks export to an integer artifact")
    if model.cfg.to_dict() != cfg.to_dict():
        raise ExportError(f"the model was built for config {model.cfg.name!r}, not "
                          f"{cfg.name!r}")
    layers: dict[int, Any] = {}
    s_in = float(np.float32(INPUT_SCALE))       # the float32 value the model uses
    with torch.no_grad():
        for g, mod in zip(model.geometry, model.layers):
            kind = get_kind(g.kind)
            params = kind.export_params(g, mod, s_in)
            if params is not None:
                layers[g.index] = params
            s_in = float(kind.qat_out_scale(g, mod, s_in))
    return Artifact(cfg, layers, meta=dict(meta or {}))


# ---------------------------------------------------------------------------------------------
# Training runs


def export_checkpoint(path: str | Path) -> Artifact:
    """Rebuild the model of a training run (a run directory or its ``.pt`` file, read by
    :func:`dupnet.sw.train.load_checkpoint`) and export it; meta records run and epoch."""
    from .checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(path)
    f = Path(ck["_path"])
    cfg, model = model_from_checkpoint(ck)
    if not cfg.is_binary:
        raise ExportError(f"{f}: config {cfg.name!r} has float weights (weights = \"float\"); "
                          f"only binary networks export to an integer artifact")
    run = f.parent if f.name == "checkpoint.pt" else f
    meta: dict[str, Any] = {"source": "training", "run": str(run), "checkpoint": str(f)}
    for key in ("epoch", "step", "metrics"):
        if key in ck:
            try:
                meta[key] = _jsonable(ck[key])
            except TypeError:
                pass
    return export_model(model, cfg, meta=meta)


def _jsonable(x: Any) -> Any:
    import json
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        x = x.item()
    json.dumps(x)
    return x


def export_summary(art: Artifact) -> str:
    """Human-readable per-layer summary: unique bits, threshold range, on-chip bytes."""
    geoms = param_geometries(art.config)
    lines = [f"{art.config.name}: {len(geoms)} conv layers"]
    total = 0
    for g in geoms:
        total += g.on_chip_bits
        lines.append("  " + get_kind(g.kind).describe_params(g, art.layers[g.index]))
    lines.append(f"  on chip: {total / 8:.0f} bytes ({total / 8 / 1024:.2f} KiB)")
    return "\n".join(lines)

"""A faster, bit-identical implementation of :class:`dupnet.sw.golden.GoldenModel`.

Same integer semantics (DESIGN section 3, :mod:`dupnet.sw.golden`), organised for float BLAS:

* Channel-major layout ``[C, N, H, W]`` inside, so a layer is one plain GEMM
  ``acc[C_out, N*H*W] = Wm[C_out, K] @ cols[K, N*H*W]``: with few output channels the long
  dimension is the GEMM's fast one (about 3x faster than ``cols @ Wm.T`` in NHWC).
* ``cols`` is built from k*k shifted channel planes written straight into one buffer (zero
  padding by leaving the border rows/columns zero), casting the uint8 codes on the fly.
* Duplication folded exactly: ``w_dup > 1`` pre-adds each group of ``w_dup`` adjacent input
  channels (K shrinks by ``w_dup``); ``x_dup > 1`` folds the copies into integer weights
  ``W_eff[o, c] = sum_j V[o, j*C_in + c]`` in ``{-x_dup, ..., x_dup}`` (K shrinks by ``x_dup``).
  Every partial sum of the GEMM is still bounded by ``acc_max`` (``sum |W_eff| x`` equals the
  duplicated sum), so float32 is exact below 2^24 and float64 below 2^53, in any summation
  order.
* Thresholds compared in the GEMM's float type (exact: ``|T| <= acc_max + 1``), codes kept as
  uint8 (``act_bits <= 8``) between layers.

:meth:`GoldenModelFast.forward` returns exactly what ``GoldenModel.forward`` returns (NHWC
int64 per layer); :meth:`GoldenModelFast.__call__` returns only the last layer's accumulators
and skips the per-layer conversions.
"""
from __future__ import annotations

import numpy as np

from .artifact import Artifact, ArtifactError
from .config import ConvGeometry, PoolGeometry, network_geometry
from .golden import check_image

__all__ = ["GoldenModelFast", "fold_weights"]


def _dtype(bound: int):
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    raise ArtifactError(f"accumulator bound {bound} exceeds exact float64 range")


def fold_weights(weights: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """GEMM weights ``[C_out, k*k*C_k]`` (order ky, kx, c) with the duplication folded.

    ``w_dup > 1``: the unique weights as they are (the inputs get pre-added, ``C_k = C'/w_dup``).
    ``x_dup > 1``: ``sum_j V[o, ky, kx, j*C_in + c]`` (``C_k = C_in``).
    """
    w = np.asarray(weights, dtype=np.int64)
    if g.x_dup > 1:
        w = w.reshape(g.out_channels, g.k, g.k, g.x_dup, g.in_channels).sum(axis=3)
    return w.reshape(g.out_channels, -1)


def _planes(x: np.ndarray, g: ConvGeometry, dt) -> np.ndarray:
    """Input planes ``[C_k, N, H, W]``: pre-added for ``w_dup > 1``, else the codes as they are."""
    if g.w_dup == 1:
        return x
    c, n, h, w = x.shape
    return x.reshape(c // g.w_dup, g.w_dup, n, h, w).sum(axis=1, dtype=dt)


def _cols(p: np.ndarray, k: int, dt) -> np.ndarray:
    """im2col ``[k*k*C, N*H*W]`` of planes ``p [C, N, H, W]`` with zero "same" padding."""
    c, n, h, w = p.shape
    if k == 1:
        return p.reshape(c, n * h * w).astype(dt, copy=False)
    r = k // 2
    cols = np.zeros((k, k, c, n, h, w), dtype=dt)
    for ky in range(k):
        dy = ky - r
        ys, yd = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h - max(0, dy))
        for kx in range(k):
            dx = kx - r
            xs, xd = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w - max(0, dx))
            cols[ky, kx, :, :, yd, xd] = p[:, :, ys, xs]
    return cols.reshape(k * k * c, n * h * w)


def _maxpool(x: np.ndarray, stride: int) -> np.ndarray:
    """2x2 max-pool of ``[C, N, H, W]`` codes; stride 1 replicates the bottom row/right column."""
    if stride == 2:
        c, n, h, w = x.shape
        x = x[:, :, :h // 2 * 2, :w // 2 * 2]
        return np.maximum(np.maximum(x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2]),
                          np.maximum(x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]))
    v = np.maximum(x[:, :, :-1], x[:, :, 1:])                  # rows i, i+1 (last: itself)
    v = np.concatenate([v, x[:, :, -1:]], axis=2)
    hmax = np.maximum(v[:, :, :, :-1], v[:, :, :, 1:])
    return np.concatenate([hmax, v[:, :, :, -1:]], axis=3)


class GoldenModelFast:
    """Drop-in, bit-identical, faster :class:`~dupnet.sw.golden.GoldenModel`."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.config = artifact.config
        self.geometry = network_geometry(self.config)
        self._layers = {}
        for g in self.geometry:
            if isinstance(g, ConvGeometry):
                p = artifact.layers[g.index]
                dt = _dtype(g.acc_max)
                t = None if g.is_last else p.thresholds.astype(dt)[:, :, None]
                self._layers[g.index] = (dt, fold_weights(p.weights, g).astype(dt), t)

    def _run(self, images: np.ndarray, record: bool):
        x = check_image(images, self.config)
        # uint8 codes when they fit (the image and every hidden layer with act_bits <= 8)
        x = np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(
            np.uint8 if self.config.input_bits <= 8 else np.int64)
        outs = []
        for g in self.geometry:
            if isinstance(g, PoolGeometry):
                x = _maxpool(x, g.stride)
            else:
                dt, wm, t = self._layers[g.index]
                n, h, w = x.shape[1:]
                acc = wm @ _cols(_planes(x, g, dt), g.k, dt)        # [C_out, N*H*W]
                if g.is_last:
                    x = np.rint(acc).astype(np.int64).reshape(g.out_channels, n, h, w)
                else:
                    q = np.zeros(acc.shape, dtype=np.uint8)
                    for j in range(t.shape[1]):
                        q += acc >= t[:, j]
                    x = q.reshape(g.out_channels, n, h, w)
            if record:
                outs.append(x.transpose(1, 2, 3, 0).astype(np.int64))
        return x, outs

    def forward(self, images: np.ndarray) -> list[np.ndarray]:
        """One NHWC int64 array per layer, as :meth:`GoldenModel.forward`."""
        return self._run(images, record=True)[1]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The last layer's accumulators ``[N, H, W, C_out]`` (int64)."""
        x = self._run(images, record=False)[0]
        return np.ascontiguousarray(x.transpose(1, 2, 3, 0))

    def decode_inputs(self, acc: np.ndarray) -> np.ndarray:
        last = self.artifact.layers[self.geometry[-1].index]
        return acc.astype(np.float32) * last.scale + last.bias

"""Bit-exact golden model: runs the integer network from an :class:`Artifact` alone (numpy).

The integer semantics (docs/quantization.md, docs/artifact.md) live here, as small functions
that the RTL testbenches and the exporter use too:

* :func:`conv_acc` — ``acc[o] = sum W * X'`` with ``X' = concat([X]*x_dup)`` and
  ``W[o, c'] = V[o, c' // w_dup]``; computed as pre-add of the channels sharing a weight,
  then one dot product with the unique weights.  Integers ride float BLAS: every partial sum
  is bounded by ``acc_max`` and float32 is exact below 2^24 (float64 below 2^53).
* :func:`threshold` — ``q[o] = sum_t [acc[o] >= T[o, t]]``.
* :func:`maxpool` — 2x2 on codes, stride 2, or stride 1 with bottom/right edge replicate.

The two models walk the layers and hand each to its kind (:mod:`dupnet.sw.layers`):
``reference`` for :class:`ReferenceGoldenModel`, ``prepare``/``forward`` for
:class:`GoldenModel`; the built-in kinds (``sw/kinds/``) call the functions above.
"""
from __future__ import annotations

import numpy as np

from .artifact import Artifact, ArtifactError
from .config import ConvGeometry, network_geometry
from .layers import get_kind

__all__ = ["duplicate_inputs", "preadd", "conv_acc", "threshold", "maxpool", "check_image",
           "ReferenceGoldenModel", "GoldenModel", "fold_weights", "blas_dtype"]


def duplicate_inputs(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """``X'``: NHWC ``x`` tiled ``x_dup`` times along channels (all C_in, then again)."""
    return np.concatenate([x] * g.x_dup, axis=-1) if g.x_dup > 1 else x


def preadd(x_dup: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Sum each group of ``w_dup`` adjacent channels of ``X'`` (they share one weight)."""
    if g.w_dup == 1:
        return x_dup
    n, h, w, c = x_dup.shape
    return x_dup.reshape(n, h, w, g.c_unique, g.w_dup).sum(axis=-1)


def blas_dtype(bound: int) -> type:
    """The float type whose BLAS sums integers bounded by ``bound`` exactly."""
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    raise ArtifactError(f"accumulator bound {bound} exceeds exact float64 range")


def conv_acc(x: np.ndarray, weights: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Signed accumulators ``[N, H, W, C_out]`` (int64) of one conv layer on codes ``x``."""
    dt = blas_dtype(g.acc_max)
    xs = preadd(duplicate_inputs(x.astype(dt), g), g)
    n, h, w, cu = xs.shape
    k, pad = g.k, g.k // 2
    if k == 1:
        cols = xs.reshape(n * h * w, cu)
    else:
        xp = np.zeros((n, h + 2 * pad, w + 2 * pad, cu), dtype=dt)
        xp[:, pad:pad + h, pad:pad + w] = xs
        # patches[n, y, x, ky, kx, c] — the order of the weight layout [o, ky, kx, cu]
        s = xp.strides
        patches = np.lib.stride_tricks.as_strided(
            xp, shape=(n, h, w, k, k, cu), strides=(s[0], s[1], s[2], s[1], s[2], s[3]),
            writeable=False)
        cols = np.ascontiguousarray(patches).reshape(n * h * w, k * k * cu)
    wmat = weights.reshape(g.out_channels, -1).astype(dt)
    acc = cols @ wmat.T
    return np.rint(acc).astype(np.int64).reshape(n, h, w, g.out_channels)


def threshold(acc: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Codes ``q = sum_t [acc >= T[o, t]]`` for NHWC ``acc`` and ``T[C_out, n_t]``."""
    q = np.zeros(acc.shape, dtype=np.int64)
    for t in range(thresholds.shape[1]):
        q += acc >= thresholds[:, t]
    return q


def maxpool(x: np.ndarray, stride: int) -> np.ndarray:
    """2x2 max-pool of NHWC codes; stride 1 replicates the bottom row and right column."""
    if stride == 2:
        n, h, w, c = x.shape
        return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    xp = np.concatenate([x, x[:, -1:]], axis=1)
    xp = np.concatenate([xp, xp[:, :, -1:]], axis=2)
    return np.maximum(np.maximum(xp[:, :-1, :-1], xp[:, 1:, :-1]),
                      np.maximum(xp[:, :-1, 1:], xp[:, 1:, 1:]))


def check_image(images: np.ndarray, cfg, where: str = "image") -> np.ndarray:
    """Validate an image batch ``[N, H, W, C]`` (or one ``[H, W, C]``) of the config's shape."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    want = (cfg.input_height, cfg.input_width, cfg.input_channels)
    if a.ndim != 4 or a.shape[1:] != want:
        raise ValueError(f"{where}: shape {tuple(np.asarray(images).shape)}, the network "
                         f"{cfg.name!r} takes [N,] {want[0]}x{want[1]}x{want[2]} (H, W, C)")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{where}: dtype {a.dtype}, expected integer codes "
                         f"(uint{cfg.input_bits})")
    if a.min(initial=0) < 0 or a.max(initial=0) >= (1 << cfg.input_bits):
        raise ValueError(f"{where}: values outside [0, {(1 << cfg.input_bits) - 1}]")
    return a.astype(np.int64)


class _ModelBase:
    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.config = artifact.config
        self.geometry = network_geometry(self.config)
        self.kinds = [get_kind(g.kind) for g in self.geometry]

    def decode_inputs(self, acc: np.ndarray) -> np.ndarray:
        """Real-valued head outputs ``scale * acc + bias`` for the host-side YOLO decode."""
        last = self.artifact.layers[self.geometry[-1].index]
        return acc.astype(np.float32) * last.scale + last.bias


class ReferenceGoldenModel(_ModelBase):
    """The integer network written layer by layer with the functions above: the readable
    specification. :class:`GoldenModel` is the same network organised for speed; a test keeps
    the two bit-identical."""

    def forward(self, images: np.ndarray) -> list[np.ndarray]:
        x = check_image(images, self.config)
        outs: list[np.ndarray] = []
        for g, kind in zip(self.geometry, self.kinds):
            x = kind.reference(g, self.artifact.layers.get(g.index), x)
            outs.append(x)
        return outs

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.forward(images)[-1]


# ----------------------------------------------------------------------------------------------
# The fast implementation


def fold_weights(weights: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """GEMM weights ``[C_out, k*k*C_k]`` (order ky, kx, c) with the duplication folded.

    ``w_dup > 1``: the unique weights as they are (the inputs get pre-added, ``C_k = C'/w_dup``).
    ``x_dup > 1``: ``sum_j V[o, ky, kx, j*C_in + c]`` (``C_k = C_in``).
    """
    w = np.asarray(weights, dtype=np.int64)
    if g.x_dup > 1:
        w = w.reshape(g.out_channels, g.k, g.k, g.x_dup, g.in_channels).sum(axis=3)
    return w.reshape(g.out_channels, -1)


class GoldenModel(_ModelBase):
    """The golden model: bit-identical to :class:`ReferenceGoldenModel`, organised for speed.

    ``forward(images)`` returns a list with one NHWC int64 array per layer (conv codes, pool
    codes, and the last layer's signed accumulators), in config layer order; ``images(...)``
    (``__call__``) only the last layer's accumulators ``[N, H, W, C_out]``.
    """

    def __init__(self, artifact: Artifact):
        super().__init__(artifact)
        self._prepared = [kind.prepare(g, artifact.layers.get(g.index))
                          for g, kind in zip(self.geometry, self.kinds)]

    def _run(self, images: np.ndarray, record: bool):
        x = check_image(images, self.config)
        # uint8 codes when they fit (the image and every hidden layer with act_bits <= 8)
        x = np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(
            np.uint8 if self.config.input_bits <= 8 else np.int64)
        outs = []
        for g, kind, prepared in zip(self.geometry, self.kinds, self._prepared):
            x = kind.forward(g, prepared, x)            # [C, N, H, W] codes
            if record:
                outs.append(x.transpose(1, 2, 3, 0).astype(np.int64))
        return x, outs

    def forward(self, images: np.ndarray) -> list[np.ndarray]:
        """One NHWC int64 array per layer, in config layer order."""
        return self._run(images, record=True)[1]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The last layer's accumulators ``[N, H, W, C_out]`` (int64)."""
        x = self._run(images, record=False)[0]
        return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


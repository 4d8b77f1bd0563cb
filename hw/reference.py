"""Numpy references of every stream in the accelerator, and beat packing helpers.

Shared by the Amaranth-sim tests (``tests/hw``) and the cocotb testbenches: they turn golden
tensors (``dupnet.sw.golden``) into the exact beat sequences the hardware must produce, and
beats back into tensors.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pack_lanes", "unpack_lanes", "image_beats", "window_chunks", "mvtu_beats",
           "pixel_beats", "output_beats", "decode_output_beats", "chunk_beats"]


def pack_lanes(values, bits: int) -> int:
    """Pack integers (two's complement, ``bits`` each) into one int, lane 0 lowest."""
    v = 0
    mask = (1 << bits) - 1
    for i, x in enumerate(values):
        v |= (int(x) & mask) << (i * bits)
    return v


def unpack_lanes(word: int, n: int, bits: int, signed: bool = False) -> list[int]:
    """Inverse of :func:`pack_lanes`."""
    mask = (1 << bits) - 1
    out = []
    for i in range(n):
        x = (int(word) >> (i * bits)) & mask
        if signed and x >> (bits - 1):
            x -= 1 << bits
        out.append(x)
    return out


def image_beats(img: np.ndarray, pixels_per_beat: int = 1, bits: int = 8) -> list[int]:
    """Input beats of one ``[H, W, C]`` image (or ``[N, H, W, C]`` batch, frames in order)."""
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[None]
    flat = a.reshape(-1, a.shape[-1])               # pixels in raster order, frames in order
    c = a.shape[-1]
    flat = flat.reshape(-1, pixels_per_beat * c)
    return [pack_lanes(row, bits) for row in flat]


def pixel_beats(x: np.ndarray, bits: int) -> list[int]:
    """One beat per pixel (full pixel) of an NHWC or HWC tensor of codes."""
    a = np.asarray(x)
    return [pack_lanes(row, bits) for row in a.reshape(-1, a.shape[-1])]


def chunk_beats(x: np.ndarray, pe: int, bits: int) -> list[int]:
    """Beats of PE channels (NHWC order: pixel, then chunk) of an NHWC or HWC tensor."""
    a = np.asarray(x)
    return [pack_lanes(row, bits) for row in a.reshape(-1, pe)]


def window_chunks(img: np.ndarray, k: int, simd: int, x_dup: int = 1,
                  repeat: int = 1) -> np.ndarray:
    """The window unit's output for one ``[H, W, C]`` frame: ``[n_beats, simd]`` lanes, in the
    order pixel, neuron fold (``repeat``), ky, kx, chunk of ``X' = concat([x]*x_dup)``."""
    a = np.asarray(img, dtype=np.int64)
    h, w, c = a.shape
    xd = np.concatenate([a] * x_dup, axis=-1)
    pad = k // 2
    xp = np.zeros((h + 2 * pad, w + 2 * pad, c * x_dup), dtype=np.int64)
    xp[pad:pad + h, pad:pad + w] = xd
    out = []
    for y in range(h):
        for x in range(w):
            win = xp[y:y + k, x:x + k].reshape(-1, simd)     # (ky, kx, c') -> chunks
            for _ in range(repeat):
                out.append(win)
    return np.concatenate(out, axis=0) if out else np.zeros((0, simd), dtype=np.int64)


def mvtu_beats(values: np.ndarray, pe: int, bits: int) -> list[int]:
    """MVTU output beats for NHWC codes/accumulators ``values`` (no ``last`` bit)."""
    return chunk_beats(values, pe, bits)


def output_beats(acc: np.ndarray, pe: int, acc_bits: int) -> list[int]:
    """Top-level output beats (``last`` at bit ``pe*acc_bits``) of ``[N, H, W, C]`` or
    ``[H, W, C]`` last-layer accumulators."""
    a = np.asarray(acc)
    if a.ndim == 3:
        a = a[None]
    beats = []
    for frame in a:
        fb = chunk_beats(frame, pe, acc_bits)
        fb[-1] |= 1 << (pe * acc_bits)
        beats += fb
    return beats


def decode_output_beats(beats, pe: int, acc_bits: int, shape) -> tuple[np.ndarray, list[int]]:
    """Top-level output beats -> (``[N, H, W, C]`` int64 accumulators, list of ``last`` bits)."""
    lanes, lasts = [], []
    for b in beats:
        lanes.append(unpack_lanes(b, pe, acc_bits, signed=True))
        lasts.append((int(b) >> (pe * acc_bits)) & 1)
    h, w, c = shape
    return np.asarray(lanes, dtype=np.int64).reshape(-1, h, w, c), lasts

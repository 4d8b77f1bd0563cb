"""Numpy reference of the window unit's stream (the only stream that is not a tensor).

Every other stream carries a golden tensor (:mod:`dupnet.sw.golden`) packed by
:class:`dupnet.hw.stream_layout.WordLayout`; the window unit's output is the sequence of
SIMD-wide chunks of each output pixel's window, given here.
"""
from __future__ import annotations

import numpy as np

__all__ = ["window_chunks"]


def window_chunks(img: np.ndarray, k: int, simd: int, x_dup: int = 1,
                  repeat: int = 1, kp: int = 1) -> np.ndarray:
    """The window unit's output for one ``[H, W, C]`` frame: ``[n_beats, kp*simd]`` lanes, in
    the order pixel, neuron fold (``repeat``), ky, kx group, chunk of
    ``X' = concat([x]*x_dup)``, with the ``kp`` positions of a kx group side by side."""
    a = np.asarray(img, dtype=np.int64)
    h, w, c = a.shape
    xd = np.concatenate([a] * x_dup, axis=-1)
    pad = k // 2
    xp = np.zeros((h + 2 * pad, w + 2 * pad, c * x_dup), dtype=np.int64)
    xp[pad:pad + h, pad:pad + w] = xd
    out = []
    for y in range(h):
        for x in range(w):
            win = xp[y:y + k, x:x + k].reshape(k, k // kp, kp, -1, simd)
            # (ky, kx group, position, chunk, lane) -> (ky, kx group, chunk, position, lane)
            win = win.transpose(0, 1, 3, 2, 4).reshape(-1, kp * simd)
            for _ in range(repeat):
                out.append(win)
    return np.concatenate(out, axis=0) if out else np.zeros((0, kp * simd), dtype=np.int64)

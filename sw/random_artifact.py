"""Random but meaningful artifacts for hardware bring-up without training (`dupnet init`).

Weights are uniform random +-1.  Thresholds are set from the accumulator distribution of a
random calibration image run through the network so far, so codes spread over all levels
instead of sticking at 0 or at the top; a few channels get saturated thresholds (always /
never met) so the hardware sees those cases too.
"""
from __future__ import annotations

import numpy as np

from .artifact import Artifact, ConvParams
from .config import ConvGeometry, NetworkConfig, network_geometry
from .golden import conv_acc, maxpool, threshold

__all__ = ["random_artifact"]


def random_artifact(cfg: NetworkConfig, seed: int = 0, saturate_fraction: float = 0.05,
                    calibration_images: int = 2) -> Artifact:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << cfg.input_bits,
                     size=(calibration_images, cfg.input_height, cfg.input_width,
                           cfg.input_channels), dtype=np.int64)
    layers: dict[int, ConvParams] = {}
    for g in network_geometry(cfg):
        if not isinstance(g, ConvGeometry):
            x = maxpool(x, g.stride)
            continue
        w = rng.choice(np.array([-1, 1], dtype=np.int8),
                       size=(g.out_channels, g.k, g.k, g.c_unique))
        acc = conv_acc(x, w, g)
        if g.is_last:
            scale = rng.uniform(0.5, 1.5, g.out_channels).astype(np.float32) / max(
                1.0, float(np.abs(acc).max()))
            bias = rng.normal(0, 0.1, g.out_channels).astype(np.float32)
            layers[g.index] = ConvParams(w, scale=scale, bias=bias)
            x = acc
            continue
        flat = acc.reshape(-1, g.out_channels)
        qs = (np.arange(1, g.n_thresholds + 1) / (g.n_thresholds + 1))
        t = np.quantile(flat, qs, axis=0).T                      # [C_out, n_t]
        t = np.ceil(t + rng.uniform(-0.5, 0.5, size=t.shape)).astype(np.int64)
        t = np.sort(np.clip(t, g.threshold_min, g.threshold_max), axis=1)
        for o in np.flatnonzero(rng.random(g.out_channels) < saturate_fraction):
            n_low = int(rng.integers(0, g.n_thresholds + 1))     # this many always met
            t[o, :n_low] = g.threshold_min
            t[o, n_low:] = g.threshold_max
        layers[g.index] = ConvParams(w, thresholds=t)
        x = threshold(acc, t)
    return Artifact(cfg, layers, meta={"source": "random", "seed": seed})

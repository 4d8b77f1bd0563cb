"""Random but meaningful artifacts for hardware bring-up without training (`dupnet init`).

Weights are uniform random +-1.  Thresholds are set from the accumulator distribution of a
random calibration image run through the network so far, so codes spread over all levels
instead of sticking at 0 or at the top; a few channels get saturated thresholds (always /
never met) so the hardware sees those cases too.
"""
from __future__ import annotations

import numpy as np

from .artifact import Artifact
from .config import NetworkConfig, network_geometry
from .layers import get_kind

__all__ = ["random_artifact"]


def random_artifact(cfg: NetworkConfig, seed: int = 0, saturate_fraction: float = 0.05,
                    calibration_images: int = 2) -> Artifact:
    """An artifact for ``cfg`` whose layers draw their parameters from their kind
    (:meth:`~dupnet.sw.layers.LayerKind.random_params`), calibrated on random images."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << cfg.input_bits,
                     size=(calibration_images, cfg.input_height, cfg.input_width,
                           cfg.input_channels), dtype=np.int64)
    layers = {}
    for g in network_geometry(cfg):
        params, x = get_kind(g.kind).random_params(g, x, rng, saturate_fraction)
        if params is not None:
            layers[g.index] = params
    return Artifact(cfg, layers, meta={"source": "random", "seed": seed})

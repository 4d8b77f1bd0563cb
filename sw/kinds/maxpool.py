"""The ``maxpool`` layer kind: 2x2 max-pool on activation codes; stride 2, or stride 1 with the
bottom row / right column replicated. No parameters.

Records: :class:`~dupnet.sw.config.PoolSpec`, :class:`~dupnet.sw.config.PoolGeometry`.
Integer semantics: :func:`~dupnet.sw.golden.maxpool`. QAT module:
:class:`~dupnet.sw.qat.MaxPool` (max-pool is monotone, so it pools codes exactly).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ConfigError, NetworkConfig, PoolGeometry, PoolSpec, int_field
from ..golden import maxpool
from ..layers import LayerContext, LayerKind

__all__ = ["MaxPoolKind", "KIND"]


def _maxpool_planes(x: np.ndarray, stride: int) -> np.ndarray:
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


class MaxPoolKind(LayerKind):
    """``kind = "maxpool"``: field ``stride`` (2, the default, or 1)."""

    name = "maxpool"
    fields = frozenset({"kind", "name", "stride"})
    default_name = "pool"

    def parse(self, raw: dict[str, Any], ctx: LayerContext) -> PoolSpec:
        where, h, w = ctx.where, ctx.height, ctx.width
        stride = int_field(where, "stride", raw.get("stride", 2), choices=(1, 2))
        if ctx.after_last:
            raise ConfigError(f"{where}: a max-pool after the last conv would pool "
                              f"accumulators; the network must end with a conv")
        if ctx.is_first:
            raise ConfigError(f"{where}: a max-pool cannot come first; it pools activation "
                              f"codes, so a conv must precede it")
        if stride == 2:
            if h < 2 or w < 2:
                raise ConfigError(f"{where}: stride-2 pool shrinks the {h}x{w} map below 1x1")
            if h % 2 or w % 2:
                raise ConfigError(f"{where}: stride-2 pool needs an even map, got {h}x{w} "
                                  f"(the odd row/column would be dropped)")
        return PoolSpec(name=ctx.name, stride=stride)

    def geometry(self, spec: PoolSpec, index: int, height: int, width: int, channels: int,
                 bits: int, is_last: bool) -> PoolGeometry:
        return PoolGeometry(index=index, name=spec.name, stride=spec.stride, height=height,
                            width=width, channels=channels, bits=bits)

    def reference(self, g: PoolGeometry, params: None, x: np.ndarray) -> np.ndarray:
        return maxpool(x, g.stride)

    def forward(self, g: PoolGeometry, prepared: None, x: np.ndarray) -> np.ndarray:
        return _maxpool_planes(x, g.stride)

    def qat_module(self, g: PoolGeometry, cfg: NetworkConfig):
        from ..qat import MaxPool
        return MaxPool(g.stride)


KIND = MaxPoolKind()

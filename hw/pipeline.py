"""Analytic model of the whole accelerator: every layer's model (:mod:`dupnet.hw.analytic`,
through its kind, :mod:`dupnet.hw.kinds`), the bottleneck cycles/frame, the first-output
latency and the totals the reports and the testbenches compare with."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from dupnet.sw.config import NetworkConfig, network_geometry

from .analytic import (GATHER_LATENCY, REFERENCE_CLOCK_HZ, UNPACK_LATENCY, LayerModel,
                       adapter_estimate)
from .folding import Folding, check_pixels_per_beat, validate_folding
from .kinds import fold_network, hw_kind

__all__ = ["PipelineModel", "pipeline_model", "input_ticks", "latency_walk", "adapter_ticks",
           "stream_adapters"]


@dataclass
class PipelineModel:
    """Analytic model of the whole accelerator."""
    network: str
    layers: list[LayerModel]
    pixels_per_beat: int
    input_cycles_per_frame: int
    extra_luts: int = 0
    extra_ffs: int = 0
    folding: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: the layers' geometries (the latency walk needs them)
    geometry: list = field(default_factory=list, repr=False)
    #: max-pool name -> lanes (channels per beat), as built
    pools: dict[str, int] = field(default_factory=dict)

    @cached_property
    def latency_cycles(self) -> int:
        """First input beat to first output beat (:func:`latency_walk`), computed when first
        asked for: a folding search that needs only the LUT totals skips the walk."""
        hw_pixels = self.layers[0].in_pixels
        ticks = latency_walk(self.layers, self.geometry,
                             input_ticks(hw_pixels, self.pixels_per_beat))
        return int(ticks[-1][0])

    @property
    def cycles_per_frame(self) -> int:
        """Bottleneck cycles per frame in steady state (back-to-back frames)."""
        return max([self.input_cycles_per_frame] + [m.cycles_per_frame for m in self.layers])

    @property
    def bottleneck_layer(self) -> str:
        best = max(self.layers, key=lambda m: m.cycles_per_frame)
        return best.name if best.cycles_per_frame >= self.input_cycles_per_frame else "input"

    @property
    def rom_bits(self) -> int:
        return sum(m.rom_bits for m in self.layers)

    @property
    def threshold_rom_bits(self) -> int:
        return sum(m.threshold_rom_bits for m in self.layers)

    @property
    def buffer_bits(self) -> int:
        return sum(m.buffer_bits for m in self.layers)

    @property
    def lut_estimate(self) -> int:
        return sum(m.lut_estimate for m in self.layers) + self.extra_luts

    @property
    def ff_estimate(self) -> int:
        return sum(m.ff_estimate for m in self.layers) + self.extra_ffs

    @property
    def conv_layers(self) -> list[LayerModel]:
        """The layers with a folding (PE, SIMD)."""
        return [m for m in self.layers if m.pe is not None]

    def layer(self, name: str) -> LayerModel:
        for m in self.layers:
            if m.name == name:
                return m
        raise KeyError(name)

    def fps(self, clock_hz: float = REFERENCE_CLOCK_HZ) -> float:
        return clock_hz / self.cycles_per_frame

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "pools": dict(self.pools),
            "pixels_per_beat": self.pixels_per_beat,
            "cycles_per_frame": self.cycles_per_frame,
            "bottleneck_layer": self.bottleneck_layer,
            "latency_cycles": self.latency_cycles,
            "input_cycles_per_frame": self.input_cycles_per_frame,
            "reference_clock_hz": REFERENCE_CLOCK_HZ,
            "fps_at_reference_clock": round(self.fps(), 3),
            "rom_bits": self.rom_bits,
            "threshold_rom_bits": self.threshold_rom_bits,
            "buffer_bits": self.buffer_bits,
            "lut_estimate": self.lut_estimate,
            "ff_estimate": self.ff_estimate,
            "folding": {k: {"pe": v[0], "simd": v[1]} for k, v in self.folding.items()},
            "layers": [m.to_json() for m in self.layers],
        }


def _config_of(artifact_or_config: Any) -> NetworkConfig:
    if isinstance(artifact_or_config, NetworkConfig):
        return artifact_or_config
    cfg = getattr(artifact_or_config, "config", None)
    if isinstance(cfg, NetworkConfig):
        return cfg
    raise TypeError(f"expected an Artifact or a NetworkConfig, got {type(artifact_or_config)}")


def input_ticks(pixels: int, pixels_per_beat: int = 1) -> np.ndarray:
    """Cycle at which each pixel of the first frame reaches the first layer, counted from the
    transfer of the first input beat, the beats offered back to back: one pixel per cycle,
    through the :class:`~dupnet.hw.adapters.Unpack` pixel register
    (:data:`~dupnet.hw.analytic.UNPACK_LATENCY`) when a beat holds several pixels (it takes the
    next beat with the last pixel of the current one), straight from the input when it holds
    one."""
    return np.arange(pixels, dtype=np.int64) + (UNPACK_LATENCY if pixels_per_beat > 1 else 0)


def stream_adapters(layers: list[LayerModel], input_channels: int
                    ) -> list[tuple[int, int, int]]:
    """Per layer, the stream into it: ``(channels, lanes_in, lanes_out)`` of the width adapter
    between the previous layer's output (whole input pixels for the first layer) and the
    layer's input; ``lanes_in == lanes_out`` where there is none."""
    out, lanes = [], input_channels
    for m in layers:
        out.append((m.in_shape[2], lanes, m.in_lanes))
        lanes = m.out_lanes
    return out


def adapter_ticks(ticks: np.ndarray, channels: int, lanes_in: int, lanes_out: int,
                  spacing: int = 1) -> np.ndarray:
    """The latency walk's step through a :class:`~dupnet.hw.adapters.WidthAdapter` (pixel
    ``p``'s last beat in at ``ticks[p]``; returns when its last beat leaves): the gather's
    output register adds :data:`~dupnet.hw.analytic.GATHER_LATENCY`; the unpack emits the
    ``n`` beats of a wide word one per cycle after its register, at most one beat per cycle
    (``channels/lanes_out`` per pixel), and takes the next wide word after the last beat of
    the one before: a pixel's ``wb`` wide words, arriving ``spacing`` cycles apart (the
    producing MVTU's ``sf``; 1 for the input), leave their ``channels/lanes_out`` beats no
    earlier than the first word's arrival ``ticks[p] - (wb - 1)*spacing`` plus that many
    cycles (the unpack then stalls its upstream: the upstream's own ticks are the walk's
    lower bound)."""
    t = np.asarray(ticks, dtype=np.int64)
    wide = math.lcm(lanes_in, lanes_out)
    if wide > lanes_in:
        t = t + GATHER_LATENCY
    if wide > lanes_out:
        n, per_pixel, wb = wide // lanes_out, channels // lanes_out, channels // wide
        ready = np.maximum(t + UNPACK_LATENCY + n - 1, t - (wb - 1) * spacing + per_pixel)
        p = np.arange(len(t), dtype=np.int64)
        t = np.maximum.accumulate(ready - p * per_pixel) + p * per_pixel
    return t


def latency_walk(layers: list[LayerModel], geometry: list, ticks: np.ndarray,
                 input_channels: int | None = None) -> list[np.ndarray]:
    """The first-output latency walk: from the cycles at which the first layer's input pixels
    arrive (:func:`input_ticks`), through each layer's width adapter (:func:`adapter_ticks`)
    and kind (:meth:`dupnet.hw.kinds.HwLayerKind.latency`), the cycle at which each layer's
    output pixels leave it, in pipeline order (the last layer's: its first beat).  The last
    layer's first entry is the first-output latency, exact for the stall-free start of the
    first frame (``tests/hw/test_hw_latency.py``)."""
    out = []
    if input_channels is None:
        input_channels = layers[0].in_shape[2]
    spacing = 1        # cycles between the beats of a pixel: an MVTU's folds, sf apart
    for (c, a, b), m, g in zip(stream_adapters(layers, input_channels), layers, geometry):
        ticks = hw_kind(g).latency(m, g, adapter_ticks(ticks, c, a, b, spacing))
        out.append(ticks)
        spacing = m.sf if m.sf is not None else spacing
    return out


def pipeline_model(artifact_or_config: Any, folding: Any, pixels_per_beat: int = 1,
                   preadd: bool | None = None) -> PipelineModel:
    """Analytic model of the whole pipeline for a folding (:class:`~dupnet.hw.folding.Folding`
    or a plain ``{name: (pe, simd)}`` mapping)."""
    cfg = _config_of(artifact_or_config)
    if not isinstance(folding, Folding):
        folding = Folding(dict(folding))
    validate_folding(cfg, folding)
    if preadd is None:
        preadd = folding.preadd
    check_pixels_per_beat(cfg, pixels_per_beat)
    hw_pixels = cfg.input_height * cfg.input_width
    folding = dataclasses.replace(folding, preadd=preadd)
    geometry = network_geometry(cfg)
    folded = fold_network(cfg, folding)
    layers = [hw_kind(f.geometry).model(f) for f in folded]
    input_cycles = hw_pixels // pixels_per_beat
    unpack_bits = pixels_per_beat * cfg.input_channels * cfg.input_bits
    extra_luts = 20 + (unpack_bits * (pixels_per_beat > 1))
    extra_ffs = 2 * unpack_bits + 20
    for (c, a, b), m in zip(stream_adapters(layers, cfg.input_channels), layers):
        luts, ffs = adapter_estimate(m.in_bits, a, b)
        extra_luts, extra_ffs = extra_luts + luts, extra_ffs + ffs
    return PipelineModel(network=cfg.name, layers=layers, pixels_per_beat=pixels_per_beat,
                         input_cycles_per_frame=input_cycles, extra_luts=extra_luts,
                         extra_ffs=extra_ffs,
                         folding={k: tuple(v) for k, v in folding.layers.items()},
                         geometry=geometry,
                         pools={f.geometry.name: f.out_lanes for f in folded
                                if not hw_kind(f.geometry).foldable})

"""Analytic model of the whole accelerator: every layer's model (:mod:`dupnet.hw.analytic`,
through its kind, :mod:`dupnet.hw.kinds`), the bottleneck cycles/frame, the first-output
latency and the totals the reports and the testbenches compare with."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from dupnet.sw.config import NetworkConfig, network_geometry

from .analytic import REFERENCE_CLOCK_HZ, UNPACK_LATENCY, LayerModel
from .folding import Folding, check_pixels_per_beat, validate_folding
from .kinds import hw_kind

__all__ = ["PipelineModel", "pipeline_model", "input_ticks", "latency_walk"]


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


def latency_walk(layers: list[LayerModel], geometry: list, ticks: np.ndarray
                 ) -> list[np.ndarray]:
    """The first-output latency walk: from the cycles at which the first layer's input pixels
    arrive (:func:`input_ticks`), through each layer's kind
    (:meth:`dupnet.hw.kinds.HwLayerKind.latency`), the cycle at which each layer's output
    pixels leave it, in pipeline order (the last layer's: its first beat).  The last layer's
    first entry is the first-output latency, exact for the stall-free start of the first frame
    (``tests/hw/test_hw_latency.py``)."""
    out = []
    for m, g in zip(layers, geometry):
        ticks = hw_kind(g).latency(m, g, ticks)
        out.append(ticks)
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
    layers = [hw_kind(g).model(hw_kind(g).fold(g, folding)) for g in geometry]
    input_cycles = hw_pixels // pixels_per_beat
    unpack_bits = pixels_per_beat * cfg.input_channels * cfg.input_bits
    extra_luts = 20 + (unpack_bits * (pixels_per_beat > 1))
    extra_ffs = 2 * unpack_bits + 20
    return PipelineModel(network=cfg.name, layers=layers, pixels_per_beat=pixels_per_beat,
                         input_cycles_per_frame=input_cycles, extra_luts=extra_luts,
                         extra_ffs=extra_ffs,
                         folding={k: tuple(v) for k, v in folding.layers.items()},
                         geometry=geometry)

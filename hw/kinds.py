"""Hardware side of a layer kind: the one place that says what each kind provides.

A layer kind (``"conv"``, ``"maxpool"``; the config's ``kind`` field and the geometry's
``.kind``) provides, for the hardware:

* :meth:`HwLayerKind.fold`: the layer at the network's folding (:class:`FoldedConv`,
  :class:`FoldedPool`): its shapes and its memories (``.memories``, used by the budget
  reports), cycles per frame, and the lanes (channels per beat) of its input and output
  streams, ``.in_lanes`` / ``.out_lanes`` (the top level puts a width adapter between two
  layers whose lanes differ, :class:`~dupnet.hw.adapters.WidthAdapter`);
* :meth:`HwLayerKind.model`: its analytic model (:class:`~dupnet.hw.analytic.LayerModel`);
* :meth:`HwLayerKind.engine`: the Amaranth components that implement it, chained ``i -> o``,
  and which of them is the layer's output (the probe);
* :meth:`HwLayerKind.output_layout`: the word layout of its output stream (the probe's, and the
  top level's for the last layer), which the testbenches' scoreboards use;
* :meth:`HwLayerKind.latency`: when its output pixels leave, given when its input pixels
  arrive (the pipeline model's first-output latency walk).

The golden op, the QAT module and the config parsing are the software side
(:mod:`dupnet.sw.layers`). docs/DEVELOPING.md, "Adding a layer kind", lists the files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dupnet.sw.config import ConvGeometry, NetworkConfig, PoolGeometry, network_geometry

from .analytic import PIPELINE_DEPTH, POOL_LATENCY, WINDOW_LATENCY, LayerModel, conv_model, \
    pool_model
from .folded import FoldedConv, FoldedPool, FoldingError
from .folding import Folding
from .mvtu import MVTU
from .pool import MaxPool
from .stream_layout import WordLayout
from .window import WindowUnit

__all__ = ["HwLayerKind", "LayerEngine", "HW_KINDS", "hw_kind", "register_hw_kind",
           "fold_layer", "fold_network", "output_layouts"]


@dataclass
class LayerEngine:
    """The hardware of one layer: ``stages`` (submodule name suffix, component), chained
    ``i -> o`` in order; ``output`` is the index of the stage whose ``o`` is the layer's output
    stream as the probes show it; ``rom_bits`` the weight ROM bits it instantiates;
    ``load_ports`` the write ports of its memories that the load port fills
    (:mod:`dupnet.hw.loader`); ``bank_ports`` the input streams the stream bank feeds, in the
    order of its streams (:func:`dupnet.hw.stream_bank.layer_streams`)."""
    stages: list[tuple[str, Any]]
    output: int
    rom_bits: int = 0
    #: (memory name, write port) of the memories the load port writes, in load order
    load_ports: list = field(default_factory=list)
    #: the stream bank's streams into the layer (a banked conv's MVTU ports ``w``, ``t``)
    bank_ports: list = field(default_factory=list)


class HwLayerKind:
    """What a layer kind provides on the hardware side (see the module docstring).

    Attributes
    ----------
    kind : str
        The config ``kind`` (and geometry ``.kind``) it implements.
    foldable : bool
        It has a (PE, SIMD) entry in the folding file (today: conv layers).
    logic_feature : str
        The calibrated LUT feature its logic estimate counts under
        (:mod:`dupnet.hw.budget.calibration`): ``"logic"`` (its window multiplexer apart, as
        ``"mux_logic"``) or ``"pool_logic"``.
    """
    kind = ""
    foldable = False
    logic_feature = "logic"

    def fold(self, g, folding: Folding, upstream_lanes: int | None = None):
        """The layer at ``folding``; ``upstream_lanes``: the lanes of the stream into it (a
        kind whose lanes follow its input's uses them; None: whole pixels)."""
        raise NotImplementedError

    def model(self, folded) -> LayerModel:
        raise NotImplementedError

    def engine(self, folded, params) -> LayerEngine:
        raise NotImplementedError

    def output_layout(self, folded) -> WordLayout:
        raise NotImplementedError

    def latency(self, model: LayerModel, g, ticks: np.ndarray) -> np.ndarray:
        """When this layer's output pixels leave it, given when its input pixels arrive: one
        step of the pipeline model's latency walk (:func:`dupnet.hw.pipeline.latency_walk`).

        ``ticks[n]`` is the cycle at which input pixel ``n`` (raster order, first frame) is
        transferred into the layer, counted from the transfer of the accelerator's first input
        beat (int64, one per input pixel).  Returns the same for the layer's output pixels: the
        cycle at which each is transferred out of the layer (the last layer: its first beat).
        The walk leaves out stalls from downstream: at start-up every unit's buffer holds what
        its first outputs need, so the figures are exact up to the first stall (which comes
        after every layer's first output: ``tests/hw/test_hw_latency.py``) and a lower bound
        after it.  A layer runs pixel by pixel at the rate of its input or at its own,
        whichever is slower at that pixel (no average interval: a stride-2 pool's bursts and
        the rows a window waits for are kept).
        """
        raise NotImplementedError


class ConvKind(HwLayerKind):
    """k x k conv: a window unit and an MVTU; ``in_lanes``-wide line-buffer words in, the
    ``nf`` beats of ``PE`` lanes per pixel out."""
    kind = "conv"
    foldable = True

    def fold(self, g: ConvGeometry, folding: Folding,
             upstream_lanes: int | None = None) -> FoldedConv:
        pe, simd = folding[g.name]
        return FoldedConv(g, pe, simd, preadd=folding.preadd, arith=folding.arith,
                          weights=folding.weights, spram=g.name in folding.spram,
                          kp=folding.kernel_positions(g.name), banked=g.name in folding.bank)

    def model(self, folded: FoldedConv) -> LayerModel:
        return conv_model(folded)

    def engine(self, folded: FoldedConv, params) -> LayerEngine:
        g = folded.geometry
        mvtu = MVTU(folded, params.weights, params.thresholds,
                    frame_beats=folded.output_beats_per_frame if g.is_last else None)
        stages = [("window", WindowUnit(folded)), ("mvtu", mvtu)]
        return LayerEngine(stages, output=1, rom_bits=mvtu.rom_bits, load_ports=mvtu.load_ports,
                           bank_ports=[mvtu.w, mvtu.t] if folded.banked else [])

    def output_layout(self, folded: FoldedConv) -> WordLayout:
        g = folded.geometry
        if g.is_last:
            return WordLayout(folded.pe, g.acc_bits, signed=True, has_last=True)
        return WordLayout(folded.pe, g.act_bits, signed=False)

    def latency(self, model: LayerModel, g: ConvGeometry, ticks: np.ndarray) -> np.ndarray:
        """Window unit and MVTU, output pixel by output pixel ``j`` (``ticks``: the input
        pixels' last words):

        * the window unit issues pixel ``j``'s chunks once the last input pixel its window
          reads, ``need(j)``, is in the line buffer: ``j``, plus ``pad*W`` when ``j`` is not
          on the bottom row and ``pad`` when it is not in the right column (the unit's own
          ``need``; the first output waits for ``pad*W + pad + 1`` pixels).  Its first chunk
          transfers :data:`~dupnet.hw.analytic.WINDOW_LATENCY` cycles after that pixel's
          write, and not before the ``nf*sf`` chunks of pixel ``j-1`` have gone, one per
          cycle: ``first[j] = max(ticks[need(j)] + WINDOW_LATENCY, first[j-1] + nf*sf)``
          (the layer follows its input where the input is slower, runs at its own rate where
          it is slower);
        * the MVTU emits neuron fold ``f`` :data:`~dupnet.hw.analytic.PIPELINE_DEPTH` cycles
          after the fold's last chunk, ``first[j] + (f+1)*sf - 1``;
        * a hidden layer's pixel leaves with its last fold; the last layer's first beat is
          fold 0.
        """
        H, W, pad = g.height, g.width, g.k // 2
        sf, nf = model.sf, model.nf
        j = np.arange(H * W, dtype=np.int64)
        need = j + pad * W * (j // W < H - 1) + pad * (j % W < W - 1)
        ready = np.asarray(ticks, dtype=np.int64)[need] + WINDOW_LATENCY
        per_pixel = nf * sf
        # first[j] = max(ready[j], first[j-1] + per_pixel) = max over i <= j of
        # ready[i] + (j - i)*per_pixel
        first = np.maximum.accumulate(ready - j * per_pixel) + j * per_pixel
        if g.is_last:
            return first + sf - 1 + PIPELINE_DEPTH
        return first + per_pixel - 1 + PIPELINE_DEPTH


class MaxPoolKind(HwLayerKind):
    """2x2 max-pool, stride 1 or 2, chunk-serial: the folding's ``lanes`` for it, else its
    upstream's lanes."""
    kind = "maxpool"
    logic_feature = "pool_logic"

    def fold(self, g: PoolGeometry, folding: Folding,
             upstream_lanes: int | None = None) -> FoldedPool:
        return FoldedPool(g, folding.pools.get(g.name, upstream_lanes))

    def model(self, folded: FoldedPool) -> LayerModel:
        return pool_model(folded)

    def engine(self, folded: FoldedPool, params) -> LayerEngine:
        return LayerEngine([("pool", MaxPool(folded))], output=0)

    def output_layout(self, folded: FoldedPool) -> WordLayout:
        return WordLayout(folded.lanes, folded.geometry.bits, signed=False)

    def latency(self, model: LayerModel, g: PoolGeometry, ticks: np.ndarray) -> np.ndarray:
        """The input pixel that completes a 2x2 block loads the output register
        (:data:`~dupnet.hw.analytic.POOL_LATENCY`), chunk by chunk (``ticks``: the pixels'
        last chunks):

        * stride 2: output ``(y, x)`` with input ``(2y+1, 2x+1)``: a row of outputs comes in
          a burst, two input pixels apart, during every second input row;
        * stride 1: output ``(y, x < W-1)`` with input ``(y+1, x+1)``, the right column's
          ``(y, W-1)`` with input ``(y+2, 0)``; after the frame's last input (cycle ``T``) the
          edge step emits ``(H-2, W-1)`` (``chunks`` cycles; it leaves at ``T + chunks + 1``),
          then the bottom row is flushed one chunk per cycle: ``(H-1, x)`` leaves at
          ``T + (x+2)*chunks + 1``.
        """
        H, W = g.height, g.width
        t = np.asarray(ticks, dtype=np.int64).reshape(H, W)
        if g.stride == 2:
            return (t[1::2, 1::2] + POOL_LATENCY).reshape(-1)
        n = model.in_shape[2] // model.lanes
        last = t[-1, -1]
        out = np.empty((H, W), dtype=np.int64)
        out[:-1, :-1] = t[1:, 1:] + POOL_LATENCY
        out[:-2, -1] = t[2:, 0] + POOL_LATENCY
        if H > 1:
            out[-2, -1] = last + n + POOL_LATENCY
        out[-1] = last + (np.arange(W) + 2) * n + POOL_LATENCY
        return out.reshape(-1)


HW_KINDS: dict[str, HwLayerKind] = {}


def register_hw_kind(kind: HwLayerKind) -> HwLayerKind:
    """Add (or replace) the hardware side of a layer kind; returns it."""
    HW_KINDS[kind.kind] = kind
    return kind


for _k in (ConvKind(), MaxPoolKind()):
    register_hw_kind(_k)


def hw_kind(g) -> HwLayerKind:
    """The hardware side of geometry ``g``'s kind; :class:`FoldingError` naming the layer when
    the kind has none."""
    kind = getattr(g, "kind", None)
    if kind not in HW_KINDS:
        raise FoldingError(f"layer {getattr(g, 'index', '?')} ({getattr(g, 'name', '?')}): "
                           f"layer kind {kind!r} has no hardware implementation; known: "
                           f"{', '.join(sorted(HW_KINDS))}")
    return HW_KINDS[kind]


def fold_layer(g, folding: Folding, upstream_lanes: int | None = None):
    """Layer ``g`` at ``folding`` (its kind's folded record); ``upstream_lanes``: the lanes of
    the stream into it."""
    return hw_kind(g).fold(g, folding, upstream_lanes)


def fold_network(config: NetworkConfig, folding: Folding) -> list:
    """Every layer at ``folding``, in pipeline order, each folded with the lanes of the stream
    into it (the previous layer's ``out_lanes``; whole input pixels for the first)."""
    if not isinstance(folding, Folding):
        folding = Folding(dict(folding))
    lanes = config.input_channels
    out = []
    for g in network_geometry(config):
        f = fold_layer(g, folding, lanes)
        out.append(f)
        lanes = f.out_lanes
    return out


def output_layouts(config: NetworkConfig, folding: Folding) -> list[tuple[Any, WordLayout]]:
    """Every layer's geometry and the word layout of its output stream (its probe's; the
    last layer's is the top level's output), in pipeline order."""
    return [(f.geometry, hw_kind(f.geometry).output_layout(f))
            for f in fold_network(config, folding)]

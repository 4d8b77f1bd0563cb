"""Hardware side of a layer kind: the one place that says what each kind provides.

A layer kind (``"conv"``, ``"maxpool"``; the config's ``kind`` field and the geometry's
``.kind``) provides, for the hardware:

* :meth:`HwLayerKind.fold`: the layer at the network's folding (:class:`FoldedConv`,
  :class:`FoldedPool`): its shapes and its memories (``.memories``, used by the budget
  reports), cycles per frame;
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

from dataclasses import dataclass
from typing import Any

import numpy as np

from dupnet.sw.config import ConvGeometry, NetworkConfig, PoolGeometry, network_geometry

from .adapters import Gather
from .analytic import (GATHER_LATENCY, PIPELINE_DEPTH, POOL_LATENCY, WINDOW_LATENCY,
                       LayerModel, conv_model, pool_model)
from .folded import FoldedConv, FoldedPool, FoldingError
from .folding import Folding
from .mvtu import MVTU
from .pool import MaxPool
from .stream_layout import WordLayout
from .window import WindowUnit

__all__ = ["HwLayerKind", "LayerEngine", "HW_KINDS", "hw_kind", "register_hw_kind",
           "fold_layer", "output_layouts"]


@dataclass
class LayerEngine:
    """The hardware of one layer: ``stages`` (submodule name suffix, component), chained
    ``i -> o`` in order; ``output`` is the index of the stage whose ``o`` is the layer's output
    stream as the probes show it; ``rom_bits`` the weight ROM bits it instantiates."""
    stages: list[tuple[str, Any]]
    output: int
    rom_bits: int = 0


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

    def fold(self, g, folding: Folding):
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
    """k x k conv: a window unit, an MVTU and (hidden layers) a gather of the ``nf`` beats."""
    kind = "conv"
    foldable = True

    def fold(self, g: ConvGeometry, folding: Folding) -> FoldedConv:
        pe, simd = folding[g.name]
        return FoldedConv(g, pe, simd, preadd=folding.preadd, arith=folding.arith)

    def model(self, folded: FoldedConv) -> LayerModel:
        return conv_model(folded)

    def engine(self, folded: FoldedConv, params) -> LayerEngine:
        g = folded.geometry
        mvtu = MVTU(folded, params.weights, params.thresholds,
                    frame_beats=folded.output_beats_per_frame if g.is_last else None)
        stages = [("window", WindowUnit(folded)), ("mvtu", mvtu)]
        if not g.is_last:
            stages.append(("gather", Gather(folded.pe * g.act_bits, folded.nf)))
        return LayerEngine(stages, output=1, rom_bits=mvtu.rom_bits)

    def output_layout(self, folded: FoldedConv) -> WordLayout:
        g = folded.geometry
        if g.is_last:
            return WordLayout(folded.pe, g.acc_bits, signed=True, has_last=True)
        return WordLayout(folded.pe, g.act_bits, signed=False)

    def latency(self, model: LayerModel, g: ConvGeometry, ticks: np.ndarray) -> np.ndarray:
        """Window unit, MVTU and gather, output pixel by output pixel ``j``:

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
        * a hidden layer's pixel leaves with its last fold, through the gather's register
          (:data:`~dupnet.hw.analytic.GATHER_LATENCY`) when ``nf > 1``; the last layer's
          first beat is fold 0.
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
        return first + per_pixel - 1 + PIPELINE_DEPTH + (GATHER_LATENCY if nf > 1 else 0)


class MaxPoolKind(HwLayerKind):
    """2x2 max-pool, stride 1 or 2, on whole pixels."""
    kind = "maxpool"
    logic_feature = "pool_logic"

    def fold(self, g: PoolGeometry, folding: Folding) -> FoldedPool:
        return FoldedPool(g)

    def model(self, folded: FoldedPool) -> LayerModel:
        return pool_model(folded.geometry)

    def engine(self, folded: FoldedPool, params) -> LayerEngine:
        return LayerEngine([("pool", MaxPool(folded))], output=0)

    def output_layout(self, folded: FoldedPool) -> WordLayout:
        g = folded.geometry
        return WordLayout(g.channels, g.bits, signed=False)

    def latency(self, model: LayerModel, g: PoolGeometry, ticks: np.ndarray) -> np.ndarray:
        """The input pixel that completes a 2x2 block loads the output register
        (:data:`~dupnet.hw.analytic.POOL_LATENCY`):

        * stride 2: output ``(y, x)`` with input ``(2y+1, 2x+1)``: a row of outputs comes in
          a burst, two input pixels apart, during every second input row;
        * stride 1: output ``(y, x)`` with input ``(y+1, x+1)``; the right column's
          ``(y, W-1)`` waits in ``pend`` and leaves a cycle after the ``(y, W-2)`` that the same
          input ``(y+1, W-1)`` loads; the bottom row is flushed from the row buffer one pixel
          per cycle after the frame's last input, once ``flushing`` (a register) is set and,
          when ``H > 1``, ``pend`` has left.  On a one-column map every input of a row
          ``r >= 1`` loads ``pend`` and the next input waits a cycle for it to leave: the pool
          takes at most one input every two cycles there.
        """
        H, W = g.height, g.width
        t = np.asarray(ticks, dtype=np.int64).reshape(H, W)
        if g.stride == 2:
            return (t[1::2, 1::2] + POOL_LATENCY).reshape(-1)
        if W == 1 and H > 1:
            # input r >= 2 taken at max(ticks[r], taken[r-1] + 2); input 1 at once
            r = np.arange(1, H, dtype=np.int64)
            t = t.copy()
            t[1:, 0] = np.maximum.accumulate(t[1:, 0] - 2 * r) + 2 * r
        out = np.empty((H, W), dtype=np.int64)
        out[:-1, :-1] = t[1:, 1:] + POOL_LATENCY
        out[:-1, -1] = t[1:, -1] + 1 + POOL_LATENCY
        out[-1] = t[-1, -1] + (2 if H > 1 else 1) + POOL_LATENCY + np.arange(W)
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


def fold_layer(g, folding: Folding):
    """Layer ``g`` at ``folding`` (its kind's folded record)."""
    return hw_kind(g).fold(g, folding)


def output_layouts(config: NetworkConfig, folding: Folding) -> list[tuple[Any, WordLayout]]:
    """Every layer's geometry and the word layout of its output stream (its probe's; the
    last layer's is the top level's output), in pipeline order."""
    if not isinstance(folding, Folding):
        folding = Folding(dict(folding))
    return [(g, hw_kind(g).output_layout(fold_layer(g, folding)))
            for g in network_geometry(config)]

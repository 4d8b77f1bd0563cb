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
  top level's for the last layer), which the testbenches' scoreboards use.

The golden op, the QAT module and the config parsing are the software side
(:mod:`dupnet.sw.layers`). docs/DEVELOPING.md, "Adding a layer kind", lists the files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dupnet.sw.config import ConvGeometry, NetworkConfig, PoolGeometry, network_geometry

from .adapters import Gather
from .analytic import PIPELINE_DEPTH, LayerModel, conv_model, pool_model
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

    def latency(self, model: LayerModel, g, interval: float) -> list[float]:
        """Cycles from this layer's first input pixel to its first output, when its input
        pixels arrive every ``interval`` cycles (the pipeline model's latency walk), as the
        terms the walk adds in order."""
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

    def latency(self, model: LayerModel, g: ConvGeometry, interval: float) -> list[float]:
        """The window's wait for ``pad*W + pad + 1`` pixels, one pass of the input folds, the
        MVTU pipeline; hidden layers also gather all neuron folds of the first pixel."""
        pad = g.k // 2
        terms = [(pad * g.width + pad + 1) * interval + model.sf + PIPELINE_DEPTH]
        if not g.is_last:
            terms.append((model.nf - 1) * model.sf + 1)
        return terms


class MaxPoolKind(HwLayerKind):
    """2x2 max-pool, stride 1 or 2, on whole pixels."""
    kind = "maxpool"
    logic_feature = "pool_logic"

    def fold(self, g: PoolGeometry, folding: Folding) -> FoldedPool:
        return FoldedPool(g)

    def model(self, folded: FoldedPool) -> LayerModel:
        return pool_model(folded.geometry)

    def engine(self, folded: FoldedPool, params) -> LayerEngine:
        g = folded.geometry
        return LayerEngine([("pool", MaxPool(g.height, g.width, g.channels, g.bits, g.stride,
                                             name=g.name))], output=0)

    def output_layout(self, folded: FoldedPool) -> WordLayout:
        g = folded.geometry
        return WordLayout(g.channels, g.bits, signed=False)

    def latency(self, model: LayerModel, g: PoolGeometry, interval: float) -> list[float]:
        """A row and two pixels of input, two register stages."""
        return [(g.width + 2) * interval + 2]


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

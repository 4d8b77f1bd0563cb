"""The layer-kind extension point on the hardware side (dupnet.hw.kinds): a new kind, defined
and registered here in the test file only (software and hardware side), is generated into the
accelerator, simulated with every layer's output words compared with the golden model, and
modelled by the analytic pipeline model and the budget memory list; a kind with no hardware is
refused with a message naming the layer."""
from dataclasses import dataclass

import pytest
from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dupnet.hw.analytic import LayerModel
from dupnet.hw.budget.memory import layer_memories
from dupnet.hw.folded import FoldingError
from dupnet.hw.folding import Folding
from dupnet.hw.generate import generate_verilog
from dupnet.hw.kinds import HW_KINDS, HwLayerKind, LayerEngine, register_hw_kind
from dupnet.hw.pipeline import pipeline_model
from dupnet.hw.stream_layout import WordLayout
from dupnet.sw.config import ConfigError, int_field, network_geometry, parse_config
from dupnet.sw.layers import LayerContext, LayerKind, register_kind, unregister_kind
from dupnet.sw.random_artifact import random_artifact

from .test_hw_top import run_top

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# ---- the toy kind: every code shifted right, q = x >> shift ((bits - shift)-bit codes)

@dataclass(frozen=True)
class ShiftSpec:
    name: str
    shift: int = 1
    kind: str = "shift"


@dataclass(frozen=True)
class ShiftGeometry:
    index: int
    name: str
    shift: int
    height: int
    width: int
    channels: int
    bits: int

    kind = "shift"
    has_params = False
    is_last = False

    @property
    def out_height(self):
        return self.height

    @property
    def out_width(self):
        return self.width

    @property
    def out_channels(self):
        return self.channels

    @property
    def out_bits(self):
        return self.bits - self.shift

    @property
    def out_shape(self):
        return (self.height, self.width, self.channels)


class ShiftKind(LayerKind):
    """Software side: config fields, geometry, golden op."""
    name = "shift"
    fields = frozenset({"kind", "name", "shift"})
    default_name = "shift"

    def parse(self, raw, ctx: LayerContext):
        shift = int_field(ctx.where, "shift", raw.get("shift", 1), lo=1)
        if ctx.is_first or shift >= ctx.bits:
            raise ConfigError(f"{ctx.where}: field 'shift' ({shift}) must be below the "
                              f"{ctx.bits}-bit codes of a preceding layer")
        return ShiftSpec(name=ctx.name, shift=shift)

    def geometry(self, spec, index, height, width, channels, bits, is_last):
        return ShiftGeometry(index, spec.name, spec.shift, height, width, channels, bits)

    def reference(self, g, params, x):
        return x >> g.shift


class ShiftUnit(wiring.Component):
    """Hardware side: one whole pixel per beat, every code shifted, one register stage."""

    def __init__(self, g: ShiftGeometry):
        self.g = g
        super().__init__({"i": In(stream.Signature(unsigned(g.channels * g.bits))),
                          "o": Out(stream.Signature(unsigned(g.channels * g.out_bits)))})

    def elaborate(self, platform):
        m = Module()
        g = self.g
        shifted = Signal(g.channels * g.out_bits)
        m.d.comb += [shifted[c * g.out_bits:(c + 1) * g.out_bits].eq(
                         self.i.payload[c * g.bits + g.shift:(c + 1) * g.bits])
                     for c in range(g.channels)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(shifted)]
        return m


@dataclass(frozen=True)
class FoldedShift:
    """Whole pixels in and out: ``in_lanes = out_lanes = C`` (the accelerator puts a width
    adapter in front when its upstream emits chunks)."""
    geometry: ShiftGeometry

    @property
    def in_lanes(self):
        return self.geometry.channels

    out_lanes = in_lanes

    @property
    def cycles_per_frame(self):
        return self.geometry.height * self.geometry.width

    @property
    def memories(self):
        return []


class ShiftHwKind(HwLayerKind):
    kind = "shift"

    def fold(self, g, folding, upstream_lanes=None):
        return FoldedShift(g)

    def model(self, folded):
        g = folded.geometry
        return LayerModel(name=g.name, kind=self.kind, in_shape=(g.height, g.width, g.channels),
                          out_shape=g.out_shape, cycles_per_frame=folded.cycles_per_frame,
                          lut_estimate=g.channels * g.out_bits, in_bits=g.bits,
                          out_bits=g.out_bits, in_lanes=folded.in_lanes,
                          out_lanes=folded.out_lanes)

    def engine(self, folded, params):
        return LayerEngine([("shift", ShiftUnit(folded.geometry))], output=0)

    def output_layout(self, folded):
        g = folded.geometry
        return WordLayout(g.channels, g.out_bits, signed=False)

    def latency(self, model, g, ticks):
        return ticks + 1                  # one register stage, pixel for pixel


@pytest.fixture
def shift_kind():
    register_kind(ShiftKind())
    try:
        yield register_hw_kind(ShiftHwKind())
    finally:
        HW_KINDS.pop("shift", None)
        unregister_kind("shift")


TOY = {
    "name": "toy_shift", "weights": "binary",
    "input": {"height": 6, "width": 5, "channels": 1, "bits": 8},
    "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
    "layers": [
        {"kind": "conv", "name": "c1", "k": 3, "out_channels": 4, "act_bits": 3},
        {"kind": "shift", "name": "s1", "shift": 1},
        {"kind": "maxpool", "name": "p1", "stride": 1},
        {"kind": "conv", "name": "c2", "k": 3, "out_channels": 8, "w_dup": 2, "act_bits": 2},
        {"kind": "conv", "name": "head", "k": 1, "out_channels": 6},
    ],
}
FOLDING = Folding({"c1": (2, 1), "c2": (4, 2), "head": (3, 8)})


def test_new_kind_runs_bit_exact_through_the_accelerator(shift_kind):
    art = random_artifact(parse_config(TOY), seed=3)
    dut = run_top(art, FOLDING, frames=2, stall=0.25, seed=1)     # every probe word compared
    assert [name for name, _ in dut.engines] == ["c1", "s1", "p1", "c2", "head"]
    assert len(dut.probe_s1.payload) == 4 * 2                     # 4 channels of 2-bit codes
    pm = pipeline_model(art, FOLDING)
    assert pm.layer("s1").cycles_per_frame == 6 * 5 and pm.layer("s1").out_bits == 2
    geometry = {g.name: g for g in network_geometry(art.config)}
    assert layer_memories(pm.layer("s1").to_json(), geometry["s1"]) == []
    # (a small pixel buffer has two read ports: two copies)
    assert [m.name for m in layer_memories(pm.layer("p1").to_json(), geometry["p1"])] == \
        ["rowbuf", "pixbuf", "pixbuf"]
    design = generate_verilog(art, FOLDING)
    assert "s1_shift" in design.verilog


def test_kind_without_hardware_is_refused(shift_kind):
    art = random_artifact(parse_config(TOY), seed=0)
    del HW_KINDS["shift"]
    with pytest.raises(FoldingError, match=r"layer 1 \(s1\): layer kind 'shift' has no "
                                           r"hardware implementation; known: conv, maxpool"):
        pipeline_model(art, FOLDING)

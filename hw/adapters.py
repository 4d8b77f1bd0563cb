"""Stream width adapters: :class:`Gather` (n narrow beats -> 1 wide), :class:`Unpack`
(1 wide beat -> n narrow) and :class:`WidthAdapter` (``a`` lanes per beat -> ``b`` lanes per
beat, through their common multiple). Beat ``k`` of a group is the wide word's bits
``[k*w +: w]``. And :class:`SkidBuffer`, a stream stage whose ``i.ready`` is a register."""
from __future__ import annotations

import math

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Gather", "Unpack", "WidthAdapter", "SkidBuffer"]


def _pass_through(component) -> Module:
    """``n == 1``: the adapter is a wire from ``i`` to ``o``."""
    m = Module()
    m.d.comb += [component.o.valid.eq(component.i.valid),
                 component.o.payload.eq(component.i.payload),
                 component.i.ready.eq(component.o.ready)]
    return m


class Gather(wiring.Component):
    """Collect ``n`` beats of ``width`` bits into one beat of ``n*width`` bits.

    Parameters
    ----------
    width : int
        Bits of an input beat.
    n : int
        Input beats per output beat (``1``: a wire).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(width)))
        Narrow input stream; beat ``k`` of a group lands at bits ``[k*width +: width]``.
    o : Out(stream.Signature(unsigned(n*width)))
        Wide output stream (registered; full throughput).
    """

    def __init__(self, width: int, n: int):
        self.width, self.n = width, n
        super().__init__({"i": In(stream.Signature(unsigned(width))),
                          "o": Out(stream.Signature(unsigned(width * n)))})

    def elaborate(self, platform):
        w, n = self.width, self.n
        if n == 1:
            return _pass_through(self)
        m = Module()
        buf = Signal(w * (n - 1))
        cnt = Signal(range(n))
        last = Signal()
        m.d.comb += [last.eq(cnt == n - 1),
                     self.i.ready.eq(~last | ~self.o.valid | self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(last):
                m.d.sync += [self.o.payload.eq(Cat(buf, self.i.payload)), self.o.valid.eq(1),
                             cnt.eq(0)]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
                if n == 2:
                    m.d.sync += buf.eq(self.i.payload)
                else:
                    m.d.sync += buf.eq(Cat(buf[w:], self.i.payload))
        return m


class Unpack(wiring.Component):
    """Split each beat of ``n*width`` bits into ``n`` beats of ``width`` bits, low part first.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(n*width)))
        Wide input stream.
    o : Out(stream.Signature(unsigned(width)))
        Narrow output stream, beat ``k`` = bits ``[k*width +: width]`` of the wide beat.
    """

    def __init__(self, width: int, n: int):
        self.width, self.n = width, n
        super().__init__({"i": In(stream.Signature(unsigned(width * n))),
                          "o": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform):
        w, n = self.width, self.n
        if n == 1:
            return _pass_through(self)
        m = Module()
        buf = Signal(w * n)
        cnt = Signal(range(n))
        valid = Signal()
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.eq(buf[:w]),
                     self.i.ready.eq(~valid | (self.o.ready & (cnt == n - 1)))]
        with m.If(self.o.valid & self.o.ready):
            with m.If(cnt == n - 1):
                m.d.sync += [valid.eq(0), cnt.eq(0)]
            with m.Else():
                m.d.sync += [buf.eq(buf[w:]), cnt.eq(cnt + 1)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(self.i.payload), valid.eq(1)]
        return m


class WidthAdapter(wiring.Component):
    """Convert a stream of ``lanes_in`` codes per beat into one of ``lanes_out`` codes per
    beat (the same codes in the same order): a :class:`Gather` to ``lcm(lanes_in, lanes_out)``
    lanes, then an :class:`Unpack` to ``lanes_out``; each a wire where it has nothing to do.

    Parameters
    ----------
    bits : int
        Bits per code (lane).
    lanes_in, lanes_out : int
        Codes per input / output beat.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(lanes_in*bits)))
        Input beats; lane ``l`` at ``[l*bits +: bits]``.
    o : Out(stream.Signature(unsigned(lanes_out*bits)))
        Output beats, the same lane packing.
    """

    def __init__(self, bits: int, lanes_in: int, lanes_out: int):
        self.bits, self.lanes_in, self.lanes_out = bits, lanes_in, lanes_out
        wide = math.lcm(lanes_in, lanes_out)
        self.gather = Gather(lanes_in * bits, wide // lanes_in)
        self.unpack = Unpack(lanes_out * bits, wide // lanes_out)
        super().__init__({"i": In(stream.Signature(unsigned(lanes_in * bits))),
                          "o": Out(stream.Signature(unsigned(lanes_out * bits)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.gather, m.submodules.unpack = self.gather, self.unpack
        wiring.connect(m, wiring.flipped(self.i), self.gather.i)
        wiring.connect(m, self.gather.o, self.unpack.i)
        wiring.connect(m, self.unpack.o, wiring.flipped(self.o))
        return m



class SkidBuffer(wiring.Component):
    """A one-beat skid buffer: ``i.ready`` is a register, so the consumer's ready logic does not
    reach the producer's enables (a timing cut), at no latency and no loss of throughput.

    While empty, beats pass straight through (``o`` is ``i``); a beat offered while ``o`` is
    not ready is kept, ``i.ready`` drops for the next cycle and the kept beat goes first. Every
    beat is accepted no later than the consumer behind it would have accepted it directly.

    Parameters
    ----------
    width : int
        Payload bits.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(width)))
        Input stream; ``i.ready`` is the register "empty".
    o : Out(stream.Signature(unsigned(width)))
        Output stream: the kept beat, else ``i`` (``o.valid`` does not depend on ``o.ready``).
    """

    def __init__(self, width: int):
        self.width = width
        super().__init__({"i": In(stream.Signature(unsigned(width))),
                          "o": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        kept = Signal(self.width)
        m.d.comb += [self.i.ready.eq(~full),
                     self.o.valid.eq(full | self.i.valid),
                     self.o.payload.eq(Mux(full, kept, self.i.payload))]
        with m.If(full):
            with m.If(self.o.ready):
                m.d.sync += full.eq(0)
        with m.Elif(self.i.valid & ~self.o.ready):
            m.d.sync += [full.eq(1), kept.eq(self.i.payload)]
        return m

"""Streaming 2x2 max-pool on activation codes (full pixels in and out).

* stride 2: output ``(y, x) = max`` of input rows ``2y, 2y+1`` and columns ``2x, 2x+1``
  (H and W even, checked by the config).
* stride 1: output ``(y, x) = max`` of input ``(y..y+1, x..x+1)`` with the bottom row and the
  right column replicated (Tiny-YOLO's sixth pool); the output keeps the ``H x W`` size.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .folded import ROW_BUFFER, FoldedPool

__all__ = ["MaxPool", "vmax"]


def vmax(m, a, b, channels: int, bits: int, name: str = "vmax"):
    """Channel-wise unsigned max of two packed pixels, as a new combinational Signal (so that
    slicing the result later does not copy the whole expression)."""
    out = Signal(channels * bits, name=name)
    m.d.comb += out.eq(Cat(*[Mux(a[c * bits:(c + 1) * bits] > b[c * bits:(c + 1) * bits],
                                 a[c * bits:(c + 1) * bits], b[c * bits:(c + 1) * bits])
                             for c in range(channels)]))
    return out


class MaxPool(wiring.Component):
    """2x2 max-pool unit.

    Parameters
    ----------
    layer : FoldedPool
        The pool: input ``H x W``, ``channels`` codes of ``bits`` bits per pixel, stride 2
        (halves the size) or 1 (bottom/right edge replicate); its row buffer is
        ``layer.row_buffer``.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(channels*bits)))
        Input pixels, raster order, channel ``c`` at ``[c*bits +: bits]``; frames back to back.
    o : Out(stream.Signature(unsigned(channels*bits)))
        Output pixels, raster order, same packing.
    """

    def __init__(self, layer: FoldedPool):
        g = layer.geometry
        self.layer = layer
        self.height, self.width, self.channels, self.bits = g.height, g.width, g.channels, \
            g.bits
        self.stride, self.name = g.stride, g.name
        self.depth = layer.row_buffer.depth
        pw = self.channels * self.bits
        super().__init__({"i": In(stream.Signature(unsigned(pw))),
                          "o": Out(stream.Signature(unsigned(pw)))})

    def elaborate(self, platform):
        return self._stride2() if self.stride == 2 else self._stride1()

    def _common(self, m):
        H, W = self.height, self.width
        pw = self.channels * self.bits
        m.submodules[ROW_BUFFER] = mem = Memory(shape=unsigned(pw), depth=self.depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,))
        r = Signal(range(max(2, H)))
        c = Signal(range(max(2, W)))
        o_valid = Signal()
        o_free = Signal()
        m.d.comb += [self.o.valid.eq(o_valid), o_free.eq(~o_valid | self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_valid.eq(0)
        return mem, wp, rp, r, c, o_valid, o_free

    def _advance_rc(self, m, r, c, accept):
        H, W = self.height, self.width
        last_c = c == W - 1
        c_next = Signal.like(c)
        m.d.comb += c_next.eq(Mux(accept, Mux(last_c, 0, c + 1), c))
        with m.If(accept):
            m.d.sync += c.eq(c_next)
            with m.If(last_c):
                m.d.sync += r.eq(Mux(r == H - 1, 0, r + 1))
        return c_next

    def _stride2(self):
        m = Module()
        C, B = self.channels, self.bits
        mem, wp, rp, r, c, o_valid, o_free = self._common(m)
        hold = Signal(C * B)
        accept = Signal()
        # only the input that completes a 2x2 block needs the output register
        m.d.comb += [self.i.ready.eq(o_free | ~(c[0] & r[0])),
                     accept.eq(self.i.valid & self.i.ready)]
        c_next = self._advance_rc(m, r, c, accept)
        m.d.comb += rp.addr.eq(c_next >> 1)
        px = self.i.payload
        pair = vmax(m, hold, px, C, B, name="pair")
        m.d.comb += [wp.addr.eq(c >> 1), wp.data.eq(pair),
                     wp.en.eq(accept & c[0] & ~r[0])]
        with m.If(accept):
            with m.If(~c[0]):
                m.d.sync += hold.eq(px)
            with m.Elif(r[0]):
                m.d.sync += [self.o.payload.eq(vmax(m, pair, rp.data, C, B, name="quad")), o_valid.eq(1)]
        return m

    def _stride1(self):
        m = Module()
        H, W = self.height, self.width
        C, B = self.channels, self.bits
        mem, wp, rp, r, c, o_valid, o_free = self._common(m)
        prev = Signal(C * B)          # in(r, c-1)
        edge = Signal(C * B)          # in(r-1, W-1), then in(r, W-1)
        pend = Signal(C * B)
        pend_valid = Signal()
        flushing = Signal()
        f = Signal(range(max(2, W)))
        accept = Signal()
        # Input readiness.  An input with c > 0 and r > 0 emits an output (needs the output
        # register and no pending right-edge output); the last input of a row (c = W-1) may
        # create the right-edge output (needs ``pend`` free).  While the bottom row of the
        # previous frame is being flushed, the next frame's first row is accepted (it emits
        # nothing), as long as it only overwrites row-buffer words already flushed
        # (word c-1 < f) and leaves ``edge`` (read by the last flush output) alone (c < W-1).
        needs_out = Signal()
        m.d.comb += needs_out.eq((c != 0) & (r != 0))
        with m.If(flushing):
            m.d.comb += self.i.ready.eq((r == 0) & (c < f))
        with m.Else():
            m.d.comb += self.i.ready.eq(Mux(needs_out, o_free & ~pend_valid,
                                            ~pend_valid | (c != W - 1)))
        m.d.comb += accept.eq(self.i.valid & self.i.ready)
        c_next = self._advance_rc(m, r, c, accept)
        frame_last = (r == H - 1) & (c == W - 1)
        px = self.i.payload
        h = vmax(m, prev, px, C, B, name="hmax")  # hmax(r, c-1)
        emit_flush = Signal()
        m.d.comb += emit_flush.eq(flushing & o_free & ~pend_valid)
        # read address: the word needed at the next accept (rowbuf[c-1]) or flush step (f)
        with m.If(flushing | (accept & frame_last)):
            m.d.comb += rp.addr.eq(Mux(flushing, Mux(emit_flush, f + 1, f), 0))
        with m.Else():
            m.d.comb += rp.addr.eq(c_next - 1)
        m.d.comb += [wp.addr.eq(c - 1), wp.data.eq(h), wp.en.eq(accept & (c != 0))]
        with m.If(accept):
            m.d.sync += prev.eq(px)
            with m.If((c != 0) & (r != 0)):
                m.d.sync += [self.o.payload.eq(vmax(m, rp.data, h, C, B, name="vmax_rows")), o_valid.eq(1)]
            with m.If(c == W - 1):
                m.d.sync += edge.eq(px)
                with m.If(r != 0):
                    m.d.sync += [pend.eq(vmax(m, edge, px, C, B, name="vmax_edge")), pend_valid.eq(1)]
                with m.If(r == H - 1):
                    m.d.sync += [flushing.eq(1), f.eq(0)]
        with m.If(pend_valid & o_free):
            m.d.sync += [self.o.payload.eq(pend), o_valid.eq(1), pend_valid.eq(0)]
        with m.If(emit_flush):
            m.d.sync += [self.o.payload.eq(Mux(f == W - 1, edge, rp.data)), o_valid.eq(1),
                         f.eq(f + 1)]
            with m.If(f == W - 1):
                m.d.sync += [flushing.eq(0), f.eq(0)]
        return m

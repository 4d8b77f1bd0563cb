"""Streaming 2x2 max-pool on activation codes, chunk-serial (one chunk of a pixel per cycle).

* stride 2: output ``(y, x) = max`` of input rows ``2y, 2y+1`` and columns ``2x, 2x+1``
  (H and W even, checked by the config).
* stride 1: output ``(y, x) = max`` of input ``(y..y+1, x..x+1)`` with the bottom row and the
  right column replicated (Tiny-YOLO's sixth pool); the output keeps the ``H x W`` size.
"""
from __future__ import annotations

from typing import NamedTuple

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .adapters import SkidBuffer
from .folded import PIXEL_BUFFER, ROW_BUFFER, FoldedPool

__all__ = ["MaxPool", "vmax"]


class _OutputRegs(NamedTuple):
    valid: Signal
    skid_valid: Signal
    skid: Signal


def vmax(m, a, b, channels: int, bits: int, name: str = "vmax"):
    """Channel-wise unsigned max of two packed pixels, as a new combinational Signal (so that
    slicing the result later does not copy the whole expression)."""
    out = Signal(channels * bits, name=name)
    m.d.comb += out.eq(Cat(*[Mux(a[c * bits:(c + 1) * bits] > b[c * bits:(c + 1) * bits],
                                 a[c * bits:(c + 1) * bits], b[c * bits:(c + 1) * bits])
                             for c in range(channels)]))
    return out


class MaxPool(wiring.Component):
    """2x2 max-pool unit, chunk-serial: one ``lanes``-wide chunk of a pixel per cycle.

    Parameters
    ----------
    layer : FoldedPool
        The pool: input ``H x W``, ``channels`` codes of ``bits`` bits per pixel, ``lanes``
        channels per beat (``chunks = channels/lanes`` beats per pixel), stride 2 (halves the
        size) or 1 (bottom/right edge replicate); its memories are ``layer.row_buffer`` and
        (stride 1) ``layer.pixel_buffer``.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(lanes*bits)))
        Input chunks: pixels in raster order, each as ``chunks`` beats, beat ``j`` lane ``l``
        channel ``j*lanes + l`` at ``[l*bits +: bits]``; frames back to back.
    o : Out(stream.Signature(unsigned(lanes*bits)))
        Output chunks, the same order and packing.
    collision : Signal
        Simulation check: a non-transparent buffer is read at the word written in the same
        cycle. Never 1 (tests/hw/test_hw_pool.py watches it): the pool never relies on what
        such a read returns, so the buffers could carry ``no_rw_check``.

    Notes
    -----
    The output register has a skid register behind it, and the pool emits while the skid
    register is empty: ``o.ready`` reaches only those registers (no latency, the same
    throughput). Every memory word is one chunk, read the cycle before it is used (the address of the next
    input's word) and written back in the cycle it is used; a read port is transparent only
    where a word can be read in the cycle it is written (one chunk per pixel).

    * stride 2: ``rowbuf[x/2, j]`` holds the running max of the 2x2 block; the input that
      completes the block emits it.
    * stride 1: ``pixbuf[j]`` delays the input by one pixel; ``rowbuf[c, j]`` holds the row
      above's horizontal max ``max(in(r-1, c), in(r-1, c+1))`` (``in(r-1, W-1)`` at ``W-1``).
      Input ``(r, c >= 1)`` emits ``out(r-1, c-1)``; input ``(r, 0)`` emits the right-edge
      ``out(r-2, W-1)``.  After the frame's last input an edge step (``chunks`` cycles) emits
      ``out(H-2, W-1)``, then the bottom row is flushed from the row buffer; the next frame's
      first row and the first pixel of its second row come in meanwhile (they emit nothing:
      the edge step and the flush take their output slots, so the pool keeps one chunk per
      cycle across frames), each writing only words already emitted or emitted in the same
      cycle (a one-row frame's last input waits for the flush to end). The input passes a
      :class:`~dupnet.hw.adapters.SkidBuffer` first: ``i.ready`` is a register (no latency,
      the same throughput), so this readiness logic stays inside the pool.
    """

    def __init__(self, layer: FoldedPool):
        g = layer.geometry
        self.layer = layer
        self.height, self.width, self.channels, self.bits = g.height, g.width, g.channels, \
            g.bits
        self.stride, self.name = g.stride, g.name
        self.lanes, self.chunks = layer.lanes, layer.chunks
        w = self.lanes * self.bits
        super().__init__({"i": In(stream.Signature(unsigned(w))),
                          "o": Out(stream.Signature(unsigned(w)))})
        self.collision = Signal()

    def elaborate(self, platform):
        self._collisions = []
        m = self._stride2() if self.stride == 2 else self._stride1_with_skid()
        m.d.comb += self.collision.eq(Cat(*self._collisions).any() if self._collisions else 0)
        return m

    def _stride1_with_skid(self):
        # the stride-1 pool's input readiness depends on its edge and flush state (counters,
        # compares); a skid buffer keeps that logic off the producer's enables
        m = Module()
        m.submodules.in_skid = skid = SkidBuffer(self.lanes * self.bits)
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        self._stride1(m, skid.o)
        return m

    def _ram(self, m, name, shape, transparent):
        """A row or pixel buffer. Transparent where a word can be read in the cycle it is
        written; else no read the pool uses ever hits the word written in the same cycle
        (:attr:`collision` watches that in simulation), so the buffers could carry
        ``no_rw_check``; they do not: on the ECP5 (dupnet-tinier-yolo at 100 frames/s, session
        7) it saved 24 LUT4 and 29 FF and changed fmax by less than nextpnr's spread between
        runs of near-identical netlists (72.5-82.9 MHz)."""
        mem = Memory(shape=unsigned(shape.width), depth=shape.depth, init=[])
        m.submodules[name] = mem
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,) if transparent else ())
        if not transparent:
            self._collisions.append(wp.en & rp.en & (wp.addr == rp.addr))
        return wp, rp

    def _pixel_buffer(self, m):
        """The stride-1 pool's pixel buffer: its write port and its read ports (two for a small
        buffer: :attr:`~dupnet.hw.folded.FoldedPool.pixel_buffer_reads`)."""
        shape, n = self.layer.pixel_buffer, self.chunks
        m.submodules[PIXEL_BUFFER] = mem = Memory(shape=unsigned(shape.width),
                                                  depth=shape.depth, init=[])
        wp = mem.write_port()
        rps = [mem.read_port(transparent_for=(wp,) if n == 1 else ())
               for _ in range(self.layer.pixel_buffer_reads)]
        return wp, rps

    def _pixel_read(self, m, wp, rps, accept, addr_acc, addr_hold):
        """The pixel-buffer word of the next cycle, read at the address after this cycle's
        transfer or without it: with one port the address is picked by the transfer; with two,
        each port reads one candidate and the registered transfer picks the data, so the
        handshake reaches a register, not the buffer's address (the ECP5 critical path)."""
        if len(rps) == 1:
            rp, = rps
            m.d.comb += rp.addr.eq(Mux(accept, addr_acc, addr_hold))
            if self.chunks > 1:
                self._collisions.append(wp.en & (wp.addr == rp.addr))
            return rp.data
        acc, hold = rps
        took = Signal(name="took_r")
        m.d.sync += took.eq(accept)
        m.d.comb += [acc.addr.eq(addr_acc), hold.addr.eq(addr_hold)]
        if self.chunks > 1:        # the port whose data is used
            self._collisions.append(wp.en & Mux(accept, wp.addr == acc.addr,
                                                wp.addr == hold.addr))
        data = Signal.like(acc.data, name="pix_data")
        m.d.comb += data.eq(Mux(took, acc.data, hold.data))
        return data

    def _output(self, m):
        """The output register and a skid register behind it. Returns the output state and
        ``o_free`` (an emitted chunk has a place: the skid register is empty), a register, so
        the consumer's ``o.ready`` reaches only these two registers' enables, not the pool's
        counters and addresses."""
        out = _OutputRegs(Signal(name="o_valid"), Signal(name="skid_valid"),
                          Signal(self.lanes * self.bits, name="skid"))
        o_free = Signal()
        m.d.comb += [self.o.valid.eq(out.valid), o_free.eq(~out.skid_valid)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(out.skid_valid & (~out.valid | self.o.ready)):
            m.d.sync += [out.valid.eq(1), self.o.payload.eq(out.skid), out.skid_valid.eq(0)]
        return out, o_free

    def _emit(self, m, out, value):
        """Emit ``value`` (only while ``o_free``): to the output register when it is free or
        being read, else to the skid register."""
        with m.If(~out.valid | self.o.ready):
            m.d.sync += [self.o.payload.eq(value), out.valid.eq(1)]
        with m.Else():
            m.d.sync += [out.skid.eq(value), out.skid_valid.eq(1)]

    def _position(self, m, accept):
        """Input position: chunk ``j``, column ``c``, row ``r`` and ``lin = c*chunks + j``
        (within the row), registers. Returns them, ``after`` (each one's value after a
        transfer, from the registers alone: the read addresses of both outcomes of a cycle's
        transfer are built from it) and ``frame_last`` (the current input is the frame's
        last)."""
        H, W, n = self.height, self.width, self.chunks
        j, c, r = Signal(range(max(2, n))), Signal(range(max(2, W))), Signal(range(max(2, H)))
        lin = Signal(range(max(2, W * n)))
        last_j, last_c, last_r = j == n - 1, c == W - 1, r == H - 1
        after = {"j": Mux(last_j, 0, j + 1),
                 "c": Mux(last_j, Mux(last_c, 0, c + 1), c),
                 "r": Mux(last_j & last_c, Mux(last_r, 0, r + 1), r),
                 "lin": Mux(last_j & last_c, 0, lin + 1)}
        with m.If(accept):
            m.d.sync += [j.eq(after["j"]), c.eq(after["c"]), r.eq(after["r"]),
                         lin.eq(after["lin"])]
        frame_last = Signal()
        m.d.comb += frame_last.eq(last_j & last_c & last_r)
        return j, c, r, lin, after, frame_last

    def _stride2(self):
        m = Module()
        L, B, n = self.lanes, self.bits, self.chunks
        # one chunk per pixel: the next input reads the word this one writes
        wp, rp = self._ram(m, ROW_BUFFER, self.layer.row_buffer, transparent=n == 1)
        out, o_free = self._output(m)
        accept = Signal()
        j, c, r, _, after, _ = self._position(m, accept)
        completes = Signal()
        m.d.comb += [completes.eq(c[0] & r[0]),
                     self.i.ready.eq(o_free | ~completes),
                     accept.eq(self.i.valid & self.i.ready)]
        # word (c/2, j): the pixel pair's column, times chunks, plus the chunk
        def word(col, chunk):
            return (col >> 1) * n + chunk if n > 1 else col >> 1
        px = self.i.payload
        run = vmax(m, rp.data, px, L, B, name="run_max")
        # the next input's word for both outcomes of this cycle's transfer, picked by it: the
        # address arithmetic does not follow the producer's valid
        word_acc, word_hold = Signal.like(rp.addr), Signal.like(rp.addr)
        m.d.comb += [word_acc.eq(word(after["c"], after["j"])), word_hold.eq(word(c, j))]
        m.d.comb += [rp.addr.eq(Mux(accept, word_acc, word_hold)), wp.addr.eq(word_hold),
                     wp.data.eq(Mux(c[0] | r[0], run, px)), wp.en.eq(accept & ~completes)]
        with m.If(accept & completes):
            self._emit(m, out, run)
        return m

    def _stride1(self, m, i):
        """The stride-1 pool in ``m``, its input stream ``i``."""
        H, W = self.height, self.width
        L, B, n = self.lanes, self.bits, self.chunks
        depth = W * n
        wp, rp = self._ram(m, ROW_BUFFER, self.layer.row_buffer, transparent=depth == 1)
        pwp, prps = self._pixel_buffer(m)
        out, o_free = self._output(m)
        accept = Signal()
        j, c, r, lin, after, frame_last = self._position(m, accept)
        edge, flushing = Signal(), Signal()
        ej = Signal(range(max(2, n)))                  # edge step: chunk
        fp = Signal(range(max(2, depth)))              # flush step: row-buffer word
        edge_step, flush_step = Signal(), Signal()
        m.d.comb += [edge_step.eq(edge & o_free), flush_step.eq(flushing & o_free & ~edge)]
        # the row-buffer word of input lin: (c-1, j), or (W-1, j) at c = 0
        def rb_word(x):
            return Mux(x >= n, x - n, x + (W - 1) * n) if W > 1 else x
        # an input (r, c >= 1) or (r >= 2, c = 0) emits; while flushing, the next frame's first
        # row and the first pixel of its second row come in (they emit nothing: the flush
        # takes their output slots), writing only words the flush has emitted, or emits in
        # the same cycle (the word is read the cycle before)
        emits = Signal()
        m.d.comb += emits.eq(Mux(c == 0, r >= 2, r != 0))
        # ``behind``: the word input ``lin`` writes is one the flush has emitted (``< fp``) or
        # emits now (``== fp`` and a flush step). The compares are registers, loaded with the
        # next cycle's (for both outcomes of this cycle's transfer, picked by ``accept``), so
        # no address arithmetic lies between the pool's counters and ``i.ready``
        behind = Signal()
        fp_next = Signal.like(fp)
        word_lt = Signal(name="word_lt")
        word_eq = Signal(name="word_eq", init=int(W == 1))   # at reset: lin = fp = 0
        cmp, wword = {}, {}
        for key, x in (("acc", after["lin"]), ("hold", lin)):
            wword[key] = wx = Signal.like(fp, name=f"wword_{key}")
            m.d.comb += wx.eq(rb_word(x))
            cmp[key] = (wx < fp_next, wx == fp_next)
        m.d.sync += [word_lt.eq(Mux(accept, cmp["acc"][0], cmp["hold"][0])),
                     word_eq.eq(Mux(accept, cmp["acc"][1], cmp["hold"][1]))]
        m.d.comb += behind.eq(((r == 0) & (c == 0)) | word_lt | (word_eq & flush_step))
        with m.If(edge):
            # the next frame's first pixel comes in beside the edge step, chunk by chunk at
            # most in step with it (chunk j writes pixbuf[j] in the cycle the edge step uses
            # it, or after): it emits nothing and writes no row-buffer word
            m.d.comb += i.ready.eq((r == 0) & (c == 0) & ~frame_last &
                                        ((j < ej) | ((j == ej) & edge_step)))
        with m.Elif(flushing):
            # (a one-row frame's last input starts the next edge step: after the flush)
            m.d.comb += i.ready.eq(((r == 0) | ((r == 1) & (c == 0))) & behind &
                                        ~frame_last)
        with m.Else():
            m.d.comb += i.ready.eq(o_free | ~emits)
        m.d.comb += accept.eq(i.valid & i.ready)

        ej_next = Signal.like(ej)
        m.d.comb += [ej_next.eq(Mux(edge_step, Mux(ej == n - 1, 0, ej + 1), ej)),
                     fp_next.eq(Mux(flush_step, Mux(fp == depth - 1, 0, fp + 1), fp))]
        def edge_flush_next(took):
            """``edge`` and ``flushing`` after this cycle, ``took``: it takes the frame's last
            input."""
            return (Mux(edge_step & (ej == n - 1), 0, edge | took),
                    Mux(flush_step & (fp == depth - 1), 0, flushing | took))
        edge_next, flush_next = edge_flush_next(accept & frame_last)
        m.d.sync += [ej.eq(ej_next), fp.eq(fp_next), edge.eq(edge_next),
                     flushing.eq(flush_next)]
        # the read addresses of the next cycle, for both outcomes of this cycle's transfer
        # (picked by it): no address arithmetic follows the producer's valid
        addr = {}
        for key, took, jn in (("acc", frame_last, after["j"]), ("hold", Const(0), j)):
            e_next, f_next = edge_flush_next(took)
            addr[key] = (Mux(e_next, (W - 1) * n + ej_next, Mux(f_next, fp_next, wword[key])),
                         Mux(e_next, ej_next, jn))
        m.d.comb += rp.addr.eq(Mux(accept, addr["acc"][0], addr["hold"][0]))
        p = self._pixel_read(m, pwp, prps, accept, addr["acc"][1], addr["hold"][1])

        px, rb = i.payload, rp.data
        hmax = vmax(m, p, px, L, B, name="hmax")       # max(in(r, c-1), in(r, c))
        h = Signal(L * B)
        m.d.comb += h.eq(Mux(edge | (c == 0), p, hmax))
        vout = vmax(m, rb, h, L, B, name="vmax_rows")
        m.d.comb += [pwp.addr.eq(j), pwp.data.eq(px), pwp.en.eq(accept),
                     wp.data.eq(h)]
        with m.If(edge):
            m.d.comb += [wp.addr.eq((W - 1) * n + ej), wp.en.eq(edge_step)]
        with m.Else():
            m.d.comb += [wp.addr.eq(wword["hold"]), wp.en.eq(accept & ((c != 0) | (r != 0)))]
        with m.If(accept & emits):
            self._emit(m, out, vout)
        with m.If(edge_step & (H > 1)):
            self._emit(m, out, vout)
        with m.If(flush_step):
            self._emit(m, out, rb)

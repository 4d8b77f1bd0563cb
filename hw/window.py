"""Sliding-window / line-buffer unit: k x k x C' windows in SIMD-wide chunks.

For each output pixel (raster order) the unit emits the window ``nf`` times (once per neuron
fold of the MVTU behind it); each time, for every (ky, kx) in raster order, the ``C'/SIMD``
chunks of ``X' = concat([pixel] * x_dup)`` (input duplication: the same line-buffer word is read
again, no extra activation memory). Positions outside the image are zeros ("same" padding).

A line-buffer word is one SIMD-wide chunk of a pixel where SIMD divides ``C_in`` (one word
read per chunk, no multiplexer), else a whole pixel (:func:`dupnet.hw.folded.buffer_lanes`).
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .folded import LINE_BUFFER, FoldedConv

__all__ = ["WindowUnit"]


class WindowUnit(wiring.Component):
    """Line buffer + window generator of one conv layer.

    Parameters
    ----------
    layer : FoldedConv
        The layer at its folding: the image ``H x W`` (any, e.g. 7 x 5), ``C_in`` channels of
        ``in_bits`` bits (unsigned), kernel ``k`` in (1, 3) (stride 1, zero "same" padding),
        SIMD output lanes, ``x_dup``; the window is replayed ``nf = C_out/PE`` times per pixel
        (once per neuron fold of the MVTU behind it); the line buffer is
        ``layer.line_buffer`` (:func:`dupnet.hw.folded.window_depth` pixels).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(in_lanes*bits)))
        One line-buffer word per beat: pixels in raster order, each as ``words_per_pixel``
        beats of ``in_lanes`` channels (beat ``w`` lane ``l``: channel ``w*in_lanes + l`` at
        ``[l*bits +: bits]``), frames back to back.
    o : Out(stream.Signature(unsigned(simd*bits)))
        One chunk per beat; lane ``l`` is channel ``chunk*simd + l`` of ``X'``.
    collision : Signal
        Simulation check: a pixel the output uses is read from the slot written in the same
        cycle. Never 1 (tests/hw/test_hw_window.py watches it): the line buffer is emitted with
        ``no_rw_check`` (:data:`dupnet.hw.yosys.NO_RW_CHECK`), so a read/write collision would
        be undefined in block RAM.
    """

    def __init__(self, layer: FoldedConv):
        g = layer.geometry
        if g.k not in (1, 3):
            raise ValueError(f"{layer.where}: window unit supports k in (1, 3), got {g.k}")
        self.layer = layer
        self.height, self.width, self.channels, self.bits = g.height, g.width, g.in_channels, \
            g.in_bits
        self.k, self.simd, self.x_dup, self.repeat = g.k, layer.simd, g.x_dup, layer.nf
        self.depth = layer.window_pixels
        self.chunks = layer.chunks
        self.in_lanes, self.words = layer.in_lanes, layer.words_per_pixel
        super().__init__({"i": In(stream.Signature(unsigned(self.in_lanes * self.bits))),
                          "o": Out(stream.Signature(unsigned(self.simd * self.bits)))})
        self.collision = Signal()

    def elaborate(self, platform):
        m = Module()
        H, W, depth = self.height, self.width, self.depth
        hw = H * W
        abits = max(1, (depth - 1).bit_length())
        lb = self.layer.line_buffer
        m.submodules[LINE_BUFFER] = mem = Memory(shape=unsigned(lb.width), depth=lb.depth,
                                                 init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        # reader position: output pixel index y*W + x (within the frame), row, column
        pix = Signal(range(max(2, hw)))
        y = Signal(range(max(2, H)))
        x = Signal(range(max(2, W)))
        avail, need, write = self._write_side(m, wp, pix, y, x, abits)

        # ---- read side
        # address of the centre pixel: input pixel n (counted over all frames) is stored at
        # n mod depth, and the reader's pixels follow the writer's one by one across frames
        cptr = Signal(abits)
        j = Signal(range(max(2, self.chunks)))
        kx = Signal(range(max(2, self.k)))
        ky = Signal(range(max(2, self.k)))
        nfc = Signal(range(max(2, self.repeat)))
        # ``can_issue`` (the pixel the next output needs is in the buffer) is a register,
        # loaded with the compare of the next ``avail`` and ``need``: no compare on the path
        # from the handshake into the counters' enables
        can_issue = Signal()
        advance = Signal()
        issue = Signal()
        o_valid = Signal()
        zero_r = Signal()
        j_r = Signal.like(j)
        m.d.comb += [
            advance.eq(~o_valid | self.o.ready),
            issue.eq(advance & can_issue),
            self.o.valid.eq(o_valid),
        ]
        word = Signal(range(max(2, self.words)))      # the chunk's word within the pixel
        inside = self._read_address(m, rp, cptr, kx, ky, y, x, word, advance, abits)
        with m.If(advance):
            m.d.sync += [o_valid.eq(can_issue), zero_r.eq(~inside), j_r.eq(j)]
        m.d.comb += self.collision.eq(issue & inside & wp.en & (wp.addr == rp.addr))
        frame_end, pixel_done = self._counters(m, issue, j, kx, ky, nfc, x, y, pix, cptr)
        need_next = self._next_need(m, need, pixel_done, x, y, pix)
        if self.words > 1:
            with m.If(issue):
                m.d.sync += word.eq(Mux(word == self.words - 1, 0, word + 1))
        avail_next = Signal.like(avail)
        m.d.comb += avail_next.eq(avail + write - Mux(frame_end, hw, 0))
        m.d.sync += [avail.eq(avail_next), can_issue.eq(avail_next > need_next)]

        # ---- output: memory read data (held while stalled); a whole-pixel word is duplicated
        # and chunk-selected
        if self.in_lanes == self.simd:
            chunk = rp.data
        else:
            dup = Cat(*([rp.data] * self.x_dup))
            chunk = dup if self.chunks == 1 else dup.word_select(j_r, self.simd * self.bits)
        m.d.comb += self.o.payload.eq(Mux(zero_r, 0, chunk))
        return m

    def _write_side(self, m, wp, pix, y, x, abits):
        """Write pointer and flow control: a pixel is accepted while the buffer has a free
        slot (slots before the oldest pixel the reader still needs are free). Returns
        ``avail`` (pixels written since the reader's frame start), ``need`` (pixels the reader
        needs before its next output) and ``write``."""
        H, W, depth = self.height, self.width, self.depth
        hw = H * W
        wr_ptr = Signal(abits)                         # pixel slot
        wr_word = Signal(range(max(2, self.words)))    # word within the pixel
        avail = Signal(range(hw + depth + 1))
        freed = Signal(range(max(2, hw)))
        # ``need`` is a register, set when the reader moves to the next pixel
        # (:meth:`_next_need`): its adders stay off the path into the counters' enables
        need = Signal(range(hw + 2 * W + 2), init=self._need(0, 0, 0))
        if self.k // 2:
            m.d.comb += freed.eq(Mux(pix >= W + 1, pix - (W + 1), 0))
        else:
            m.d.comb += freed.eq(pix)
        accept = Signal()
        # ``i.ready`` is a register (no combinational path from the reader's counters to the
        # upstream's handshake: that chain limited fmax): next cycle's free slot, counted
        # with this cycle's write and the slots freed so far (the reader only frees more, so
        # it is never late by more than the cycle a slot is freed in)
        ready = Signal(init=1)
        write = Signal()          # a pixel's last word is written
        m.d.sync += ready.eq((avail + write - freed) < depth)
        m.d.comb += [
            self.i.ready.eq(ready),
            accept.eq(self.i.valid & self.i.ready),
            wp.addr.eq(self._word_address(wr_ptr, wr_word)), wp.data.eq(self.i.payload),
            wp.en.eq(accept),
        ]
        m.d.comb += write.eq(accept & (wr_word == self.words - 1))
        if self.words > 1:
            with m.If(accept):
                m.d.sync += wr_word.eq(Mux(wr_word == self.words - 1, 0, wr_word + 1))
        with m.If(write):
            m.d.sync += wr_ptr.eq(Mux(wr_ptr == depth - 1, 0, wr_ptr + 1))
        return avail, need, write

    def _need(self, pix, y, x):
        """Input pixels the reader needs before it emits pixel ``pix`` at ``(y, x)``: the pixel
        itself, plus (k = 3) the pixel below (not on the last row) and the one to the right
        (not in the last column); a one-row or one-column map has none (no constant compare
        in the RTL). Python ints give the reset value."""
        H, W = self.height, self.width
        if not self.k // 2:
            return pix
        if isinstance(pix, int):
            return pix + (W if H > 1 and y < H - 1 else 0) + (1 if W > 1 and x < W - 1 else 0)
        below = Mux(y < H - 1, W, 0) if H > 1 else Const(0)
        right = Mux(x < W - 1, 1, 0) if W > 1 else Const(0)
        return pix + below + right

    def _next_need(self, m, need, pixel_done, x, y, pix):
        """``need`` of the reader's next pixel, loaded when the current one is done; returns
        the register's next value."""
        W, H = self.width, self.height
        last_x, last_y = x == W - 1, y == H - 1
        x_n = Mux(last_x, 0, x + 1)
        y_n = Mux(last_x, Mux(last_y, 0, y + 1), y)
        pix_n = Mux(last_x & last_y, 0, pix + 1)
        need_next = Signal.like(need)
        m.d.comb += need_next.eq(Mux(pixel_done, self._need(pix_n, y_n, x_n), need))
        m.d.sync += need.eq(need_next)
        return need_next

    def _word_address(self, slot, word):
        """Line-buffer address of word ``word`` of the pixel in slot ``slot``."""
        return slot if self.words == 1 else slot * self.words + word

    def _read_address(self, m, rp, cptr, kx, ky, y, x, word, advance, abits):
        """Read address of kernel position (ky, kx) around the centre pixel, modulo the
        buffer depth; returns ``inside`` (the position lies in the image, else it reads as
        zero: "same" padding)."""
        H, W, depth = self.height, self.width, self.depth
        if self.k == 1:
            koff = Const(0, abits)
            inside = Const(1)
        else:
            koff = Signal(abits)
            inside = Signal()
            with m.Switch(Cat(kx, ky)):
                for dy in range(3):
                    for dx in range(3):
                        with m.Case(dx | (dy << 2)):
                            m.d.comb += koff.eq(((dy - 1) * W + (dx - 1)) % depth)
                with m.Default():
                    m.d.comb += koff.eq(0)
            row_ok = ~(((ky == 0) & (y == 0)) | ((ky == 2) & (y == H - 1)))
            col_ok = ~(((kx == 0) & (x == 0)) | ((kx == 2) & (x == W - 1)))
            m.d.comb += inside.eq(row_ok & col_ok)
        # (cptr + koff) mod depth, both operands < depth
        asum = Signal(abits + 1)
        slot = Signal(abits)
        m.d.comb += [asum.eq(cptr + koff), rp.en.eq(advance),
                     slot.eq(Mux(asum >= depth, asum - depth, asum)[:abits]),
                     rp.addr.eq(self._word_address(slot, word))]
        return inside

    def _counters(self, m, issue, j, kx, ky, nfc, x, y, pix, cptr):
        """The reader's counters, innermost first: chunk j < kx < ky < neuron fold < pixel.
        Returns ``frame_end`` (the frame's last chunk is issued) and ``pixel_done`` (a
        pixel's last chunk is issued)."""
        k, W, H = self.k, self.width, self.height
        last_j = j == self.chunks - 1
        last_kx = kx == k - 1
        last_ky = ky == k - 1
        last_nf = nfc == self.repeat - 1
        last_x = x == W - 1
        last_y = y == H - 1
        frame_end, pixel_done = Signal(), Signal()
        m.d.comb += [pixel_done.eq(issue & last_j & last_kx & last_ky & last_nf),
                     frame_end.eq(pixel_done & last_x & last_y)]
        with m.If(issue):
            m.d.sync += j.eq(Mux(last_j, 0, j + 1))
            with m.If(last_j):
                m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1))
                with m.If(last_kx):
                    m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
                    with m.If(last_ky):
                        m.d.sync += nfc.eq(Mux(last_nf, 0, nfc + 1))
                        with m.If(last_nf):
                            m.d.sync += [x.eq(Mux(last_x, 0, x + 1)), pix.eq(pix + 1),
                                         cptr.eq(Mux(cptr == self.depth - 1, 0, cptr + 1))]
                            with m.If(last_x):
                                m.d.sync += y.eq(Mux(last_y, 0, y + 1))
                            with m.If(last_y & last_x):
                                m.d.sync += pix.eq(0)
        return frame_end, pixel_done

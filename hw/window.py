"""Sliding-window / line-buffer unit: k x k x C' windows in SIMD-wide chunks.

For each output pixel (raster order) the unit emits the window ``nf`` times (once per neuron
fold of the MVTU behind it); each time, for every (ky, kx) in raster order, the ``C'/SIMD``
chunks of ``X' = concat([pixel] * x_dup)`` (input duplication: the same line-buffer word is read
again, no extra activation memory). Positions outside the image are zeros ("same" padding).

A line-buffer word is one SIMD-wide chunk of a pixel where SIMD divides ``C_in`` (one word
read per chunk, no multiplexer), else a whole pixel (:func:`dupnet.hw.folded.buffer_lanes`).

With ``KP = k`` kernel positions per beat the unit emits a whole row of the window per beat:
for every ky, the chunk ``j`` of the ``k`` positions ``(ky, 0..k-1)`` side by side. Those are
``k`` consecutive pixel slots of the line buffer, so the buffer is split into ``k`` banks
(slot ``s`` in bank ``s mod k``, at row ``s div k``), each with its own read port: every
position reads a different bank in the same cycle, and the buffer holds no more bits.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .folded import FoldedConv

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
    o : Out(stream.Signature(unsigned(kp*simd*bits)))
        One chunk of ``KP`` positions per beat, in the order (neuron fold, ky, kx group,
        chunk); lane ``p*simd + l`` is channel ``chunk*simd + l`` of ``X'`` at position
        ``kx = kx_group*KP + p``.
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
        self.kp = layer.kp
        self.depth = layer.window_pixels
        self.chunks = layer.chunks
        self.in_lanes, self.words = layer.in_lanes, layer.words_per_pixel
        super().__init__({"i": In(stream.Signature(unsigned(self.in_lanes * self.bits))),
                          "o": Out(stream.Signature(unsigned(self.kp * self.simd
                                                             * self.bits)))})
        self.collision = Signal()

    def elaborate(self, platform):
        m = Module()
        H, W = self.height, self.width
        hw = H * W
        lb = self.layer.line_buffer
        mems = []
        for name in self.layer.line_buffer_names:
            m.submodules[name] = mem = Memory(shape=unsigned(lb.width), depth=lb.depth, init=[])
            mems.append(mem)
        wps = [mem.write_port() for mem in mems]
        rps = [mem.read_port() for mem in mems]
        # reader position: output pixel index y*W + x (within the frame), row, column
        pix = Signal(range(max(2, hw)))
        y = Signal(range(max(2, H)))
        x = Signal(range(max(2, W)))
        avail, need, write = self._write_side(m, wps, pix, y, x)

        # ---- read side
        # input pixel n (counted over all frames) is stored in slot n mod depth, and the
        # reader's pixels follow the writer's one by one across frames
        j = Signal(range(max(2, self.chunks)))
        kx = Signal(range(max(2, self.k // self.kp)))    # kx group
        ky = Signal(range(max(2, self.k)))
        nfc = Signal(range(max(2, self.repeat)))
        # ``can_issue`` (the pixel the next output needs is in the buffer) is a register,
        # loaded with the compare of the next ``avail`` and ``need``: no compare on the path
        # from the handshake into the counters' enables
        can_issue = Signal()
        advance = Signal()
        issue = Signal()
        o_valid = Signal()
        j_r = Signal.like(j)
        m.d.comb += [
            advance.eq(~o_valid | self.o.ready),
            issue.eq(advance & can_issue),
            self.o.valid.eq(o_valid),
        ]
        word = Signal(range(max(2, self.words)))      # the chunk's word within the pixel
        frame_end, pixel_done = self._counters(m, issue, j, kx, ky, nfc, x, y, pix)
        if self.kp == 1:
            chunks = self._single_read(m, wps[0], rps[0], kx, ky, y, x, word, advance, issue,
                                       pixel_done, j_r)
        else:
            chunks = self._banked_read(m, wps, rps, ky, y, x, word, advance, issue,
                                       pixel_done, j_r)
        with m.If(advance):
            m.d.sync += [o_valid.eq(can_issue), j_r.eq(j)]
        need_next = self._next_need(m, need, pixel_done, x, y, pix)
        if self.words > 1:
            with m.If(issue):
                m.d.sync += word.eq(Mux(word == self.words - 1, 0, word + 1))
        avail_next = Signal.like(avail)
        m.d.comb += avail_next.eq(avail + write - Mux(frame_end, hw, 0))
        m.d.sync += [avail.eq(avail_next), can_issue.eq(avail_next > need_next)]
        m.d.comb += self.o.payload.eq(Cat(*chunks))
        return m

    def _chunk(self, data, j_r):
        """The output chunk of one position from its line-buffer word (held while stalled):
        the word itself, or a whole-pixel word duplicated and chunk-selected."""
        if self.in_lanes == self.simd:
            return data
        dup = Cat(*([data] * self.x_dup))
        return dup if self.chunks == 1 else dup.word_select(j_r, self.simd * self.bits)

    def _single_read(self, m, wp, rp, kx, ky, y, x, word, advance, issue, pixel_done, j_r):
        """One position per beat from one line buffer; returns the output chunk (a list of
        one value)."""
        # the centre pixel's first word (slot * words, kept as a word address: no multiplier)
        total = self.depth * self.words
        cbase = Signal(range(total))
        with m.If(pixel_done):
            m.d.sync += cbase.eq(Mux(cbase == total - self.words, 0, cbase + self.words))
        inside = self._read_address(m, rp, cbase, kx, ky, y, x, word, advance)
        zero_r = Signal()
        with m.If(advance):
            m.d.sync += zero_r.eq(~inside)
        m.d.comb += self.collision.eq(issue & inside & wp.en & (wp.addr == rp.addr))
        return [Mux(zero_r, 0, self._chunk(rp.data, j_r))]

    def _banked_read(self, m, wps, rps, ky, y, x, word, advance, issue, pixel_done, j_r):
        """A row of the window per beat (``KP = k`` positions) from ``k`` banks: slot ``s`` is
        row ``s div k`` of bank ``s mod k``. Returns the ``k`` output chunks, position 0
        first."""
        kp, depth, words = self.kp, self.depth, self.words
        # per kernel row ky: the bank of position (ky, 0) and the row each bank reads (a word
        # address, row * words), registers of the current pixel. The next centre moves every
        # position one slot on: position (ky, 0)'s slot leaves its bank for the slot k
        # further, the next row of the same bank; the other banks keep their rows. So the
        # read address is a multiplexer and one adder, and the registers' update is one
        # increment, not the modular arithmetic of the slots.
        total = depth // kp * words
        bank0s, rows = [], []
        for dy in range(self.k):
            b0_init, rows_init = self._bank_rows_at(dy)
            b0 = Signal(range(kp), name=f"bank0_ky{dy}", init=b0_init)
            rws = [Signal(range(total), name=f"row_ky{dy}_b{b}", init=rows_init[b])
                   for b in range(kp)]
            with m.If(pixel_done):
                m.d.sync += b0.eq(Mux(b0 == kp - 1, 0, b0 + 1))
                for b, r in enumerate(rws):
                    with m.If(b0 == b):
                        m.d.sync += r.eq(Mux(r == total - words, 0, r + words))
            bank0s.append(b0)
            rows.append(rws)
        bank0 = Signal(range(kp))
        with m.Switch(ky):
            for dy in range(self.k):
                with self._case(m, dy, self.k):
                    m.d.comb += bank0.eq(bank0s[dy])
                    for b, rp in enumerate(rps):
                        m.d.comb += rp.addr.eq(self._plus_word(rows[dy][b], word))
        for rp in rps:
            m.d.comb += rp.en.eq(advance)
        row_ok = self._row_ok(ky, y)
        insides = [row_ok & c for c in self._col_ok(x)]
        bank0_r = Signal.like(bank0)
        zero_r = Signal(kp)
        with m.If(advance):
            m.d.sync += [bank0_r.eq(bank0), zero_r.eq(~Cat(*insides))]
        collide = []
        for b in range(kp):
            inside_b = Signal(name=f"inside{b}")
            with m.Switch(bank0):
                for b0 in range(kp):
                    with self._case(m, b0, kp):
                        m.d.comb += inside_b.eq(insides[(b - b0) % kp])
            collide.append(inside_b & wps[b].en & (wps[b].addr == rps[b].addr))
        m.d.comb += self.collision.eq(issue & Cat(*collide).any())
        chunks = []
        for p in range(kp):
            data = Signal.like(rps[0].data, name=f"pos{p}_data")
            with m.Switch(bank0_r):
                for b0 in range(kp):
                    with self._case(m, b0, kp):
                        m.d.comb += data.eq(rps[(b0 + p) % kp].data)
            chunks.append(Mux(zero_r[p], 0, self._chunk(data, j_r)))
        return chunks

    @staticmethod
    def _case(m, value: int, count: int):
        """``m.Case(value)`` of a switch over ``0 .. count-1``, the last one as ``m.Default()``
        (the selector's unused codes, e.g. 3 of a 2-bit ``range(3)``, would leave the case
        statement incomplete: Verilator's -Wall refuses it)."""
        return m.Default() if value == count - 1 else m.Case(value)

    def _bank_rows_at(self, dy: int) -> tuple[int, list[int]]:
        """The reset values of kernel row ``dy``'s registers (the first pixel, centre slot 0):
        the bank of position (dy, 0), slot ``(dy - 1)*W - 1`` modulo the depth, and the row
        (word address) each bank reads: position kx lies in bank ``(bank0 + kx) mod k``, one
        row further where it wrapped past the last bank."""
        kp, depth, words = self.kp, self.depth, self.words
        total = depth // kp * words
        slot = ((dy - 1) * self.width - 1) % depth
        bank0, row0 = slot % kp, slot // kp * words
        return bank0, [(row0 + (words if bank0 > b else 0)) % total for b in range(kp)]

    def _row_ok(self, ky, y):
        """Kernel row ``ky`` around centre row ``y`` lies in the image (k = 3)."""
        return ~(((ky == 0) & (y == 0)) | ((ky == 2) & (y == self.height - 1)))

    def _col_ok(self, x):
        """Per kernel column ``kx``: it lies in the image around centre column ``x``."""
        return [x != 0, Const(1), x != self.width - 1]

    def _write_side(self, m, wps, pix, y, x):
        """Write pointer and flow control: a pixel is accepted while the buffer has a free
        slot (slots before the oldest pixel the reader still needs are free). Returns
        ``avail`` (pixels written since the reader's frame start), ``need`` (pixels the reader
        needs before its next output) and ``write``."""
        H, W, depth = self.height, self.width, self.depth
        hw = H * W
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
        ]
        m.d.comb += write.eq(accept & (wr_word == self.words - 1))
        if self.words > 1:
            with m.If(accept):
                m.d.sync += wr_word.eq(Mux(wr_word == self.words - 1, 0, wr_word + 1))
        self._write_slot(m, wps, accept, write, wr_word)
        return avail, need, write

    def _write_slot(self, m, wps, accept, write, wr_word):
        """The write pointer: slot ``n mod depth`` of input pixel ``n``; with banks as
        (row, bank), the word written to bank ``slot mod k``."""
        depth, words = self.depth, self.words
        if self.kp == 1:
            # the words of consecutive pixels are consecutive: one address counter
            total = depth * words
            wr_addr = Signal(range(total))
            wp = wps[0]
            m.d.comb += [wp.addr.eq(wr_addr), wp.data.eq(self.i.payload), wp.en.eq(accept)]
            with m.If(accept):
                m.d.sync += wr_addr.eq(Mux(wr_addr == total - 1, 0, wr_addr + 1))
            return
        kp, total = self.kp, depth // self.kp * words
        wr_row, wr_bank = Signal(range(total)), Signal(range(kp))      # row * words, bank
        for b, wp in enumerate(wps):
            m.d.comb += [wp.addr.eq(self._plus_word(wr_row, wr_word)),
                         wp.data.eq(self.i.payload), wp.en.eq(accept & (wr_bank == b))]
        with m.If(write):
            with m.If(wr_bank == kp - 1):
                m.d.sync += [wr_bank.eq(0),
                             wr_row.eq(Mux(wr_row == total - words, 0, wr_row + words))]
            with m.Else():
                m.d.sync += wr_bank.eq(wr_bank + 1)

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
        following = self._need(pix_n, y_n, x_n)
        if self.k // 2:
            # a k = 3 pixel takes at least k*k/KP >= 3 issues, so the next pixel's ``need``
            # can be a register loaded from the current position (valid two cycles after the
            # position moves): the compare into ``can_issue`` starts at a register, not at
            # the position counters' increment and the need adders
            assert self.layer.sf * self.repeat >= 2, self.layer
            ahead = Signal.like(need, name="need_ahead")
            m.d.sync += ahead.eq(following)
            following = ahead
        m.d.comb += need_next.eq(Mux(pixel_done, following, need))
        m.d.sync += need.eq(need_next)
        return need_next

    def _plus_word(self, base, word):
        """Line-buffer address of word ``word`` of the pixel whose first word is at ``base``."""
        return base if self.words == 1 else base + word

    def _read_address(self, m, rp, cbase, kx, ky, y, x, word, advance):
        """Read address of kernel position (ky, kx) around the centre pixel (first word at
        ``cbase``), modulo the buffer's ``depth*words`` words; returns ``inside`` (the
        position lies in the image, else it reads as zero: "same" padding)."""
        W, depth, words = self.width, self.depth, self.words
        total = depth * words
        if self.k == 1:
            koff = Const(0, range(total))
            inside = Const(1)
        else:
            koff = Signal(range(total))
            inside = Signal()
            with m.Switch(Cat(kx, ky)):
                for dy in range(3):
                    for dx in range(3):
                        with m.Case(dx | (dy << 2)):
                            m.d.comb += koff.eq(((dy - 1) * W + (dx - 1)) % depth * words)
                with m.Default():
                    m.d.comb += koff.eq(0)
            row_ok = self._row_ok(ky, y)
            col_ok = ~(((kx == 0) & (x == 0)) | ((kx == 2) & (x == W - 1)))
            m.d.comb += inside.eq(row_ok & col_ok)
        # (cbase + koff) mod total, both operands < total
        asum = Signal(range(2 * total))
        slot = Signal(range(total))
        m.d.comb += [asum.eq(cbase + koff), rp.en.eq(advance),
                     slot.eq(Mux(asum >= total, asum - total, asum)),
                     rp.addr.eq(self._plus_word(slot, word))]
        return inside

    def _counters(self, m, issue, j, kx, ky, nfc, x, y, pix):
        """The reader's counters, innermost first: chunk j < kx group < ky < neuron fold <
        pixel. Returns ``frame_end`` (the frame's last chunk is issued) and ``pixel_done`` (a
        pixel's last chunk is issued)."""
        k, W, H = self.k, self.width, self.height
        last_j = j == self.chunks - 1
        last_kx = kx == k // self.kp - 1
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
                m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1)) if k // self.kp > 1 else []
                with m.If(last_kx):
                    m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
                    with m.If(last_ky):
                        m.d.sync += nfc.eq(Mux(last_nf, 0, nfc + 1))
                        with m.If(last_nf):
                            m.d.sync += [x.eq(Mux(last_x, 0, x + 1)), pix.eq(pix + 1)]
                            with m.If(last_x):
                                m.d.sync += y.eq(Mux(last_y, 0, y + 1))
                            with m.If(last_y & last_x):
                                m.d.sync += pix.eq(0)
        return frame_end, pixel_done

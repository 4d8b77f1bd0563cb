"""Matrix-vector-threshold unit: PE output lanes x SIMD input lanes, binary weights.

The weight ROM of each PE stores only the unique channels (``C'/w_dup`` per kernel position):
its word is ``max(1, SIMD/w_dup)`` bits wide and every stored bit is broadcast to the ``w_dup``
input lanes (or all ``SIMD`` lanes when ``SIMD < w_dup``) that share it. The sum over the
instantiated ROMs equals ``ConvGeometry.unique_weight_bits`` exactly.

Arithmetic (``arith``), with weights in {-1, +1} and unsigned ``b``-bit inputs:

* ``"xnor"`` (default): offset form. A term ``w*x`` is computed as ``w ? x : ~x`` (bitwise
  complement in ``b`` bits, i.e. ``x XNOR w`` per bit), which is ``w*x + (2^b - 1)`` when
  ``w = -1`` and ``w*x`` otherwise. Per PE the XNOR'd bits are summed by a LUT6 bit-heap
  compressor (:mod:`dupnet.hw.compressor`) into ``S' = acc + K``, where the offset
  ``K = (2^b - 1) * (number of -1 weights the neuron applies)`` is a constant of the neuron.
  Hidden layers compare ``S'`` with thresholds shifted by ``K`` (unsigned, clamped to
  ``[0, offset_sum_max + 1]``, so the comparison is the same); the last layer starts its
  accumulator at ``-K`` (``acc_bits`` wide: partial sums may wrap, the final value fits and
  two's complement addition is exact modulo ``2^acc_bits``). No all-input sum and no
  ``2S - T`` subtraction are needed.
* ``"gated"``: ``sum(w*x) = 2*S - T`` where ``S`` is the sum of the inputs whose weight bit is 1
  (AND gates and an unsigned carry-chain adder tree per PE) and ``T`` the sum of all inputs (one
  tree shared by every PE).
* ``"addsub"``: the naive signed tree of ``+x``/``-x`` per lane (the LUT benchmark's baseline).

With ``preadd`` the ``w_dup`` inputs sharing a bit are summed once (shared by all PEs) and each
stored bit applies to one pre-summed value (in ``"xnor"``: the complement is over the pre-sum's
width, and ``K`` counts that width).
"""
from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from dupnet.sw.config import ConvGeometry

from .analytic import (ARITHMETICS, DEFAULT_ARITH, offset_sum_max, offset_threshold_bits,
                       preadd_term_bits, weight_rom_shape)
from .compressor import compress_heap, heap_of_terms
from .reference import pack_lanes

__all__ = ["MVTU", "adder_tree", "weight_rom_images"]


def adder_tree(values):
    """Balanced sum of Amaranth values (widths grow by one bit per level)."""
    vals = list(values)
    if not vals:
        return Const(0, 1)
    while len(vals) > 1:
        nxt = [vals[i] + vals[i + 1] for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def weight_rom_images(g: ConvGeometry, weights: np.ndarray, pe: int, simd: int) -> list[list[int]]:
    """ROM words per PE: PE ``p`` holds neurons ``nf*PE + p`` in order, each neuron's unique bits
    ``V[o].reshape(-1)`` (ky, kx, cu order), packed ``width`` bits per word, LSB first."""
    width, depth = weight_rom_shape(g, pe, simd)
    nf = g.out_channels // pe
    bits = (np.asarray(weights).reshape(g.out_channels, -1) > 0).astype(np.int64)
    images = []
    weights_of_bit = np.array([1 << i for i in range(width)], dtype=object)
    for p in range(pe):
        seq = bits[[n * pe + p for n in range(nf)]].reshape(-1)
        words = seq.reshape(depth, width).astype(object)
        images.append([int(v) for v in (words * weights_of_bit).sum(axis=1)])
    return images


class MVTU(wiring.Component):
    """Matrix-vector-threshold unit of one conv layer.

    Parameters
    ----------
    geometry : ConvGeometry
        The layer (k, C', w_dup, b_in, act_bits, acc_bits, ...).
    weights : numpy.ndarray
        int8 {-1, +1} ``[C_out, k, k, C'/w_dup]`` (unique channels only).
    thresholds : numpy.ndarray or None
        int64 ``[C_out, 2^b - 1]`` for hidden layers; None for the last layer.
    pe, simd : int
        Output lanes (divides C_out) and input lanes (divides C'; with w_dup > 1 one of
        SIMD, w_dup divides the other).
    preadd : bool
        Pre-add the inputs sharing a weight bit (only matters when w_dup > 1).
    arith : str
        Datapath arithmetic, one of :data:`dupnet.hw.analytic.ARITHMETICS` (see the module
        docstring): ``"xnor"`` (default, offset form and a LUT6 compressor), ``"gated"``
        (``2*S - T`` with carry-chain adder trees) or ``"addsub"`` (the naive signed tree the
        LUT benchmark compares with).
    frame_beats : int or None
        For the last layer: output beats per frame; the beat that ends a frame has ``last``
        set. None: the payload has no ``last`` bit (hidden layers).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(simd*in_bits)))
        Window chunks in the order (neuron fold, ky, kx, chunk) per output pixel; lane ``l`` at
        bits ``[l*in_bits +: in_bits]``.
    o : Out(stream.Signature(...))
        Hidden: ``PE*act_bits`` bits, lane ``j`` = code of channel ``nf*PE + j`` at
        ``[j*act_bits +: act_bits]``. Last layer: ``PE*acc_bits + 1`` bits, signed accumulator
        lanes, ``last`` at the MSB.
    weight_roms : list of Memory
        The per-PE weight ROMs (instantiated in :meth:`elaborate`).
    """

    def __init__(self, geometry: ConvGeometry, weights: np.ndarray, thresholds, pe: int,
                 simd: int, preadd: bool = True, frame_beats: int | None = None,
                 arith: str = DEFAULT_ARITH):
        if arith not in ARITHMETICS:
            raise ValueError(f"arith must be one of {', '.join(map(repr, ARITHMETICS))}, "
                             f"got {arith!r}")
        self.arith = arith
        g = geometry
        where = f"layer {g.index} ({g.name})"
        if pe < 1 or g.out_channels % pe:
            raise ValueError(f"{where}: PE ({pe}) must divide C_out = {g.out_channels}")
        if simd < 1 or g.c_dup % simd:
            raise ValueError(f"{where}: SIMD ({simd}) must divide C' = {g.c_dup}")
        if g.w_dup > 1 and simd % g.w_dup and g.w_dup % simd:
            raise ValueError(f"{where}: SIMD ({simd}) and w_dup ({g.w_dup}) incompatible: one "
                             f"must divide the other")
        w = np.asarray(weights)
        if w.shape != (g.out_channels, g.k, g.k, g.c_unique):
            raise ValueError(f"{where}: weights shape {w.shape}, expected "
                             f"{(g.out_channels, g.k, g.k, g.c_unique)}")
        if (thresholds is None) != (g.act_bits is None):
            raise ValueError(f"{where}: thresholds must be given exactly for hidden layers")
        self.g, self.pe, self.simd = g, pe, simd
        self.preadd = bool(preadd) and g.w_dup > 1
        self.frame_beats = frame_beats
        self.kk = g.k * g.k
        self.sf = self.kk * g.c_dup // simd
        self.nf = g.out_channels // pe
        self.rom_width, self.rom_depth = weight_rom_shape(g, pe, simd)
        self.rep = g.w_dup // simd if simd < g.w_dup else 1
        self.rom_images = weight_rom_images(g, w, pe, simd)
        self.weight_roms = [Memory(shape=unsigned(self.rom_width), depth=self.rom_depth,
                                   init=img) for img in self.rom_images]
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.int64)
        #: -1 weights per neuron among its stored (unique) bits
        self.neg_unique = (w.reshape(g.out_channels, -1) <= 0).sum(axis=1).astype(np.int64)
        if g.act_bits is None:
            out_w = pe * g.acc_bits + (1 if frame_beats is not None else 0)
        else:
            out_w = pe * g.act_bits
        super().__init__({"i": In(stream.Signature(unsigned(simd * g.in_bits))),
                          "o": Out(stream.Signature(unsigned(out_w)))})

    @property
    def rom_bits(self) -> int:
        """Bits of the instantiated weight ROMs."""
        return sum(mem.depth * mem.shape.width for mem in self.weight_roms)

    def elaborate(self, platform):
        m = Module()
        g, PE, SIMD = self.g, self.pe, self.simd
        b = g.in_bits
        acc_bits = g.acc_bits
        sbits = max(1, g.acc_max.bit_length())            # S, T in [0, acc_max]
        # The pipeline stalls only when a finished output (v2) meets an occupied, blocked
        # output register: while a pixel's sf chunks are still being accumulated, backpressure
        # on ``o`` costs nothing (it is absorbed by the accumulation).
        stall = Signal()
        o_valid = Signal()
        v2 = Signal()
        m.d.comb += [stall.eq(o_valid & ~self.o.ready & v2), self.o.valid.eq(o_valid),
                     self.i.ready.eq(~stall)]
        accept = Signal()
        m.d.comb += accept.eq(self.i.valid & ~stall)

        # ---- stage 0: fold counters, weight ROM addresses
        waddr = Signal(range(max(2, self.rom_depth)))
        rep = Signal(range(max(2, self.rep)))
        sfc = Signal(range(max(2, self.sf)))
        nfc = Signal(range(max(2, self.nf)))
        rports = []
        for p, mem in enumerate(self.weight_roms):
            m.submodules[f"w_rom{p}"] = mem
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(waddr), rp.en.eq(~stall)]
            rports.append(rp)
        with m.If(accept):
            if self.rep > 1:
                m.d.sync += rep.eq(Mux(rep == self.rep - 1, 0, rep + 1))
                step = rep == self.rep - 1
            else:
                step = Const(1)
            with m.If(step):
                m.d.sync += waddr.eq(Mux(waddr == self.rom_depth - 1, 0, waddr + 1))
            m.d.sync += sfc.eq(Mux(sfc == self.sf - 1, 0, sfc + 1))
            with m.If(sfc == self.sf - 1):
                m.d.sync += nfc.eq(Mux(nfc == self.nf - 1, 0, nfc + 1))

        x1 = Signal(SIMD * b)
        v1, first1, last1 = Signal(), Signal(), Signal()
        nf1 = Signal.like(nfc)
        with m.If(~stall):
            m.d.sync += [v1.eq(self.i.valid), x1.eq(self.i.payload), first1.eq(sfc == 0),
                         last1.eq(sfc == self.sf - 1), nf1.eq(nfc)]

        # ---- stage 1: per-PE chunk sums, accumulate
        xs = [x1[l * b:(l + 1) * b] for l in range(SIMD)]
        gsize = min(SIMD, g.w_dup) if self.preadd else 1
        if self.preadd:
            groups = [adder_tree(xs[u * gsize:(u + 1) * gsize]) for u in range(SIMD // gsize)]
            pre = []
            for u, s in enumerate(groups):
                sig = Signal(s.shape(), name=f"pre{u}")
                m.d.comb += sig.eq(s)
                pre.append(sig)
            lanes = pre
        else:
            lanes = xs
        term_bits = len(lanes[0])

        def lane_bit(p, u):
            """Weight bit of term ``u`` of PE ``p`` (broadcast to the lanes sharing it)."""
            wbits = rports[p].data
            if self.preadd:
                return wbits[u]
            return wbits[u // g.w_dup if SIMD >= g.w_dup else 0]

        xnor = self.arith == "xnor"
        if xnor:
            # K per neuron: every stored -1 bit is applied w_dup/gsize times to a term of
            # term_bits bits, each adding 2^term_bits - 1 to S'
            offsets = (self.neg_unique * (g.w_dup // gsize) * ((1 << term_bits) - 1)).tolist()
            # S' in [0, s_max]: above acc_max with pre-add (the complement is over the
            # pre-sum's full width), so S' and its thresholds get their own width
            s_max = offset_sum_max(g, SIMD, self.preadd)
            assert term_bits == (preadd_term_bits(g, SIMD) if self.preadd else b)
            assert all(0 <= k <= s_max for k in offsets)
            sbits = s_max.bit_length()
        S = [Signal(sbits, name=f"s{p}") for p in range(PE)]
        init = [Const(0, 1)] * PE
        if xnor and g.act_bits is None:
            # last layer: the accumulator starts at -K of the neuron in the pipeline
            S = [Signal(signed(acc_bits), name=f"acc_r{p}") for p in range(PE)]
            if self.nf == 1:
                init = [Const(-offsets[p], signed(acc_bits)) for p in range(PE)]
            else:
                kw = PE * acc_bits
                words = [pack_lanes([-k for k in offsets[n * PE:(n + 1) * PE]], acc_bits)
                         for n in range(self.nf)]
                m.submodules.k_rom = k_rom = Memory(shape=unsigned(kw), depth=self.nf,
                                                    init=words)
                krp = k_rom.read_port()
                m.d.comb += [krp.addr.eq(nfc), krp.en.eq(~stall)]
                init = [krp.data[p * acc_bits:(p + 1) * acc_bits].as_signed()
                        for p in range(PE)]
        if not xnor:
            T = Signal(sbits)
            t_sum = adder_tree(lanes)
            t_chunk = Signal(t_sum.shape(), name="t_chunk")
            m.d.comb += t_chunk.eq(t_sum)
        for p in range(PE):
            if xnor:
                terms = [(lanes[u], lane_bit(p, u)) for u in range(len(lanes))]
                psum = Signal(sbits, name=f"psum{p}")
                m.d.comb += psum.eq(compress_heap(m, heap_of_terms(terms), f"pe{p}"))
            elif self.arith == "addsub":
                terms = [Mux(lane_bit(p, u), lanes[u], -lanes[u]) for u in range(len(lanes))]
                psum = Signal(signed(acc_bits), name=f"psum{p}")
                m.d.comb += psum.eq(adder_tree(terms))
                S[p] = Signal(signed(acc_bits), name=f"acc_r{p}")
            else:
                gated = [Mux(lane_bit(p, u), lanes[u], 0) for u in range(len(lanes))]
                psum = Signal(sbits, name=f"psum{p}")
                m.d.comb += psum.eq(adder_tree(gated))
            with m.If(~stall & v1):
                m.d.sync += S[p].eq(Mux(first1, init[p], S[p]) + psum)
        with m.If(~stall):
            m.d.sync += v2.eq(v1 & last1)
            if not xnor:
                with m.If(v1):
                    m.d.sync += T.eq(Mux(first1, 0, T) + t_chunk)

        # ---- stage 2: accumulators, thresholds, output register
        accs = []
        for p in range(PE):
            if self.arith == "gated":
                two_s = Signal(signed(sbits + 2), name=f"two_s{p}")
                a = Signal(signed(acc_bits), name=f"acc{p}")
                m.d.comb += [two_s.eq(S[p] * 2), a.eq(two_s - T)]
                accs.append(a)
            else:
                accs.append(S[p])        # addsub: acc; xnor: acc (last layer) or S' = acc + K
        payload = Signal.like(self.o.payload)
        if g.act_bits is None:
            if self.frame_beats is not None:
                beat = Signal(range(max(2, self.frame_beats)))
                is_last = Signal()
                m.d.comb += is_last.eq(beat == self.frame_beats - 1)
                with m.If(~stall & v2):
                    m.d.sync += beat.eq(Mux(is_last, 0, beat + 1))
                m.d.comb += payload.eq(Cat(*accs, is_last))
            else:
                m.d.comb += payload.eq(Cat(*accs))
        else:
            nt = g.n_thresholds
            thr = self.thresholds
            if xnor:
                # thresholds on S' = acc + K, clamped to [0, s_max + 1]: unsigned compares
                tb = offset_threshold_bits(g, SIMD, self.preadd)
                thr = np.clip(thr + np.asarray(offsets, dtype=np.int64)[:, None], 0, s_max + 1)
                tshape = unsigned(tb)
            else:
                tb = g.threshold_bits
                tshape = signed(tb)
            codes = []
            if self.nf == 1:
                tvals = [[Const(int(thr[p, t]), tshape) for t in range(nt)] for p in range(PE)]
            else:
                word = PE * nt * tb
                # word n: lane (p, t) at [(p*nt + t)*tb +: tb]
                words = [pack_lanes(thr[n * PE:(n + 1) * PE].reshape(-1), tb)
                         for n in range(self.nf)]
                m.submodules.t_rom = t_rom = Memory(shape=unsigned(word), depth=self.nf,
                                                    init=words)
                trp = t_rom.read_port()
                m.d.comb += [trp.addr.eq(nf1), trp.en.eq(~stall)]
                tvals = [[trp.data[(p * nt + t) * tb:(p * nt + t + 1) * tb] for t in range(nt)]
                         for p in range(PE)]
                if not xnor:
                    tvals = [[v.as_signed() for v in row] for row in tvals]
            for p in range(PE):
                code = Signal(g.act_bits, name=f"code{p}")
                m.d.comb += code.eq(adder_tree([accs[p] >= tvals[p][t] for t in range(nt)]))
                codes.append(code)
            m.d.comb += payload.eq(Cat(*codes))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(~stall & v2):
            m.d.sync += [o_valid.eq(1), self.o.payload.eq(payload)]
        return m

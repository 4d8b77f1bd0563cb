"""Matrix-vector-threshold unit: PE output lanes x SIMD input lanes, binary weights.

The weight ROM of each PE stores only the unique channels (``C'/w_dup`` per kernel position):
its word is ``max(1, SIMD/w_dup)`` bits wide and every stored bit is broadcast to the ``w_dup``
input lanes (or all ``SIMD`` lanes when ``SIMD < w_dup``) that share it. The sum over the
instantiated ROMs equals ``ConvGeometry.unique_weight_bits`` exactly.

The MVTU owns the fold counters, the ROM ports, the pipeline registers and the output register;
the arithmetic of the sum (``"xnor"``, ``"gated"``, ``"addsub"``) is one class each in
:mod:`dupnet.hw.mvtu_arith`. The shapes come from :class:`dupnet.hw.folded.FoldedConv`.

Pipeline: stage 0 counts folds and addresses the weight ROMs; stage 1 registers the input
chunk, forms the terms (pre-summed with pre-add) and accumulates each PE's chunk sum; stage 2
compares with the thresholds (hidden layers) into the output register.
"""
from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .folded import WEIGHT_ROM, FoldedConv
from .mvtu_arith import adder_tree, arithmetic_for
from .spram import SpramMemory
from .stream_layout import pack_lanes

__all__ = ["MVTU", "weight_rom_images", "memory_images"]


def weight_rom_images(layer: FoldedConv, weights: np.ndarray) -> list[list[int]]:
    """ROM words per PE: PE ``p`` holds neurons ``nf*PE + p`` in order, each neuron's unique bits
    ``V[o].reshape(-1)`` (ky, kx, cu order), packed ``width`` bits per word, LSB first."""
    g, pe = layer.geometry, layer.pe
    depth, width = layer.weight_rom
    bits = (np.asarray(weights).reshape(g.out_channels, -1) > 0).astype(np.int64)
    images = []
    weights_of_bit = np.array([1 << i for i in range(width)], dtype=object)
    for p in range(pe):
        seq = bits[[n * pe + p for n in range(layer.nf)]].reshape(-1)
        words = seq.reshape(depth, width).astype(object)
        images.append([int(v) for v in (words * weights_of_bit).sum(axis=1)])
    return images


def _neg_unique(layer: FoldedConv, weights: np.ndarray) -> np.ndarray:
    """-1 weights per neuron among its stored (unique) bits."""
    g = layer.geometry
    w = np.asarray(weights)
    if w.shape != (g.out_channels, g.k, g.k, g.c_unique):
        raise ValueError(f"{layer.where}: weights shape {w.shape}, expected "
                         f"{(g.out_channels, g.k, g.k, g.c_unique)}")
    return (w.reshape(g.out_channels, -1) <= 0).sum(axis=1).astype(np.int64)


def memory_images(layer: FoldedConv, weights: np.ndarray, thresholds) -> dict[str, list[int]]:
    """The contents of the layer's weight and threshold memories, by memory name, in the
    order of ``layer.memories``: ``w_rom<p>`` (:func:`weight_rom_images`), then the threshold
    ROM (word ``n``: neuron fold ``n``'s thresholds as the arithmetic stores them, lane
    ``(p, t)`` at ``[(p*nt + t)*tb +: tb]``) or the ``"xnor"`` last layer's offset ROM (``-K``
    of lane ``p`` at ``[p*acc_bits +: acc_bits]``), where the layer has one."""
    g, pe = layer.geometry, layer.pe
    arith = arithmetic_for(layer, _neg_unique(layer, weights))
    images = {f"{WEIGHT_ROM}{p}": img for p, img in enumerate(weight_rom_images(layer, weights))}
    if layer.threshold_rom is None:
        return images
    if g.act_bits is not None:
        thr, tshape = arith.stored_thresholds(np.asarray(thresholds, dtype=np.int64))
        words = [pack_lanes(thr[n * pe:(n + 1) * pe].reshape(-1), tshape.width)
                 for n in range(layer.nf)]
    else:
        words = arith.offset_words()
    images[layer.threshold_rom_name] = words
    return images


class MVTU(wiring.Component):
    """Matrix-vector-threshold unit of one conv layer.

    Parameters
    ----------
    layer : FoldedConv
        The layer at its folding (PE, SIMD, pre-add, arithmetic).
    weights : numpy.ndarray
        int8 {-1, +1} ``[C_out, k, k, C'/w_dup]`` (unique channels only).
    thresholds : numpy.ndarray or None
        int64 ``[C_out, 2^b - 1]`` for hidden layers; None for the last layer.
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
        The per-PE weight ROMs.
    load_ports : list of (str, WritePort)
        With ``layer.weights == "load"``: each weight and threshold memory's name and write
        port, in the order of ``layer.memories`` (driven by the accelerator's
        :class:`~dupnet.hw.loader.WeightLoader`); empty with ROMs.
    """

    def __init__(self, layer: FoldedConv, weights: np.ndarray, thresholds,
                 frame_beats: int | None = None):
        g, where = layer.geometry, layer.where
        neg_unique = _neg_unique(layer, weights)
        if (thresholds is None) != (g.act_bits is None):
            raise ValueError(f"{where}: thresholds must be given exactly for hidden layers")
        self.layer, self.g, self.pe, self.simd = layer, g, layer.pe, layer.simd
        self.frame_beats = frame_beats
        self.arith = arithmetic_for(layer, neg_unique)
        images = memory_images(layer, weights, thresholds)
        self.rom_images = [images[f"{WEIGHT_ROM}{p}"] for p in range(self.pe)]
        self.load_ports = []
        mems = {lm.name: self._memory(lm, images[lm.name])
                for lm in layer.memories if lm.name in images}
        self.weight_roms = [mems[f"{WEIGHT_ROM}{p}"] for p in range(self.pe)]
        #: the threshold or offset memory, or None (one neuron fold, ROM weights: constants)
        self.threshold_mem = mems.get(layer.threshold_rom_name)
        self.arith.offset_rom = self.threshold_mem if g.act_bits is None else None
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.int64)
        if g.act_bits is None:
            out_w = layer.pe * g.acc_bits + (1 if frame_beats is not None else 0)
        else:
            out_w = layer.pe * g.act_bits
        super().__init__({"i": In(stream.Signature(unsigned(layer.simd * g.in_bits))),
                          "o": Out(stream.Signature(unsigned(out_w)))})

    def _memory(self, lm, image: list[int]) -> Memory:
        """A weight / threshold memory: initialised with ``image`` (ROM weights), or empty
        with a write port for the loader (``weights = "load"``), in SPRAM blocks where the
        layer puts its weights there."""
        if self.layer.weights == "rom":
            return Memory(shape=unsigned(lm.width), depth=lm.depth, init=image)
        if lm.spram:
            mem = SpramMemory(lm.depth, lm.width)
        else:
            mem = Memory(shape=unsigned(lm.width), depth=lm.depth, init=[])
        self.load_ports.append((lm.name, mem.write_port()))
        return mem

    @property
    def rom_bits(self) -> int:
        """Bits of the instantiated weight ROMs."""
        return sum(mem.depth * mem.shape.width for mem in self.weight_roms)

    def elaborate(self, platform):
        m = Module()
        # The pipeline stalls only when a finished output (v2) meets an occupied, blocked
        # output register: while a pixel's sf chunks are still being accumulated, backpressure
        # on ``o`` costs nothing (it is absorbed by the accumulation).
        stall = Signal()
        o_valid = Signal()
        v2 = Signal()
        m.d.comb += [stall.eq(o_valid & ~self.o.ready & v2), self.o.valid.eq(o_valid),
                     self.i.ready.eq(~stall)]
        nfc, rports, x1, v1, first1, last1, nf1 = self._stage0(m, stall)
        accs = self._stage1(m, stall, nfc, rports, x1, v1, first1, last1, v2)
        payload = Signal.like(self.o.payload)
        if self.g.act_bits is None:
            m.d.comb += payload.eq(self._last_layer_payload(m, stall, v2, accs))
        else:
            m.d.comb += payload.eq(Cat(*self._codes(m, stall, nf1, accs)))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(~stall & v2):
            m.d.sync += [o_valid.eq(1), self.o.payload.eq(payload)]
        return m

    def _stage0(self, m, stall):
        """Fold counters, weight ROM addresses, the registered input chunk."""
        layer = self.layer
        sf, nf, rom_depth, rom_repeat = layer.sf, layer.nf, layer.weight_rom.depth, \
            layer.weight_rom_repeat
        accept = Signal()
        m.d.comb += accept.eq(self.i.valid & ~stall)
        waddr = Signal(range(max(2, rom_depth)))
        rep = Signal(range(max(2, rom_repeat)))
        sfc = Signal(range(max(2, sf)))
        nfc = Signal(range(max(2, nf)))
        rports = []
        for p, mem in enumerate(self.weight_roms):
            m.submodules[f"{WEIGHT_ROM}{p}"] = mem
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(waddr), rp.en.eq(~stall)]
            rports.append(rp)
        with m.If(accept):
            if rom_repeat > 1:
                m.d.sync += rep.eq(Mux(rep == rom_repeat - 1, 0, rep + 1))
                step = rep == rom_repeat - 1
            else:
                step = Const(1)
            with m.If(step):
                m.d.sync += waddr.eq(Mux(waddr == rom_depth - 1, 0, waddr + 1))
            m.d.sync += sfc.eq(Mux(sfc == sf - 1, 0, sfc + 1))
            with m.If(sfc == sf - 1):
                m.d.sync += nfc.eq(Mux(nfc == nf - 1, 0, nfc + 1))

        x1 = Signal(self.simd * self.g.in_bits)
        v1, first1, last1 = Signal(), Signal(), Signal()
        nf1 = Signal.like(nfc)
        with m.If(~stall):
            m.d.sync += [v1.eq(self.i.valid), x1.eq(self.i.payload), first1.eq(sfc == 0),
                         last1.eq(sfc == sf - 1), nf1.eq(nfc)]
        return nfc, rports, x1, v1, first1, last1, nf1

    def _terms(self, m, x1):
        """The chunk's terms: its lanes, or with pre-add the sums of the lanes sharing a
        weight bit (shared by every PE)."""
        b, layer = self.g.in_bits, self.layer
        xs = [x1[l * b:(l + 1) * b] for l in range(self.simd)]
        if not layer.preadd:
            return xs
        gsize = layer.term_group
        pre = []
        for u in range(layer.terms):
            s = adder_tree(xs[u * gsize:(u + 1) * gsize])
            sig = Signal(s.shape(), name=f"pre{u}")
            m.d.comb += sig.eq(s)
            pre.append(sig)
        assert len(pre[0]) == layer.term_bits
        return pre

    def _weight_bit(self, rports, p):
        """``u -> `` the weight bit of term ``u`` of PE ``p`` (broadcast to the lanes sharing
        it)."""
        wbits, w_dup = rports[p].data, self.g.w_dup
        if self.layer.preadd:
            return lambda u: wbits[u]
        return lambda u: wbits[u // w_dup if self.simd >= w_dup else 0]

    def _stage1(self, m, stall, nfc, rports, x1, v1, first1, last1, v2):
        """Per-PE chunk sums and accumulators; returns the values stage 2 uses."""
        arith = self.arith
        lanes = self._terms(m, x1)
        acc_regs, starts = arith.accumulators(m, nfc, stall)
        arith.shared(m, lanes)
        for p in range(self.pe):
            psum = arith.partial_sum(m, p, lanes, self._weight_bit(rports, p))
            with m.If(~stall & v1):
                m.d.sync += acc_regs[p].eq(Mux(first1, starts[p], acc_regs[p]) + psum)
        with m.If(~stall):
            m.d.sync += v2.eq(v1 & last1)
            arith.update_shared(m, v1, first1)
        return [arith.result(m, p, acc_regs[p]) for p in range(self.pe)]

    def _last_layer_payload(self, m, stall, v2, accs):
        """The accumulators, and ``last`` on the frame's final beat when framed."""
        if self.frame_beats is None:
            return Cat(*accs)
        beat = Signal(range(max(2, self.frame_beats)))
        is_last = Signal()
        m.d.comb += is_last.eq(beat == self.frame_beats - 1)
        with m.If(~stall & v2):
            m.d.sync += beat.eq(Mux(is_last, 0, beat + 1))
        return Cat(*accs, is_last)

    def _codes(self, m, stall, nf1, accs):
        """Per PE the output code: how many of its thresholds the accumulator meets."""
        g, pe, nf = self.g, self.pe, self.layer.nf
        nt = g.n_thresholds
        thr, tshape = self.arith.stored_thresholds(self.thresholds)
        tb = tshape.width
        if self.threshold_mem is None:
            tvals = [[Const(int(thr[p, t]), tshape) for t in range(nt)] for p in range(pe)]
        else:
            # word n: lane (p, t) at [(p*nt + t)*tb +: tb] (memory_images)
            m.submodules[self.layer.threshold_rom_name] = self.threshold_mem
            trp = self.threshold_mem.read_port()
            m.d.comb += [trp.addr.eq(nf1 if nf > 1 else 0), trp.en.eq(~stall)]
            tvals = [[trp.data[(p * nt + t) * tb:(p * nt + t + 1) * tb] for t in range(nt)]
                     for p in range(pe)]
            if tshape.signed:
                tvals = [[v.as_signed() for v in row] for row in tvals]
        codes = []
        for p in range(pe):
            code = Signal(g.act_bits, name=f"code{p}")
            m.d.comb += code.eq(adder_tree([self._meets(accs[p], tvals[p][t], tshape)
                                            for t in range(nt)]))
            codes.append(code)
        return codes

    @staticmethod
    def _meets(acc, threshold, tshape):
        """``acc >= threshold``; a constant unsigned threshold of 0 is always met (a constant
        1, not a compare that lint flags as constant)."""
        if isinstance(threshold, Const) and not tshape.signed and threshold.value == 0:
            return Const(1, 1)
        return acc >= threshold

"""Matrix-vector-threshold unit: PE output lanes x SIMD input lanes, binary weights.

The weight ROM of each PE stores only the unique channels (``C'/w_dup`` per kernel position):
its word is ``max(1, SIMD/w_dup)`` bits wide and every stored bit is broadcast to the ``w_dup``
input lanes (or all ``SIMD`` lanes when ``SIMD < w_dup``) that share it. The sum over the
instantiated ROMs equals ``ConvGeometry.unique_weight_bits`` exactly.

The MVTU owns the fold counters, the ROM ports, the pipeline registers and the output register;
the arithmetic of the sum (``"xnor"``, ``"gated"``, ``"addsub"``) is one class each in
:mod:`dupnet.hw.mvtu_arith`. The shapes come from :class:`dupnet.hw.folded.FoldedConv`.

Pipeline: stage 0 counts folds and addresses the weight ROMs, and registers the input chunk;
stage 1 registers the weight words read from the ROMs and the chunk's terms (pre-summed with
pre-add): a block RAM's clock-to-out delay ends at a register; stage 2 sums each PE's terms
(the compressor) into a chunk-sum register; stage 3 accumulates the chunk sums; stage 4
compares with the thresholds (hidden layers) into the output register.
"""
from __future__ import annotations

from types import SimpleNamespace

from typing import NamedTuple

import numpy as np

from amaranth import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .folded import WEIGHT_ROM, FoldedConv
from .mvtu_arith import adder_tree, arithmetic_for
from .spram import SpramMemory
from .stream_layout import pack_lanes

__all__ = ["MVTU", "weight_rom_images", "weight_memory_image", "memory_images"]


class ChunkPosition(NamedTuple):
    """Where a chunk in the pipeline stands, registered with it from stage to stage: valid,
    the first / last input fold of its neuron fold, and that neuron fold."""
    valid: Value
    first: Value
    last: Value
    nf: Value


def weight_rom_images(layer: FoldedConv, weights: np.ndarray) -> list[list[int]]:
    """Each PE's slice of the weight memory, word by word: PE ``p`` holds neurons
    ``nf*PE + p`` in order, each neuron's unique bits ``V[o]`` in the order the window emits
    them, packed ``width`` bits per word, LSB first: (ky, kx, cu) with one position per beat;
    with ``KP = k`` positions per beat (ky, chunk, kx, the chunk's bits), so that a word holds
    the chunk's bits of the ``k`` positions."""
    g, pe, kp = layer.geometry, layer.pe, layer.kp
    depth, width = layer.weight_rom
    u = layer.chunk_weight_bits
    bits = (np.asarray(weights) > 0).astype(np.int64)
    bits = bits.reshape(g.out_channels, g.k, g.k // kp, kp, g.c_unique // u, u)
    bits = bits.transpose(0, 1, 2, 4, 3, 5).reshape(g.out_channels, -1)
    images = []
    weights_of_bit = np.array([1 << i for i in range(width)], dtype=object)
    for p in range(pe):
        seq = bits[[n * pe + p for n in range(layer.nf)]].reshape(-1)
        words = seq.reshape(depth, width).astype(object)
        images.append([int(v) for v in (words * weights_of_bit).sum(axis=1)])
    return images


def weight_memory_image(layer: FoldedConv, weights: np.ndarray) -> list[int]:
    """The weight memory's words: the PE slices (:func:`weight_rom_images`) side by side, PE
    ``p`` at bits ``[p*width +: width]`` (every PE reads the same address)."""
    width = layer.weight_rom.width
    slices = weight_rom_images(layer, weights)
    return [sum(img[a] << (p * width) for p, img in enumerate(slices))
            for a in range(layer.weight_rom.depth)]


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
    order of ``layer.memories``: ``w_rom`` (:func:`weight_memory_image`), then the threshold
    ROM (word ``n``: neuron fold ``n``'s thresholds as the arithmetic stores them, lane
    ``(p, t)`` at ``[(p*nt + t)*tb +: tb]``) or the ``"xnor"`` last layer's offset ROM (``-K``
    of lane ``p`` at ``[p*acc_bits +: acc_bits]``), where the layer has one."""
    g, pe = layer.geometry, layer.pe
    arith = arithmetic_for(layer, _neg_unique(layer, weights))
    images = {WEIGHT_ROM: weight_memory_image(layer, weights)}
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
    i : In(stream.Signature(unsigned(kp*simd*in_bits)))
        Window chunks in the order (neuron fold, ky, kx group, chunk) per output pixel, ``KP``
        positions side by side; lane ``l`` at bits ``[l*in_bits +: in_bits]``.
    o : Out(stream.Signature(...))
        Hidden: ``PE*act_bits`` bits, lane ``j`` = code of channel ``nf*PE + j`` at
        ``[j*act_bits +: act_bits]``. Last layer: ``PE*acc_bits + 1`` bits, signed accumulator
        lanes, ``last`` at the MSB.
    w, t : In(stream.Signature(...))
        Present when ``layer.banked``: the weight memory's words in address order (a word
        taken with each input fold's chunk, or every ``weight_rom_repeat`` chunks) and the
        threshold memory's words (one per neuron fold, taken as its last chunk is summed), from
        a :class:`~dupnet.hw.stream_bank.StreamBank`. The MVTU waits while a word it needs is
        not there (no wrong word is ever used).
    weight_rom : Memory or None
        The weight memory: one word per input fold and neuron fold, the PEs' slices side by
        side (``layer.weight_rom`` is a slice's shape); None when banked.
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
        self.load_ports = []
        mems = {} if layer.banked else {lm.name: self._memory(lm, images[lm.name])
                                        for lm in layer.memories if lm.name in images}
        #: the weight memory (None when the words come from a stream bank: port ``w``)
        self.weight_rom = mems.get(WEIGHT_ROM)
        #: the threshold or offset memory, or None (one neuron fold, ROM weights: constants;
        #: or the words come from a stream bank: port ``t``)
        self.threshold_mem = mems.get(layer.threshold_rom_name)
        self.arith.offset_rom = self.threshold_mem if g.act_bits is None else None
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.int64)
        if g.act_bits is None:
            out_w = layer.pe * g.acc_bits + (1 if frame_beats is not None else 0)
        else:
            out_w = layer.pe * g.act_bits
        members = {"i": In(stream.Signature(unsigned(layer.mvtu_lanes * g.in_bits))),
                   "o": Out(stream.Signature(unsigned(out_w)))}
        if layer.banked:
            members["w"] = In(stream.Signature(unsigned(layer.weight_memory.width)))
            members["t"] = In(stream.Signature(unsigned(layer.threshold_rom.width)))
        super().__init__(members)

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
        """Bits of the instantiated weight ROMs (none when the words are streamed)."""
        if self.weight_rom is None:
            return 0
        return self.weight_rom.depth * self.weight_rom.shape.width

    def elaborate(self, platform):
        m = Module()
        # The pipeline stalls only when a finished output (v2) meets a full skid register:
        # while a pixel's sf chunks are still being accumulated, backpressure on ``o`` costs
        # nothing (it is absorbed by the accumulation). ``stall``, and so ``i.ready``, is a
        # function of registers only: ``o.ready`` reaches the output and skid registers'
        # enables, not the upstream's handshake (a chain of ready signals through several
        # units limited fmax).
        stall = Signal()
        o_valid = Signal()
        v2 = Signal()
        skid_valid = Signal()
        o_free = Signal()
        t_wait = Signal()       # a banked threshold word is needed and not there yet
        m.d.comb += [stall.eq((skid_valid & v2) | t_wait), self.o.valid.eq(o_valid),
                     o_free.eq(~o_valid | self.o.ready)]
        nfc, rport, x1, v1, first1, last1, nf1 = self._stage0(m, stall)
        words, terms, pos_w = self._weight_stage(m, stall, rport, x1,
                                                 ChunkPosition(v1, first1, last1, nf1))
        psums, pos_c, pos_s = self._sum_stage(m, stall, words, terms, pos_w)
        accs = self._accumulate(m, stall, pos_c.nf, psums, pos_s, v2)
        payload = Signal.like(self.o.payload)
        if self.g.act_bits is None:
            m.d.comb += payload.eq(self._last_layer_payload(m, stall, v2, accs))
        else:
            m.d.comb += payload.eq(Cat(*self._codes(m, stall, pos_c.nf, pos_s, accs, t_wait)))
        self._output(m, stall, v2, payload, o_valid, o_free, skid_valid)
        return m

    def _output(self, m, stall, v2, payload, o_valid, o_free, skid_valid):
        """The output register and its skid register: a finished output goes to the output
        register when it is free (or being read), else to the skid register, which moves to
        the output register as soon as that is free."""
        skid = Signal.like(payload, name="skid")
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(skid_valid & o_free):
            m.d.sync += [o_valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
        with m.If(~stall & v2):       # the skid register is empty (else ``stall``)
            with m.If(o_free):
                m.d.sync += [o_valid.eq(1), self.o.payload.eq(payload)]
            with m.Else():
                m.d.sync += [skid_valid.eq(1), skid.eq(payload)]

    def _stage0(self, m, stall):
        """Fold counters, weight ROM addresses, the registered input chunk."""
        layer = self.layer
        sf, nf, rom_depth, rom_repeat = layer.sf, layer.nf, layer.weight_rom.depth, \
            layer.weight_rom_repeat
        accept, offered = Signal(), Signal()
        waddr = Signal(range(max(2, rom_depth)))
        rep = Signal(range(max(2, rom_repeat)))
        sfc = Signal(range(max(2, sf)))
        nfc = Signal(range(max(2, nf)))
        rp, step = self._weight_source(m, stall, waddr, rep, accept, offered)
        m.d.comb += accept.eq(offered & ~stall)
        with m.If(accept):
            if rom_repeat > 1:
                m.d.sync += rep.eq(Mux(step, 0, rep + 1))
            with m.If(step):
                m.d.sync += waddr.eq(Mux(waddr == rom_depth - 1, 0, waddr + 1))
            m.d.sync += sfc.eq(Mux(sfc == sf - 1, 0, sfc + 1))
            with m.If(sfc == sf - 1):
                m.d.sync += nfc.eq(Mux(nfc == nf - 1, 0, nfc + 1))

        x1 = Signal(self.layer.mvtu_lanes * self.g.in_bits)
        v1, first1, last1 = Signal(), Signal(), Signal()
        nf1 = Signal.like(nfc)
        with m.If(~stall):
            m.d.sync += [v1.eq(offered), x1.eq(self.i.payload), first1.eq(sfc == 0),
                         last1.eq(sfc == sf - 1), nf1.eq(nfc)]
        return nfc, rp, x1, v1, first1, last1, nf1

    def _weight_source(self, m, stall, waddr, rep, accept, offered):
        """The weight words: the memory's read port (address ``waddr``, data a cycle later),
        or, banked, the ``w`` stream's word registered with the chunk (taken when the last
        chunk that uses it is accepted; a chunk is offered only with its word there). Returns
        the port (``.data`` a cycle after the address) and ``step`` (the chunk accepted moves
        to the next word). Drives ``offered`` (a chunk can be taken) and ``i.ready``."""
        rom_repeat = self.layer.weight_rom_repeat
        step = (rep == rom_repeat - 1) if rom_repeat > 1 else Const(1)
        if not self.layer.banked:
            m.submodules[WEIGHT_ROM] = self.weight_rom
            rp = self.weight_rom.read_port()
            m.d.comb += [rp.addr.eq(waddr), rp.en.eq(~stall), offered.eq(self.i.valid),
                         self.i.ready.eq(~stall)]
            return rp, step
        word = Signal.like(self.w.payload, name="w_word")
        with m.If(~stall):
            m.d.sync += word.eq(self.w.payload)
        m.d.comb += [offered.eq(self.i.valid & self.w.valid),
                     self.i.ready.eq(~stall & self.w.valid),
                     self.w.ready.eq(accept & step)]
        return SimpleNamespace(data=word), step

    def _terms(self, m, x1):
        """The chunk's terms: its lanes, or with pre-add the sums of the lanes sharing a
        weight bit (shared by every PE)."""
        b, layer = self.g.in_bits, self.layer
        xs = [x1[l * b:(l + 1) * b] for l in range(layer.mvtu_lanes)]
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

    @staticmethod
    def _delay(m, stall, values, stage):
        """``values`` registered while the pipeline advances (their names suffixed
        ``stage``)."""
        regs = []
        for n, v in enumerate(values):
            r = Signal.like(v, name=f"{v.name}_{stage}") if isinstance(v, Signal) \
                else Signal(len(v), name=f"lane{n}_{stage}")
            with m.If(~stall):
                m.d.sync += r.eq(v)
            regs.append(r)
        return regs

    def _weight_stage(self, m, stall, rport, x1, pos1):
        """Each PE's weight word (its slice of the word read from the weight memory) and the
        chunk's terms, registered with the chunk's position (valid, first / last input fold,
        neuron fold)."""
        width = self.layer.weight_rom.width
        slices = []
        for p in range(self.pe):
            w = Signal(width, name=f"wword{p}")
            m.d.comb += w.eq(rport.data[p * width:(p + 1) * width])
            slices.append(w)
        words = self._delay(m, stall, slices, "w")
        terms = self._delay(m, stall, self._terms(m, x1), "w")
        return words, terms, ChunkPosition(*self._delay(m, stall, pos1, "w"))

    def _weight_bit(self, wbits, p):
        """``u -> `` the weight bit of term ``u`` of PE ``p`` (broadcast to the lanes sharing
        it): position ``u div SIMD``'s bits start at ``(u div SIMD) * chunk_weight_bits``."""
        w_dup = self.g.w_dup
        if self.layer.preadd:
            return lambda u: wbits[u]
        simd, u_bits = self.simd, self.layer.chunk_weight_bits
        if simd >= w_dup:
            return lambda u: wbits[(u // simd) * u_bits + (u % simd) // w_dup]
        return lambda u: wbits[u // simd]

    def _sum_stage(self, m, stall, words, terms, pos_w):
        """Per-PE chunk sums of the registered terms and weight words, through one pipeline
        register on the way (half-way through the compressor, or on the sum) and the chunk-sum
        register, with the chunk's position delayed alike. Returns the sums, the position a
        stage before them (``pos_c``) and with them (``pos_s``)."""
        arith = self.arith
        arith.shared(m, terms, stall)

        def register(p):
            def delayed(values):
                regs = []
                for n, v in enumerate(values):
                    r = Signal(v.shape(), name=f"pe{p}_mid{n}")
                    with m.If(~stall):
                        m.d.sync += r.eq(v)
                    regs.append(r)
                return regs
            return delayed

        psums = [arith.partial_sum(m, p, terms, self._weight_bit(words[p], p), register(p))
                 for p in range(self.pe)]
        pos_c = ChunkPosition(*self._delay(m, stall, pos_w, "c"))
        return (self._delay(m, stall, psums, "r"), pos_c,
                ChunkPosition(*self._delay(m, stall, pos_c, "s")))

    def _accumulate(self, m, stall, nf_w, psums, pos_s, v2):
        """Per-PE accumulators of the registered chunk sums; returns the values stage 4 uses.
        ``nf_w`` (the neuron fold a stage earlier) addresses the last layer's offset memory, so
        that its start value is read by the time the fold's first chunk sum arrives."""
        arith = self.arith
        acc_regs, starts = arith.accumulators(m, nf_w, stall)
        for p in range(self.pe):
            with m.If(~stall & pos_s.valid):
                m.d.sync += acc_regs[p].eq(Mux(pos_s.first, starts[p], acc_regs[p]) + psums[p])
        with m.If(~stall):
            m.d.sync += v2.eq(pos_s.valid & pos_s.last)
            arith.update_shared(m, pos_s.valid, pos_s.first)
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

    def _codes(self, m, stall, nf_c, pos_s, accs, t_wait):
        """Per PE the output code: how many of its thresholds the accumulator meets. A
        threshold memory is read with ``nf_c`` (the neuron fold a stage before the
        accumulators) and its word registered while the pipeline advances, so the word in the
        register is the accumulators' fold and the compares start at flip-flops, not at the
        memory's output (the critical path of the ECP5 designs ran through it)."""
        g, pe, nf = self.g, self.pe, self.layer.nf
        nt = g.n_thresholds
        thr, tshape = self.arith.stored_thresholds(self.thresholds)
        if self.layer.banked:
            # the ``t`` stream's word, taken as the fold's last chunk sum is accumulated (the
            # pipeline waits there while it is not there yet)
            word = Signal.like(self.t.payload, name="t_word")
            need = pos_s.valid & pos_s.last
            m.d.comb += [t_wait.eq(need & ~self.t.valid),
                         self.t.ready.eq(need & ~stall)]
            with m.If(need & ~stall):
                m.d.sync += word.eq(self.t.payload)
            tvals = self._lanes_of(word, tshape)
        elif self.threshold_mem is None:
            tvals = [[Const(int(thr[p, t]), tshape) for t in range(nt)] for p in range(pe)]
        else:
            # word n: lane (p, t) at [(p*nt + t)*tb +: tb] (memory_images)
            m.submodules[self.layer.threshold_rom_name] = self.threshold_mem
            trp = self.threshold_mem.read_port()
            m.d.comb += [trp.addr.eq(nf_c if nf > 1 else 0), trp.en.eq(~stall)]
            word = Signal.like(trp.data, name="t_word")
            with m.If(~stall):
                m.d.sync += word.eq(trp.data)
            tvals = self._lanes_of(word, tshape)
        codes = []
        for p in range(pe):
            code = Signal(g.act_bits, name=f"code{p}")
            m.d.comb += code.eq(adder_tree([self._meets(accs[p], tvals[p][t], tshape)
                                            for t in range(nt)]))
            codes.append(code)
        return codes

    def _lanes_of(self, word, tshape):
        """The thresholds of a threshold-memory word: lane ``(p, t)`` at ``[(p*nt + t)*tb +:
        tb]`` (:func:`memory_images`), per PE."""
        nt, tb = self.g.n_thresholds, tshape.width
        tvals = [[word[(p * nt + t) * tb:(p * nt + t + 1) * tb] for t in range(nt)]
                 for p in range(self.pe)]
        if tshape.signed:
            tvals = [[v.as_signed() for v in row] for row in tvals]
        return tvals

    @staticmethod
    def _meets(acc, threshold, tshape):
        """``acc >= threshold``; a constant unsigned threshold of 0 is always met (a constant
        1, not a compare that lint flags as constant)."""
        if isinstance(threshold, Const) and not tshape.signed and threshold.value == 0:
            return Const(1, 1)
        return acc >= threshold

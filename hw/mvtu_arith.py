"""The MVTU's datapath arithmetics: one class each, one interface.

With weights in {-1, +1} and unsigned ``b``-bit inputs, an MVTU neuron computes
``acc = sum(w*x)`` over its window, chunk by chunk. Each arithmetic says, per PE:

* :meth:`MvtuArithmetic.accumulators`: the accumulator registers and the value each starts a
  pixel at (``0``, or ``-K`` for the ``"xnor"`` last layer, read from the offset ROM when the
  layer has several neuron folds);
* :meth:`MvtuArithmetic.shared`: logic of a chunk shared by every PE (the input sum ``T`` of
  ``"gated"``), registered with the chunk sums, and :meth:`MvtuArithmetic.update_shared`, its
  accumulation;
* :meth:`MvtuArithmetic.partial_sum`: the chunk's sum for one PE from its terms and weight bits;
* :meth:`MvtuArithmetic.result`: the value the thresholds compare with (or the last layer's
  accumulator) from an accumulator register;
* :meth:`MvtuArithmetic.stored_thresholds`: the thresholds as this arithmetic stores and
  compares them.

The three arithmetics:

* ``"xnor"`` (default): offset form. A term ``w*x`` is computed as ``w ? x : ~x`` (bitwise
  complement in the term's width, i.e. ``x XNOR w`` per bit), which is ``w*x + (2^t - 1)`` when
  ``w = -1``. Per PE the XNOR'd bits are summed by a LUT6 bit-heap compressor
  (:mod:`dupnet.hw.compressor`) into ``S' = acc + K``, where the offset
  ``K = (2^t - 1) * (number of -1 weights the neuron applies)`` is a constant of the neuron.
  Hidden layers compare ``S'`` with thresholds shifted by ``K`` (unsigned, clamped to
  ``[0, offset_sum_max + 1]``, so the comparison is the same); the last layer starts its
  accumulator at ``-K`` (``acc_bits`` wide: partial sums may wrap, the final value fits and
  two's complement addition is exact modulo ``2^acc_bits``).
* ``"gated"``: ``sum(w*x) = 2*S - T`` where ``S`` is the sum of the inputs whose weight bit is 1
  (AND gates and an unsigned carry-chain adder tree per PE) and ``T`` the sum of all inputs (one
  tree shared by every PE).
* ``"addsub"``: the naive signed tree of ``+x``/``-x`` per lane (the LUT benchmark's baseline).

With pre-add the ``w_dup`` inputs sharing a bit are summed once (shared by all PEs) and each
stored bit applies to one pre-summed value (in ``"xnor"``: the complement is over the pre-sum's
width, and ``K`` counts that width).
"""
from __future__ import annotations

import numpy as np
from amaranth import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Shape

from .compressor import compress_heap, heap_of_terms
from .folded import OFFSET_ROM, FoldedConv
from .stream_layout import pack_lanes

__all__ = ["MvtuArithmetic", "XnorArithmetic", "GatedArithmetic", "AddSubArithmetic",
           "arithmetic_for", "adder_tree"]


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


class MvtuArithmetic:
    """One datapath arithmetic of an MVTU (the interface; see the module docstring).

    Parameters
    ----------
    layer : FoldedConv
        The folded layer.
    neg_unique : numpy.ndarray
        int64 ``[C_out]``: -1 weights per neuron among its stored (unique) bits.
    """
    name = ""

    def __init__(self, layer: FoldedConv, neg_unique: np.ndarray):
        self.layer, self.g = layer, layer.geometry
        self.neg_unique = neg_unique
        #: the last layer's offset memory (``"xnor"``), set by the MVTU; None: constants
        self.offset_rom = None

    @property
    def sum_bits(self) -> int:
        """Width of an unsigned chunk sum / accumulator: holds ``[0, acc_max]``."""
        return max(1, self.g.acc_max.bit_length())

    def accumulators(self, m: Module, nfc: Value, stall: Value) -> tuple[list, list]:
        """Per PE: the accumulator register and its start value for a pixel (``nfc``: the
        neuron fold of the chunk a cycle before it is accumulated, the address of a start
        value read from memory)."""
        return ([Signal(self.sum_bits, name=f"s{p}") for p in range(self.layer.pe)],
                [Const(0, 1)] * self.layer.pe)

    def shared(self, m: Module, lanes: list[Value], stall: Value) -> None:
        """Logic of one chunk shared by every PE, registered twice while the pipeline advances
        (``stall`` low), in step with the chunk sums (none by default)."""

    def partial_sum(self, m: Module, p: int, lanes: list[Value], weight_bit,
                    register) -> Signal:
        """The sum of one chunk for PE ``p``; ``weight_bit(u)`` is the weight of term ``u``;
        ``register`` (``values -> registered values``) is the pipeline register every
        arithmetic puts once on the way (inside the compressor, or on the sum)."""
        raise NotImplementedError

    def update_shared(self, m: Module, v1: Value, first1: Value) -> None:
        """Register updates of the shared logic while the pipeline advances (none)."""

    def result(self, m: Module, p: int, acc: Signal) -> Value:
        """The value compared with the thresholds (hidden) or emitted (last layer)."""
        return acc

    def stored_thresholds(self, thresholds: np.ndarray) -> tuple[np.ndarray, Shape]:
        """Thresholds as stored and compared, with their shape: signed, as given."""
        return thresholds, signed(self.g.threshold_bits)


class XnorArithmetic(MvtuArithmetic):
    """Offset form summed by a LUT6 bit-heap compressor (no ``T``, no ``2S - T``)."""
    name = "xnor"

    def __init__(self, layer: FoldedConv, neg_unique: np.ndarray):
        super().__init__(layer, neg_unique)
        # K per neuron: every stored -1 bit is applied w_dup/term_group times to a term of
        # term_bits bits, each adding 2^term_bits - 1 to S'
        self.offsets = (neg_unique * (self.g.w_dup // layer.term_group)
                        * ((1 << layer.term_bits) - 1)).tolist()
        # S' in [0, s_max]: above acc_max with pre-add (the complement is over the pre-sum's
        # full width), so S' and its thresholds get their own width
        self.s_max = layer.offset_sum_max
        assert all(0 <= k <= self.s_max for k in self.offsets)

    @property
    def sum_bits(self) -> int:
        return self.s_max.bit_length()

    def offset_words(self) -> list[int]:
        """The last layer's offset ROM: word ``n`` holds ``-K`` of neuron fold ``n``'s lanes,
        lane ``p`` at ``[p*acc_bits +: acc_bits]``."""
        pe, acc_bits = self.layer.pe, self.g.acc_bits
        return [pack_lanes([-k for k in self.offsets[n * pe:(n + 1) * pe]], acc_bits)
                for n in range(self.layer.nf)]

    def accumulators(self, m: Module, nfc: Value, stall: Value) -> tuple[list, list]:
        if self.g.act_bits is not None:
            return super().accumulators(m, nfc, stall)
        # last layer: the accumulator starts at -K of the neuron in the pipeline, a constant
        # or read from the offset memory the MVTU made (``offset_rom``)
        pe, acc_bits, nf = self.layer.pe, self.g.acc_bits, self.layer.nf
        regs = [Signal(signed(acc_bits), name=f"acc_r{p}") for p in range(pe)]
        if self.offset_rom is None:
            return regs, [Const(-self.offsets[p], signed(acc_bits)) for p in range(pe)]
        m.submodules[OFFSET_ROM] = self.offset_rom
        krp = self.offset_rom.read_port()
        m.d.comb += [krp.addr.eq(nfc if nf > 1 else 0), krp.en.eq(~stall)]
        return regs, [krp.data[p * acc_bits:(p + 1) * acc_bits].as_signed() for p in range(pe)]

    def partial_sum(self, m: Module, p: int, lanes: list[Value], weight_bit,
                    register) -> Signal:
        terms = [(lanes[u], weight_bit(u)) for u in range(len(lanes))]
        psum = Signal(self.sum_bits, name=f"psum{p}")
        m.d.comb += psum.eq(compress_heap(m, heap_of_terms(terms), f"pe{p}", register))
        return psum

    def stored_thresholds(self, thresholds: np.ndarray) -> tuple[np.ndarray, Shape]:
        """Thresholds on ``S' = acc + K``, clamped to ``[0, s_max + 1]``: unsigned compares."""
        thr = np.clip(thresholds + np.asarray(self.offsets, dtype=np.int64)[:, None], 0,
                      self.s_max + 1)
        return thr, unsigned(self.layer.offset_threshold_bits)


class _InputSumArithmetic(MvtuArithmetic):
    """Shared input sum ``T`` of a chunk, accumulated per pixel (used by ``"gated"``; kept by
    ``"addsub"``, whose generated design has always carried it)."""

    def shared(self, m: Module, lanes: list[Value], stall: Value) -> None:
        self.T = Signal(self.sum_bits, name="T")
        t_sum = adder_tree(lanes)
        t_mid = Signal(t_sum.shape(), name="t_mid")
        self.t_chunk = Signal(t_sum.shape(), name="t_chunk")
        with m.If(~stall):
            m.d.sync += [t_mid.eq(t_sum), self.t_chunk.eq(t_mid)]

    def update_shared(self, m: Module, v1: Value, first1: Value) -> None:
        with m.If(v1):
            m.d.sync += self.T.eq(Mux(first1, 0, self.T) + self.t_chunk)


class GatedArithmetic(_InputSumArithmetic):
    """``acc = 2*S - T``: AND-gated inputs summed by a carry-chain adder tree per PE."""
    name = "gated"

    def partial_sum(self, m: Module, p: int, lanes: list[Value], weight_bit,
                    register) -> Signal:
        gated = [Mux(weight_bit(u), lanes[u], 0) for u in range(len(lanes))]
        psum = Signal(self.sum_bits, name=f"psum{p}")
        m.d.comb += psum.eq(register([adder_tree(gated)])[0])
        return psum

    def result(self, m: Module, p: int, acc: Signal) -> Value:
        two_s = Signal(signed(self.sum_bits + 2), name=f"two_s{p}")
        a = Signal(signed(self.g.acc_bits), name=f"acc{p}")
        m.d.comb += [two_s.eq(acc * 2), a.eq(two_s - self.T)]
        return a


class AddSubArithmetic(_InputSumArithmetic):
    """The naive signed tree of ``+x`` / ``-x`` per lane (the LUT benchmark's baseline)."""
    name = "addsub"

    def accumulators(self, m: Module, nfc: Value, stall: Value) -> tuple[list, list]:
        return ([Signal(signed(self.g.acc_bits), name=f"acc_r{p}")
                 for p in range(self.layer.pe)], [Const(0, 1)] * self.layer.pe)

    def partial_sum(self, m: Module, p: int, lanes: list[Value], weight_bit,
                    register) -> Signal:
        terms = [Mux(weight_bit(u), lanes[u], -lanes[u]) for u in range(len(lanes))]
        psum = Signal(signed(self.g.acc_bits), name=f"psum{p}")
        m.d.comb += psum.eq(register([adder_tree(terms)])[0])
        return psum


_ARITHMETICS = {cls.name: cls for cls in (XnorArithmetic, GatedArithmetic, AddSubArithmetic)}


def arithmetic_for(layer: FoldedConv, neg_unique: np.ndarray) -> MvtuArithmetic:
    """The arithmetic object of ``layer.arith``."""
    return _ARITHMETICS[layer.arith](layer, neg_unique)

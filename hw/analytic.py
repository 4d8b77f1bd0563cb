"""Analytic model of the accelerator: the one place for cycles, memory bits and LUT/FF estimates.

The generator (:mod:`dupnet.hw.top`), the CLI summary, the budget reports and the testbenches
import these numbers from here and never re-derive them.

Per conv layer with folding (PE, SIMD)::

    sf = k*k*C'/SIMD            input folds per output pixel and neuron fold
    nf = C_out/PE               neuron folds per output pixel
    cycles_per_frame = H*W*sf*nf

The LUT/FF estimates model the micro-architecture of :mod:`dupnet.hw.mvtu` (per arithmetic: the
default ``"xnor"`` LUT6 bit-heap compressor per PE counted by
:func:`dupnet.hw.compressor.compressor_luts`, or the ``"gated"`` carry-chain adder trees with a
shared input-sum tree and ``acc = 2*S - T``), the window unit and the adapters, for LUT6
devices. They are estimates: ``scripts/bench_hw.py`` and the budget reports
put Yosys figures beside them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from dupnet.sw.config import ConvGeometry

from .compressor import compressor_luts, pipeline_bits, term_heap
from .folded import DEFAULT_ARITH, FoldedConv, FoldedPool

__all__ = ["LayerModel", "layer_model", "conv_model", "pool_model", "adder_tree_luts",
           "finn_mvau_lut_estimate", "REFERENCE_CLOCK_HZ", "PIPELINE_DEPTH", "WINDOW_LATENCY",
           "GATHER_LATENCY", "POOL_LATENCY", "UNPACK_LATENCY", "adapter_estimate"]

REFERENCE_CLOCK_HZ = 100_000_000
# Register stages on the first-output latency path (the terms of the pipeline model's latency
# walk, :meth:`dupnet.hw.kinds.HwLayerKind.latency`): each register between a stream transfer
# into a unit and the transfer out of it adds one cycle.
#: register stages from an accepted MVTU input chunk to its output register (the registered
#: chunk ``x1``, the weight words and terms, the register half-way through the compressor,
#: the chunk sums, the accumulator, the output register)
PIPELINE_DEPTH = 6
#: cycles from writing a pixel into the window unit's line buffer to the transfer of the first
#: chunk that needs it: the pixel count ``avail`` is a register (the window sees the pixel a
#: cycle after writing it), then the read data / ``o.valid`` register
WINDOW_LATENCY = 2
#: the :class:`~dupnet.hw.adapters.Gather` output register (a wire when it gathers one beat)
GATHER_LATENCY = 1
#: the max-pool's output register (the input that completes a 2x2 block loads it)
POOL_LATENCY = 1
#: the :class:`~dupnet.hw.adapters.Unpack` pixel register (``pixels_per_beat > 1``; a wire at 1)
UNPACK_LATENCY = 1


def adapter_estimate(bits: int, lanes_in: int, lanes_out: int) -> tuple[int, int]:
    """LUT6 and FF estimate of the width adapter between two streams of ``bits``-bit codes
    (:class:`~dupnet.hw.adapters.WidthAdapter`): a gather keeps ``n-1`` beats and an output
    register, an unpack one wide word it shifts down."""
    if lanes_in == lanes_out:
        return 0, 0
    wide = math.lcm(lanes_in, lanes_out)
    luts = ffs = 0
    if wide > lanes_in:          # gather to the common width
        ffs += (2 * wide - lanes_in) * bits + 8
        luts += 8
    if wide > lanes_out:         # unpack from it
        ffs += wide * bits + 8
        luts += (wide - lanes_out) * bits + 8
    return luts, ffs


def adder_tree_luts(n: int, width: int) -> int:
    """LUT6 (one per result bit, carry chain) of a balanced tree adding ``n`` unsigned values."""
    widths = [width] * n
    luts = 0
    while len(widths) > 1:
        nxt = []
        for i in range(0, len(widths) - 1, 2):
            w = max(widths[i], widths[i + 1]) + 1
            luts += w
            nxt.append(w)
        if len(widths) % 2:
            nxt.append(widths[-1])
        widths = nxt
    return luts


def finn_mvau_lut_estimate(pe: int, simd: int, mw: int, w_bits: int, a_bits: int,
                           out_bits: int | None, acc_bits: int, tmem: int,
                           lut_mult: bool = True) -> int:
    """FINN's analytic MVAU LUT model (``MVAU.lut_estimation`` in FINN's
    ``matrixvectoractivation.py``, after Blott et al., FINN-R 2018), weights in BRAM
    (``c2 = 0``), thresholds in distributed RAM, LUT multipliers; the accumulator width is
    FINN's ``min(acc_bits, ceil(alpha + log2(1 + 2^-alpha) + 1))`` with unsigned inputs."""
    W, A, P, Q = w_bits, a_bits, pe, simd
    c0, c1 = 300, 1.1
    mult_luts = Q * (2 * math.ceil((W + A) / 6) - 1) * (W + A) if lut_mult else 0
    addertree_luts = (W + A) * (2 * Q - 1)
    alpha = math.log2(mw) + W + A - 1
    acc = min(acc_bits, math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1))
    thr_luts = comp_luts = 0
    if out_bits is not None:
        thr_luts = (2 ** out_bits - 1) * acc * math.ceil(tmem / 64)
        comp_luts = (2 ** out_bits - 1) * acc
    return int(c0 + c1 * (P * (mult_luts + addertree_luts + acc + thr_luts + comp_luts)))


@dataclass
class LayerModel:
    """Analytic figures of one layer (conv or maxpool) at one folding."""
    name: str
    kind: str                      # "conv" | "maxpool"
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    cycles_per_frame: int
    rom_bits: int = 0              # weight ROM bits (= unique weight bits)
    threshold_rom_bits: int = 0
    buffer_bits: int = 0           # line / row buffer memory bits
    lut_estimate: int = 0
    ff_estimate: int = 0
    mux_lut_estimate: int = 0      # of lut_estimate: the window unit's chunk multiplexer
    pe: int | None = None
    simd: int | None = None
    kp: int | None = None          # conv: kernel positions per beat (None: 1)
    sf: int | None = None
    nf: int | None = None
    lanes: int | None = None       # conv: PE*KP*SIMD MVTU lanes; pool: channels per beat
    in_lanes: int | None = None    # channels per beat of the input stream
    out_lanes: int | None = None   # channels per beat of the output stream
    k: int | None = None
    w_dup: int | None = None
    x_dup: int | None = None
    in_bits: int | None = None
    out_bits: int | None = None
    acc_bits: int | None = None
    is_last: bool = False
    preadd: bool | None = None
    arith: str | None = None
    stride: int | None = None
    weights: str | None = None     # conv: "rom" or "load" (dupnet.hw.folded.WEIGHT_SOURCES)
    spram: bool | None = None      # conv: its weight memories are SPRAM blocks
    bank: bool | None = None       # conv: its weight and threshold words come from the bank

    @property
    def in_pixels(self) -> int:
        return self.in_shape[0] * self.in_shape[1]

    @property
    def out_pixels(self) -> int:
        return self.out_shape[0] * self.out_shape[1]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shape"], d["out_shape"] = list(self.in_shape), list(self.out_shape)
        return {k: v for k, v in d.items() if v is not None}


def layer_model(g: ConvGeometry, pe: int, simd: int, preadd: bool = True,
                arith: str = DEFAULT_ARITH, kp: int = 1) -> LayerModel:
    """Analytic model of one conv layer (window unit + MVTU) at folding (PE, SIMD, KP)."""
    return conv_model(FoldedConv(g, pe, simd, preadd=preadd, arith=arith, kp=kp))


def _mvtu_luts(f: FoldedConv) -> int:
    """LUT6 of the MVTU datapath: pre-add trees, per-PE sums, accumulators, thresholds."""
    g, simd, b, acc = f.geometry, f.mvtu_lanes, f.geometry.in_bits, f.geometry.acc_bits
    if f.preadd:
        shared = adder_tree_luts(f.term_group, b) * max(1, simd // g.w_dup)
    else:
        shared = 0
    terms, term_bits = f.terms, f.term_bits
    if f.arith == "xnor":
        # compressor, accumulator; thresholds on S' (or the last layer's -K start)
        per_pe = compressor_luts(terms, term_bits) + acc
    else:
        if f.preadd:
            per_pe_tree = adder_tree_luts(terms, term_bits) + terms * term_bits * (terms == 1)
        else:
            per_pe_tree = adder_tree_luts(simd, b) + (simd * b if simd == 1 else 0)
        shared += adder_tree_luts(simd, b) + acc          # T tree + T accumulator
        per_pe = per_pe_tree + acc + acc                   # S accumulator, 2S - T
    if g.act_bits is not None:
        per_pe += g.n_thresholds * f.stored_threshold_bits + g.act_bits * g.n_thresholds // 2
    return shared + f.pe * per_pe


def _window_mux_luts(f: FoldedConv) -> int:
    """LUT6 of the window unit's chunk multiplexer: none when a line-buffer word is one
    SIMD-wide chunk; whole-pixel words select one of the ``chunks`` of the duplicated pixel.
    With ``KP`` banks, each position also selects its bank (a ``KP``:1 multiplexer)."""
    chunks, bits = f.chunks, f.geometry.in_bits
    banks = f.kp * f.in_lanes * bits if f.kp > 1 else 0
    if f.in_lanes == f.simd or chunks == 1:
        return banks
    return banks + f.mvtu_lanes * bits * -(-chunks // 4)


def _mid_register_bits(f: FoldedConv) -> int:
    """Flip-flops of one PE's pipeline register inside the compressor (``"xnor"``), or on its
    chunk sum (the adder-tree arithmetics)."""
    if f.arith != "xnor":
        return f.geometry.acc_bits
    return pipeline_bits(term_heap(f.terms, f.term_bits))


#: a banked layer's share of the stream bank, per stream (its FIFO of four 16-bit words, its
#: read pointer, slot compare and word unpacking); estimated, not yet calibrated
BANK_STREAM_LUTS = 60
BANK_STREAM_FFS = 100


def _threshold_register_bits(f: FoldedConv) -> int:
    """Flip-flops of the register behind a hidden layer's threshold memory (none where the
    thresholds are constants)."""
    t = f.threshold_rom
    return t.width if t is not None and f.geometry.act_bits is not None else 0


def _conv_ffs(f: FoldedConv) -> int:
    g, acc = f.geometry, f.geometry.acc_bits
    ff = (f.mvtu_lanes * g.in_bits     # MVTU input register
          + f.pe * (acc + 1)     # S accumulators
          + f.pe * acc           # registered chunk sums
          + f.pe * _mid_register_bits(f)     # the register half-way through the compressor
          + f.pe * f.weight_rom.width + f.terms * f.term_bits    # weight words and terms
          + (3 * acc if f.arith != "xnor" else 0)    # T accumulator and the chunk's T (x2)
          + 2 * f.pe * g.out_bits    # output and skid registers
          + _threshold_register_bits(f)
          + (BANK_STREAM_FFS * 2 if f.banked else 0)     # its two streams in the bank
          + f.kp * f.in_lanes * g.in_bits    # window: the words read from the line buffer
          + 120)                 # counters and valid bits
    return ff


def conv_model(f: FoldedConv) -> LayerModel:
    """Analytic model of one folded conv layer (window unit + MVTU + gather)."""
    g = f.geometry
    mux = _window_mux_luts(f)
    window_ctrl = 80 + 2 * max(1, f.line_buffer.depth.bit_length()) * f.kp
    luts = _mvtu_luts(f) + mux + window_ctrl + 40 + (BANK_STREAM_LUTS * 2 if f.banked else 0)
    # threshold ROM (hidden layers) or, xnor last layer, the per-neuron offset ROM (-K)
    thr_rom = f.threshold_rom
    return LayerModel(
        name=g.name, kind="conv", in_shape=(g.height, g.width, g.in_channels),
        out_shape=g.out_shape, cycles_per_frame=f.cycles_per_frame,
        rom_bits=g.unique_weight_bits, threshold_rom_bits=thr_rom.bits if thr_rom else 0,
        buffer_bits=f.line_buffer.bits * f.kp, lut_estimate=int(luts), ff_estimate=int(_conv_ffs(f)),
        mux_lut_estimate=int(mux), pe=f.pe, simd=f.simd, kp=f.kp if f.kp > 1 else None,
        sf=f.sf, nf=f.nf, lanes=f.lanes,
        in_lanes=f.in_lanes, out_lanes=f.out_lanes,
        k=g.k, w_dup=g.w_dup, x_dup=g.x_dup, in_bits=g.in_bits, out_bits=g.out_bits,
        acc_bits=g.acc_bits, is_last=g.is_last, preadd=f.preadd, arith=f.arith,
        weights=f.weights, spram=f.spram or None, bank=f.banked or None)


def pool_model(f: FoldedPool) -> LayerModel:
    """Analytic model of a chunk-serial max-pool unit (``lanes`` channels per cycle)."""
    g = f.geometry
    chunk_bits = f.lanes * g.bits
    # per chunk bit: the channel-wise max (one for stride 2, two for stride 1: the horizontal
    # max and the row max), the write / output / output-skid multiplexers (stride 1: and the
    # input skid buffer's); the rest is the position counters and the address arithmetic
    luts = 60 + chunk_bits * (3 if g.stride == 2 else 6)
    # output and output-skid registers (stride 1: + the input skid)
    ff = 60 + chunk_bits * (2 if g.stride == 2 else 4)
    return LayerModel(
        name=g.name, kind="maxpool", in_shape=(g.height, g.width, g.channels),
        out_shape=g.out_shape, cycles_per_frame=f.cycles_per_frame,
        buffer_bits=sum(m.bits for m in f.memories),
        lut_estimate=int(luts), ff_estimate=int(ff), in_bits=g.bits, out_bits=g.bits,
        stride=g.stride, lanes=f.lanes, in_lanes=f.in_lanes, out_lanes=f.out_lanes)

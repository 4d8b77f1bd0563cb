"""MVTU against numpy: w_dup 1..8, SIMD/PE extremes, thresholds, worst-case accumulators."""
import random

import numpy as np
import pytest

from dupnet.hw.analytic import PIPELINE_DEPTH
from dupnet.hw.folded import FoldedConv, FoldingError
from dupnet.hw.mvtu import MVTU
from dupnet.hw.reference import window_chunks
from dupnet.hw.stream_layout import pack_lanes, unpack_lanes
from dupnet.hw.stream_sim import get_n, get_n_periodic, put_all, run_sim
from dupnet.sw.config import ConvGeometry
from dupnet.sw.golden import conv_acc, threshold

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def geom(k=3, h=2, w=2, c_in=4, c_out=4, w_dup=1, x_dup=1, in_bits=2, act_bits=2):
    return ConvGeometry(index=0, name="convt", k=k, height=h, width=w, in_channels=c_in,
                        out_channels=c_out, w_dup=w_dup, x_dup=x_dup, in_bits=in_bits,
                        act_bits=act_bits, is_last=act_bits is None)


def run_mvtu(g, pe, simd, x=None, weights=None, thresholds=None, preadd=True, stall=0.3,
             seed=0, frames=1, arith="xnor", kp=1):
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.integers(0, 1 << g.in_bits, size=(frames, g.height, g.width, g.in_channels))
    if weights is None:
        weights = rng.choice(np.array([-1, 1], dtype=np.int8),
                             size=(g.out_channels, g.k, g.k, g.c_unique))
    acc = conv_acc(x, weights, g)
    if g.act_bits is not None:
        if thresholds is None:
            # thresholds at observed accumulator values (+-1): codes vary, ties are exercised
            pool = acc.reshape(-1)
            thresholds = np.sort(rng.choice(pool, size=(g.out_channels, g.n_thresholds))
                                 + rng.integers(-1, 2, size=(g.out_channels, g.n_thresholds)),
                                 axis=1)
        want = threshold(acc, thresholds)
        bits, signed = g.act_bits, False
    else:
        want, bits, signed = acc, g.acc_bits, True
    nf = g.out_channels // pe
    frame_beats = g.height * g.width * nf if g.is_last else None
    dut = MVTU(FoldedConv(g, pe, simd, preadd=preadd, arith=arith, kp=kp), weights,
               thresholds, frame_beats=frame_beats)
    assert dut.rom_bits == g.unique_weight_bits
    ins = [pack_lanes(row, g.in_bits) for img in x
           for row in window_chunks(img, g.k, simd, g.x_dup, nf, kp)]
    expected = []
    for f in range(len(x)):
        chunks = want[f].reshape(-1, pe)
        for n, row in enumerate(chunks):
            v = pack_lanes(row, bits)
            if frame_beats is not None and n == len(chunks) - 1:
                v |= 1 << (pe * bits)
            expected.append(v)
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, ins, stall, random.Random(seed))

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(expected), stall, random.Random(seed + 7)))

    run_sim(dut, [producer], [consumer], max_cycles=20 * len(ins) + 1000)
    for n, (a, b) in enumerate(zip(got, expected)):
        assert a == b, (f"beat {n}: got {unpack_lanes(a, pe, bits, signed)} "
                        f"expected {unpack_lanes(b, pe, bits, signed)}")
    return acc


@pytest.mark.parametrize("w_dup", [1, 2, 4, 8])
@pytest.mark.parametrize("preadd", [True, False])
@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_w_dup(w_dup, preadd, arith):
    g = geom(c_in=8, c_out=4, w_dup=w_dup)
    run_mvtu(g, pe=2, simd=4, preadd=preadd, seed=w_dup, arith=arith)


@pytest.mark.parametrize("w_dup,preadd", [(1, False), (4, True), (4, False)])
def test_addsub_reference_datapath(w_dup, preadd):
    g = geom(c_in=8, c_out=4, w_dup=w_dup, act_bits=None)
    run_mvtu(g, pe=2, simd=8, preadd=preadd, arith="addsub", seed=11 + w_dup)


@pytest.mark.parametrize("pe,simd", [(1, 1), (1, 8), (4, 1), (4, 8), (2, 2)])
@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_pe_simd_extremes(pe, simd, arith):
    g = geom(c_in=8, c_out=4, w_dup=2)
    run_mvtu(g, pe=pe, simd=simd, seed=pe * 10 + simd, arith=arith)


@pytest.mark.parametrize("w_dup,simd,preadd", [(1, 4, True), (2, 4, True), (2, 4, False),
                                               (4, 2, True), (4, 2, False), (8, 1, False)])
@pytest.mark.parametrize("arith", ["xnor", "gated", "addsub"])
@pytest.mark.parametrize("last", [False, True])
def test_row_per_beat(w_dup, simd, preadd, arith, last):
    """KP = k: a row of the window per beat, KP*SIMD lanes whose weight bits come position by
    position (SIMD >= w_dup: SIMD/w_dup bits each; SIMD < w_dup: one bit each, read again for
    w_dup/SIMD beats)."""
    g = geom(c_in=8, c_out=4, w_dup=w_dup, act_bits=None if last else 2)
    run_mvtu(g, pe=2, simd=simd, preadd=preadd, arith=arith, kp=3, frames=2,
             seed=w_dup * 7 + simd)


@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_k1_xdup_last_layer(arith):
    g = geom(k=1, h=3, w=3, c_in=3, c_out=6, x_dup=2, in_bits=2, act_bits=None)
    run_mvtu(g, pe=3, simd=2, frames=2, arith=arith)


@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_thresholds_negative_zero_saturating(arith):
    g = geom(c_in=4, c_out=4, in_bits=2, act_bits=2)
    t = np.array([[g.threshold_min, g.threshold_min, g.threshold_min],   # always 3
                  [g.threshold_max, g.threshold_max, g.threshold_max],   # always 0
                  [-5, 0, 0],                                            # negative / zero / tie
                  [-1, 0, 1]])
    run_mvtu(g, pe=2, simd=2, thresholds=t, seed=3, arith=arith)


@pytest.mark.parametrize("w_dup,preadd", [(1, True), (2, True), (4, True), (4, False)])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_worst_case_accumulator(sign, arith, w_dup, preadd):
    """Every input at its maximum, every weight of one sign: the last layer reaches
    +-acc_max. With pre-add the xnor datapath's offset sum goes above acc_max (the complement
    of a pre-sum is over its full width): its accumulators must still hold it."""
    g = geom(k=3, h=3, w=3, c_in=4, c_out=2, w_dup=w_dup, in_bits=8, act_bits=None)
    x = np.full((1, 3, 3, 4), 255)
    w = np.full((2, 3, 3, g.c_unique), sign, dtype=np.int8)
    acc = run_mvtu(g, pe=2, simd=4, x=x, weights=w, stall=0.1, arith=arith, preadd=preadd)
    assert acc[0, 1, 1, 0] == sign * g.acc_max      # the centre pixel reaches the bound


@pytest.mark.parametrize("w_dup,simd", [(1, 2), (2, 2), (2, 4), (4, 4)])
@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_worst_case_thresholds_at_bounds(arith, w_dup, simd):
    g = geom(k=3, h=3, w=3, c_in=4, c_out=2, w_dup=w_dup, in_bits=2, act_bits=2)
    x = np.full((1, 3, 3, 4), 3)
    w = np.array([np.full((3, 3, g.c_unique), 1), np.full((3, 3, g.c_unique), -1)],
                 dtype=np.int8)
    t = np.array([[g.acc_max - 1, g.acc_max, g.acc_max + 1],
                  [-g.acc_max, -g.acc_max + 1, g.acc_max + 1]])
    run_mvtu(g, pe=1, simd=simd, x=x, weights=w, thresholds=t, stall=0.1, arith=arith)


def test_rejects_incompatible_simd():
    g = geom(c_in=12, c_out=4, w_dup=4)
    w = np.ones((4, 3, 3, 3), dtype=np.int8)
    with pytest.raises(FoldingError, match="convt.*'simd' \\(6\\) and w_dup \\(4\\)"):
        MVTU(FoldedConv(g, 2, 6), w, np.zeros((4, 3), dtype=np.int64))


def test_backpressure_absorbed_while_accumulating():
    """A consumer that takes an output only one cycle in 8 must not slow the input while the
    next output is still being accumulated (sf = 36 chunks per output): the MVTU stalls only
    when a finished output meets a full, blocked output register."""
    g = geom(k=3, h=2, w=2, c_in=4, c_out=4)
    pe, simd, frames, period = 4, 1, 2, 8
    rng = np.random.default_rng(4)
    x = rng.integers(0, 1 << g.in_bits, size=(frames, g.height, g.width, g.in_channels))
    weights = rng.choice(np.array([-1, 1], dtype=np.int8),
                         size=(g.out_channels, g.k, g.k, g.c_unique))
    thresholds = np.sort(rng.integers(-20, 20, size=(g.out_channels, g.n_thresholds)), axis=1)
    want = threshold(conv_acc(x, weights, g), thresholds)
    expected = [pack_lanes(row, g.act_bits) for f in range(frames)
                for row in want[f].reshape(-1, pe)]
    dut = MVTU(FoldedConv(g, pe, simd), weights, thresholds)
    ins = [pack_lanes(row, g.in_bits) for img in x
           for row in window_chunks(img, g.k, simd, g.x_dup, 1)]
    got, end = [], []

    async def producer(ctx):
        await put_all(ctx, dut.i, ins)

    async def consumer(ctx):
        payloads, last = await get_n_periodic(ctx, dut.o, len(expected), period)
        got.extend(payloads)
        end.append(last)

    run_sim(dut, [producer], [consumer], max_cycles=4 * len(ins) + 1000)
    assert got == expected
    # one chunk per cycle, the pipeline latency and one wait for the consumer at the end
    # (the former design stalled every time an output waited: ~ +3.5 cycles per output)
    assert end[0] <= len(ins) + PIPELINE_DEPTH + period, (end[0], len(ins))

"""MaxPool (stride 2, stride 1 with edge replicate) against dupnet.sw.golden.maxpool."""
import random

import numpy as np
import pytest

from dupnet.hw.folded import FoldedPool
from dupnet.hw.pool import MaxPool
from dupnet.hw.stream_layout import WordLayout, unpack_lanes
from dupnet.hw.stream_sim import get_n, get_n_periodic, put_all, run_sim, watch_flag
from dupnet.sw.golden import maxpool


def chunk_beats(x, bits, lanes=None):
    """The max-pool's stream words: ``lanes`` codes per word (default: whole pixels)."""
    return WordLayout(lanes or x.shape[-1], bits, signed=False).pack(x)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run_pool(h, w, c, bits, stride, frames=2, stall=0.3, seed=0, stall_out=None, lanes=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, size=(frames, h, w, c))
    want = maxpool(x, stride)
    dut = MaxPool(FoldedPool.of(h, w, c, bits, stride, lanes=lanes))
    expected = chunk_beats(want, bits, lanes)
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, chunk_beats(x, bits, lanes), stall, random.Random(seed))

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(expected),
                               stall if stall_out is None else stall_out,
                               random.Random(seed + 3)))

    collisions = []       # a non-transparent buffer read at the word written that cycle
    run_sim(dut, [producer, watch_flag(dut.collision, collisions)], [consumer],
            max_cycles=60 * len(expected) + 2000)
    assert not collisions, f"row/pixel buffer read/write collision at cycles {collisions[:5]}"
    lw = lanes or c
    for n, (a, b) in enumerate(zip(got, expected)):
        assert a == b, (f"word {n} (pixel {n * lw // c}): got {unpack_lanes(a, lw, bits)} "
                        f"want {unpack_lanes(b, lw, bits)}")
    assert len(got) == len(expected)


@pytest.mark.parametrize("h,w,c,bits", [(4, 6, 3, 2), (2, 2, 1, 2), (6, 4, 2, 3)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_pool_stride2(h, w, c, bits, stall):
    run_pool(h, w, c, bits, 2, stall=stall, seed=h * w)


@pytest.mark.parametrize("h,w,c,bits", [(5, 7, 3, 2), (3, 2, 2, 2), (1, 4, 1, 2), (4, 1, 2, 2),
                                        (1, 1, 2, 2), (3, 3, 1, 4)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_pool_stride1(h, w, c, bits, stall):
    run_pool(h, w, c, bits, 1, stall=stall, seed=h * w + 1)


CHUNKED = [(4, 6, 6, 2, 2), (2, 2, 4, 2, 1), (6, 4, 8, 3, 2), (2, 4, 4, 2, 2)]


@pytest.mark.parametrize("h,w,c,bits,lanes", CHUNKED)
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_pool_stride2_chunks(h, w, c, bits, lanes, stall):
    """Chunk-serial: ``c/lanes`` beats per pixel, one chunk compared per cycle."""
    run_pool(h, w, c, bits, 2, stall=stall, seed=h * w + lanes, lanes=lanes)


@pytest.mark.parametrize("h,w,c,bits,lanes", CHUNKED + [(5, 7, 6, 2, 3), (1, 4, 4, 2, 1),
                                                        (4, 1, 4, 2, 2), (1, 1, 2, 2, 1),
                                                        (3, 2, 6, 2, 1)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_pool_stride1_chunks(h, w, c, bits, lanes, stall):
    run_pool(h, w, c, bits, 1, stall=stall, seed=h * w + lanes + 1, lanes=lanes)


@pytest.mark.parametrize("h,w", [(3, 5), (1, 4), (4, 1), (1, 1), (2, 2)])
@pytest.mark.parametrize("stall_in,stall_out", [(0.0, 0.8), (0.3, 0.6)])
@pytest.mark.parametrize("lanes", [2, 1])
def test_pool_stride1_next_frame_during_flush(h, w, stall_in, stall_out, lanes):
    """A fast producer and a slow consumer: the next frame's first row enters while the bottom
    row is flushed (row-buffer words overwritten only once flushed); 4 frames, every word."""
    run_pool(h, w, 2, 2, 1, frames=4, stall=stall_in, stall_out=stall_out, seed=h * 7 + w,
             lanes=lanes)


def pool_throughput(h, w, c, bits, stride, frames, period, phase=0, seed=0, lanes=None):
    """Producer always valid, consumer ready one cycle in ``period``: returns the cycle of the
    last output (every output compared)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, size=(frames, h, w, c))
    expected = chunk_beats(maxpool(x, stride), bits, lanes)
    dut = MaxPool(FoldedPool.of(h, w, c, bits, stride, lanes=lanes))
    got, end = [], []

    async def producer(ctx):
        await put_all(ctx, dut.i, chunk_beats(x, bits, lanes))

    async def consumer(ctx):
        payloads, last = await get_n_periodic(ctx, dut.o, len(expected), period, phase)
        got.extend(payloads)
        end.append(last)

    collisions = []
    run_sim(dut, [producer, watch_flag(dut.collision, collisions)], [consumer],
            max_cycles=period * 4 * len(expected) + 1000)
    assert not collisions, f"row/pixel buffer read/write collision at cycles {collisions[:5]}"
    assert got == expected
    return end[0]


@pytest.mark.parametrize("phase", [0, 1, 2])
def test_pool_stride2_input_not_blocked_by_waiting_output(phase):
    """Only the input that completes a 2x2 block needs the output register: an output waiting
    for a slow consumer (one transfer per 3 cycles) must not block the inputs that complete no
    block (the even row streams in while the odd row's last output waits).  Per pair of rows:
    2W input cycles plus a few where an output meets a full register (the former design, which
    blocked every input while an output waited, took 2W + 5 here)."""
    h, w, frames = 6, 8, 3
    cycles = pool_throughput(h, w, 2, 2, 2, frames, period=3, phase=phase)
    assert cycles <= frames * (h // 2) * (2 * w + 3), cycles


def test_pool_stride1_overlaps_flush_with_next_frame():
    """Stride 1: the bottom row is flushed while the next frame's first row comes in, so a slow
    consumer (one output per 3 cycles) sees no gap at frame boundaries."""
    h, w, frames, period = 4, 8, 3, 3
    cycles = pool_throughput(h, w, 2, 2, 1, frames, period=period)
    # first frame: row 0 and one pixel arrive before the first output; then consumer-bound
    assert cycles <= period * h * w * frames + w + 6, cycles


@pytest.mark.parametrize("stride,h,w", [(2, 4, 6), (2, 2, 2), (1, 5, 7), (1, 2, 2), (1, 1, 4),
                                        (1, 3, 1), (1, 1, 1)])
@pytest.mark.parametrize("lanes", [4, 2, 1])
def test_pool_cycles_per_frame_equal_the_model(stride, h, w, lanes):
    """Producer always valid, consumer always ready: the frame interval is the analytic
    ``pool_model`` figure (the pipeline's lower bound when a pool is the bottleneck)."""
    from dupnet.hw.analytic import pool_model
    f = FoldedPool.of(h, w, 4, 2, stride, lanes=lanes)
    per_frame = (pool_throughput(h, w, 4, 2, stride, 4, period=1, lanes=lanes)
                 - pool_throughput(h, w, 4, 2, stride, 3, period=1, lanes=lanes))
    assert per_frame == pool_model(f).cycles_per_frame


def test_pool_geometry_refused_with_the_layer_named():
    from dupnet.hw.folded import FoldingError
    with pytest.raises(FoldingError, match=r"layer 0 \(p9\): stride-2 pool needs an even map, "
                                           r"got 5x4"):
        FoldedPool.of(5, 4, 2, 2, 2, name="p9")
    with pytest.raises(FoldingError, match=r"layer 0 \(p9\): pool stride must be 1 or 2, got 3"):
        FoldedPool.of(4, 4, 2, 2, 3, name="p9")
    with pytest.raises(FoldingError, match=r"layer 0 \(p9\): field 'lanes' \(3\) must divide the "
                                           r"pool's C = 4 channels"):
        FoldedPool.of(4, 4, 4, 2, 2, name="p9", lanes=3)


@pytest.mark.parametrize("c,lanes", [(65, 1), (8, 2)])
def test_pool_stride1_pixel_buffer_one_or_two_read_ports(c, lanes):
    """A pixel buffer deeper than PIXEL_BUFFER_DUAL_READ_DEPTH words has one read port (its
    address picked by the transfer), a smaller one two (the data picked by the registered
    transfer); both bit-exact with stalls, and the model lists the buffer once per port."""
    from dupnet.hw.folded import PIXEL_BUFFER, PIXEL_BUFFER_DUAL_READ_DEPTH
    f = FoldedPool.of(3, 2, c, 2, 1, lanes=lanes)
    reads = 1 if f.chunks > PIXEL_BUFFER_DUAL_READ_DEPTH else 2
    assert f.pixel_buffer_reads == reads
    assert [m.name for m in f.memories].count(PIXEL_BUFFER) == reads
    run_pool(3, 2, c, 2, 1, stall=0.3, seed=c, lanes=lanes)

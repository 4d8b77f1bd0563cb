"""WindowUnit against the numpy reference, random stalls on both sides."""
import random

import numpy as np
import pytest

from dupnet.hw.folded import FoldedConv, FoldingError, window_depth
from dupnet.hw.reference import window_chunks
from dupnet.hw.stream_layout import WordLayout, pack_lanes, unpack_lanes
from dupnet.hw.stream_sim import get_n, get_n_timed, put_all, run_sim, watch_flag
from dupnet.hw.window import WindowUnit


def run_window(h, w, c, bits, k, simd, x_dup=1, repeat=1, frames=2, stall=0.3, seed=0, kp=1):
    """Every output chunk compared; returns the cycle of each output transfer (counted from
    the start of the simulation) when ``stall`` is 0 (both sides never stall), else None."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 1 << bits, size=(frames, h, w, c))
    dut = WindowUnit(FoldedConv.of(h, w, c, repeat, k, 1, simd, x_dup=x_dup, in_bits=bits,
                                   kp=kp))
    expected = [pack_lanes(row, bits) for img in imgs
                for row in window_chunks(img, k, simd, x_dup, repeat, kp)]
    prng = random.Random(seed)
    got, cycles = [], []

    async def producer(ctx):
        await put_all(ctx, dut.i, WordLayout(dut.in_lanes, bits, signed=False).pack(imgs), stall, prng)

    collisions = []

    async def consumer(ctx):
        if stall:
            got.extend(await get_n(ctx, dut.o, len(expected), stall, random.Random(seed + 1)))
        else:
            for cycle, payload in await get_n_timed(ctx, dut.o, len(expected)):
                cycles.append(cycle)
                got.append(payload)

    # the line buffer is synthesized with no_rw_check: no used read may hit the slot written
    # in the same cycle
    run_sim(dut, [producer, watch_flag(dut.collision, collisions)], [consumer],
            max_cycles=20 * len(expected) + 1000)
    assert not collisions, f"read/write collision on a used slot at cycles {collisions[:5]}"
    for n, (a, b) in enumerate(zip(got, expected)):
        assert a == b, (f"beat {n}: got {unpack_lanes(a, kp * simd, bits)}, "
                        f"expected {unpack_lanes(b, kp * simd, bits)}")
    assert len(got) == len(expected)
    return None if stall else cycles


@pytest.mark.parametrize("h,w,c,bits,k,simd,x_dup,repeat", [
    (7, 5, 3, 8, 3, 3, 1, 1),      # odd sizes, k=3, full SIMD
    (7, 5, 3, 8, 3, 1, 1, 1),      # SIMD 1
    (5, 7, 3, 8, 3, 2, 2, 1),      # x_dup replay, SIMD straddling the copy boundary
    (5, 3, 6, 2, 1, 6, 1, 2),      # k=1, neuron-fold replay
    (3, 4, 2, 2, 3, 4, 2, 2),      # x_dup + replay
    (1, 1, 2, 2, 3, 2, 1, 1),      # 1x1 image
    (2, 9, 1, 8, 3, 1, 1, 1),      # wide, two rows
])
def test_window(h, w, c, bits, k, simd, x_dup, repeat):
    run_window(h, w, c, bits, k, simd, x_dup, repeat)


@pytest.mark.parametrize("h,w,c,bits,simd,x_dup,repeat", [
    (7, 5, 3, 8, 3, 1, 1),      # odd sizes, whole pixel
    (7, 5, 3, 8, 1, 1, 1),      # SIMD 1: 3 words per pixel
    (5, 7, 3, 8, 2, 2, 1),      # x_dup replay, SIMD straddling the copy boundary
    (3, 4, 2, 2, 4, 2, 2),      # x_dup + neuron-fold replay
    (1, 1, 2, 2, 2, 1, 1),      # 1x1 image
    (2, 9, 1, 8, 1, 1, 1),      # wide, two rows
    (4, 1, 2, 2, 1, 1, 2),      # one column
])
def test_window_row_per_beat(h, w, c, bits, simd, x_dup, repeat):
    """KP = k: a row of the window per beat from k line-buffer banks (random stalls, several
    frames: the banks' slots wrap at a different place every frame)."""
    run_window(h, w, c, bits, 3, simd, x_dup, repeat, frames=3, seed=h * w + c, kp=3)


def test_window_row_per_beat_full_rate():
    """KP = k, never stalled: one beat per cycle across frames, k*C'/SIMD beats per pixel."""
    h, w, c, simd, frames = 4, 5, 2, 2, 3
    cycles = run_window(h, w, c, 2, 3, simd, frames=frames, stall=0.0, kp=3)
    per_frame = FoldedConv.of(h, w, c, 1, 3, 1, simd, kp=3).cycles_per_frame
    assert per_frame == h * w * 3 * c // simd
    assert len(cycles) == frames * per_frame
    assert cycles[-1] - cycles[0] == frames * per_frame - 1


def test_window_rejects_bad_kp():
    with pytest.raises(FoldingError, match="convx.*'kp' \\(2\\) must be 1 or the kernel size"):
        FoldedConv.of(4, 4, 3, 1, 3, 1, 3, name="convx", kp=2)
    with pytest.raises(FoldingError, match="'kp' \\(3\\) must be 1 or the kernel size k = 1"):
        FoldedConv.of(4, 4, 3, 1, 1, 1, 3, kp=3)


@pytest.mark.parametrize("h,w,k", [(5, 7, 3), (3, 5, 1)])
def test_window_wraps_a_non_power_of_two_buffer(h, w, k):
    """The line buffer is exactly window_depth pixels (not a power of two): frames whose size
    is no multiple of the depth wrap the addresses at a different place every frame."""
    depth = window_depth(k, w)
    assert depth & (depth - 1) and (h * w) % depth
    run_window(h, w, 2, 2, k, 2, frames=4, stall=0.2, seed=h + w + k)


def test_window_no_stall_full_rate():
    """Producer always valid, consumer always ready: once primed the window emits one chunk
    every cycle, across frame boundaries too (the next frame's pixels enter while the last
    rows' windows are emitted)."""
    h, w, c, k, simd, x_dup, frames = 4, 5, 2, 3, 4, 2, 3
    cycles = run_window(h, w, c, 2, k, simd, x_dup=x_dup, frames=frames, stall=0.0)
    chunks_per_pixel = k * k * c * x_dup // simd                  # sf = 9*4/4 = 9, nf = 1
    per_frame = h * w * chunks_per_pixel                          # 4*5*9 = 180 cycles
    assert per_frame == FoldedConv.of(h, w, c, 1, k, 1, simd, x_dup=x_dup).cycles_per_frame
    assert len(cycles) == frames * per_frame
    gaps = [(n, b - a) for n, (a, b) in enumerate(zip(cycles, cycles[1:])) if b - a != 1]
    assert not gaps, f"(chunk index, cycles to the next chunk) off full rate: {gaps[:10]}"
    assert cycles[-1] - cycles[0] == frames * per_frame - 1         # 539 cycles
    # primed: the first window needs pad*W + pad + 1 pixels (in cycles 0..pad*W+pad), then
    # the line-buffer read and the output register
    pad = k // 2
    assert pad * w + pad < cycles[0] <= pad * w + pad + 2, cycles[0]


def test_window_rejects_bad_simd():
    with pytest.raises(FoldingError, match="convx.*'simd' \\(4\\) must divide C'"):
        WindowUnit(FoldedConv.of(4, 4, 3, 1, 3, 1, 4, in_bits=8, name="convx"))

"""MaxPool (stride 2, stride 1 with edge replicate) against dupnet.sw.golden.maxpool."""
import random

import numpy as np
import pytest

from dupnet.hw.pool import MaxPool
from dupnet.hw.reference import pixel_beats, unpack_lanes
from dupnet.hw.stream_sim import get_n, put_all, run_sim
from dupnet.sw.golden import maxpool

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run_pool(h, w, c, bits, stride, frames=2, stall=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, size=(frames, h, w, c))
    want = maxpool(x, stride)
    dut = MaxPool(h, w, c, bits, stride)
    expected = pixel_beats(want, bits)
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, pixel_beats(x, bits), stall, random.Random(seed))

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(expected), stall, random.Random(seed + 3)))

    run_sim(dut, [producer], [consumer], max_cycles=30 * len(expected) + 2000)
    for n, (a, b) in enumerate(zip(got, expected)):
        assert a == b, f"pixel {n}: got {unpack_lanes(a, c, bits)} want {unpack_lanes(b, c, bits)}"
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

"""Gather / Unpack width adapters with random stalls."""
import random

import pytest

from dupnet.hw.adapters import Gather, Unpack
from dupnet.hw.stream_sim import get_n, put_all, run_sim


@pytest.mark.parametrize("cls,w,n", [(Gather, 4, 3), (Gather, 2, 2), (Gather, 3, 1),
                                     (Unpack, 4, 3), (Unpack, 8, 2), (Unpack, 5, 1)])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_adapter(cls, w, n, stall):
    rng = random.Random(w * n)
    if cls is Gather:
        ins = [rng.randrange(1 << w) for _ in range(n * 6)]
        want = [sum(v << (k * w) for k, v in enumerate(ins[i:i + n]))
                for i in range(0, len(ins), n)]
    else:
        ins = [rng.randrange(1 << (w * n)) for _ in range(6)]
        want = [(x >> (k * w)) & ((1 << w) - 1) for x in ins for k in range(n)]
    dut = cls(w, n)
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, ins, stall, random.Random(1))

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(want), stall, random.Random(2)))

    run_sim(dut, [producer], [consumer], max_cycles=5000)
    assert got == want

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


def _skid_run(pattern_in, pattern_out, n=40):
    """Beats through a SkidBuffer with the producer / consumer idle on the given cycles;
    returns (received beats, cycles at which each beat was accepted at the input)."""
    from dupnet.hw.adapters import SkidBuffer
    from amaranth.sim import Simulator
    dut = SkidBuffer(8)
    ins = list(range(1, n + 1))
    got, accepted = [], []

    async def bench(ctx):
        k = 0
        for cyc in range(6 * n):
            ctx.set(dut.i.valid, k < n and not pattern_in(cyc))
            ctx.set(dut.i.payload, ins[k] if k < n else 0)
            ctx.set(dut.o.ready, pattern_out(cyc))
            flipped = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, not pattern_out(cyc))
            i_ready, o_valid, o_payload = (ctx.get(dut.i.ready), ctx.get(dut.o.valid),
                                           ctx.get(dut.o.payload))
            o_ready = not pattern_out(cyc)
            assert i_ready == flipped, f"cycle {cyc}: i.ready follows o.ready combinationally"
            if k < n and not pattern_in(cyc) and i_ready:
                accepted.append(cyc)
                k += 1
            if o_valid and o_ready:
                got.append(o_payload)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, ins, accepted


@pytest.mark.parametrize("seed", range(4))
def test_skid_buffer_keeps_order_under_random_stalls(seed):
    rng_in, rng_out = random.Random(seed), random.Random(seed + 100)
    stall_in = {c for c in range(400) if rng_in.random() < 0.3}
    stall_out = {c for c in range(400) if rng_out.random() < 0.4}
    got, ins, _ = _skid_run(stall_in.__contains__, stall_out.__contains__)
    assert got == ins


def test_skid_buffer_ready_is_registered_and_costs_no_throughput():
    """A consumer ready every other cycle: the producer is never more than one beat ahead, the
    consumer takes a beat on each of its ready cycles (no bubble from the registered ready),
    and with the consumer always ready beats pass in the cycle they are offered."""
    got, ins, accepted = _skid_run(lambda c: False, lambda c: c % 2 == 1, n=20)
    assert got == ins
    # consumer ready on even cycles 0, 2, ..., 38: the 20th beat leaves at cycle 38, so the
    # producer's last acceptance is no later than that
    assert accepted[-1] <= 38
    got, ins, accepted = _skid_run(lambda c: False, lambda c: False, n=20)
    assert got == ins and accepted == list(range(20))

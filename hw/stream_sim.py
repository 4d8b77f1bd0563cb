"""Amaranth-simulator helpers for ``amaranth.lib.stream`` interfaces (Glasgow style).

Used by every Amaranth-sim testbench of the hardware::

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, stall=0.3, rng=rng)

    async def consumer(ctx):
        got = await get_n(ctx, dut.o, len(expected), stall=0.3, rng=rng)

    run_sim(dut, [producer], [consumer])

A *stall probability* ``p`` inserts, before each transfer, a geometric number of idle cycles
(valid or ready held low), so both stream sides see random backpressure.
"""
from __future__ import annotations

import random
from typing import Any, Awaitable, Callable, Iterable, Sequence

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.sim import Simulator

__all__ = ["stream_put", "stream_get", "put_all", "get_n", "get_n_timed", "get_n_periodic",
           "idle", "run_sim", "stream_put_stall", "stream_get_stall", "watch_flag", "write_words"]


async def idle(ctx, stall: float, rng: random.Random | None) -> None:
    """Wait a random number of cycles: each cycle, go on with probability ``1 - stall``."""
    if stall <= 0 or rng is None:
        return
    n = 0
    while rng.random() < stall and n < 16:
        n += 1
    if n:
        await ctx.tick().repeat(n)


async def stream_put(ctx, stream, payload: Any) -> None:
    """Offer one beat on ``stream`` (a testbench-driven sink port) and wait for its transfer."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream) -> Any:
    """Accept one beat from ``stream`` (a testbench-driven source port) and return its payload."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_put_stall(ctx, stream, payload: Any, stall: float = 0.0,
                           rng: random.Random | None = None) -> None:
    """:func:`stream_put` after a random idle time (``valid`` low)."""
    await idle(ctx, stall, rng)
    await stream_put(ctx, stream, payload)


async def stream_get_stall(ctx, stream, stall: float = 0.0,
                           rng: random.Random | None = None) -> Any:
    """:func:`stream_get` after a random idle time (``ready`` low)."""
    await idle(ctx, stall, rng)
    return await stream_get(ctx, stream)


async def put_all(ctx, stream, payloads: Iterable[Any], stall: float = 0.0,
                  rng: random.Random | None = None) -> None:
    """Send every payload in order, with random idle cycles between beats."""
    for p in payloads:
        await stream_put_stall(ctx, stream, p, stall, rng)


async def get_n(ctx, stream, n: int, stall: float = 0.0,
                rng: random.Random | None = None) -> list[Any]:
    """Receive ``n`` beats (as plain ints for unsigned payloads), with random idle cycles."""
    out = []
    for _ in range(n):
        out.append(await stream_get_stall(ctx, stream, stall, rng))
    return out


async def get_n_timed(ctx, stream, n: int, period: int = 1, phase: int = 0
                      ) -> list[tuple[int, Any]]:
    """Receive ``n`` beats with ``ready`` high in the first cycle, then only in the cycles
    ``c`` where ``c % period == phase`` (``period = 1``: always ready). Returns the cycle
    (counted from the call) and the payload of each transfer; ``ready`` is low afterwards."""
    got = []
    cycle = 0
    ctx.set(stream.ready, 1)
    async for _, _, valid, ready, payload in ctx.tick().sample(stream.valid, stream.ready,
                                                               stream.payload):
        if valid and ready:
            got.append((cycle, payload))
            if len(got) == n:
                ctx.set(stream.ready, 0)
                return got
        cycle += 1
        ctx.set(stream.ready, cycle % period == phase)
    raise AssertionError("unreachable: the tick loop ends only with the simulation")


async def get_n_periodic(ctx, stream, n: int, period: int, phase: int = 0
                         ) -> tuple[list[Any], int]:
    """A consumer that takes one beat per ``period`` cycles (:func:`get_n_timed`): the
    payloads and the cycle of the last transfer."""
    beats = await get_n_timed(ctx, stream, n, period, phase)
    return [payload for _, payload in beats], beats[-1][0]


class _ClockedWrapper(Elaboratable):
    def __init__(self, dut):
        self.dut = dut

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.submodules.dut = self.dut
        return m


async def write_words(ctx, port, words: Iterable[int]) -> None:
    """Write ``words`` at addresses 0, 1, ... through a write port (``addr``, ``data``, ``en``
    signals), one a cycle, then lower ``en``."""
    for addr, word in enumerate(words):
        ctx.set(port.addr, addr)
        ctx.set(port.data, word)
        ctx.set(port.en, 1)
        await ctx.tick()
    ctx.set(port.en, 0)


def watch_flag(signal, hits: list[int]) -> Callable[..., Awaitable[None]]:
    """A background testbench that appends the cycle of every clock edge where the 1-bit
    ``signal`` (a design's simulation check, e.g. a memory read/write collision) is high to
    ``hits``: the test asserts ``hits`` stays empty."""
    async def watch(ctx):
        cycle = 0
        async for _, _, hit in ctx.tick().sample(signal):
            if hit:
                hits.append(cycle)
            cycle += 1
    return watch


def run_sim(dut, producers: Sequence[Callable[..., Awaitable[None]]],
            consumers: Sequence[Callable[..., Awaitable[None]]] = (),
            max_cycles: int = 200_000, vcd: str | None = None) -> None:
    """Simulate ``dut`` with a 1 MHz clock until every consumer returns (``producers`` run as
    background testbenches). Raises ``TimeoutError`` after ``max_cycles`` cycles."""
    sim = Simulator(dut)
    try:
        sim.add_clock(1e-6)
    except NameError:      # purely combinational design: give the testbenches a clock
        sim = Simulator(_ClockedWrapper(dut))
        sim.add_clock(1e-6)
    for p in producers:
        sim.add_testbench(p, background=True)
    done = []

    for c in consumers:
        async def wrapped(ctx, c=c):
            await c(ctx)
            done.append(c)
        sim.add_testbench(wrapped)

    async def watchdog(ctx):
        await ctx.delay(max_cycles * 1e-6)
        raise TimeoutError(f"simulation did not finish within {max_cycles} cycles "
                           f"({len(done)}/{len(consumers)} consumers done)")
    sim.add_testbench(watchdog, background=True)

    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()

"""cocotb stream driver and monitor for Amaranth ``lib.stream`` ports, with seeded stalls.

An Amaranth ``stream.Signature`` port named ``i`` flattens to the Verilog ports ``i__valid``,
``i__ready`` and ``i__payload``.  :class:`StreamDriver` plays the source of such a port,
:class:`StreamMonitor` the sink (it drives ``ready``) or, with ``passive=True``, a pure observer
of a stream whose ready is driven elsewhere (e.g. a ``probe_<layer>__*`` tap).

Timing discipline (independent of how a simulator orders edge callbacks): inputs are written
right after a rising edge; handshakes are sampled in the ReadOnly phase before the next edge,
where every combinational path (``ready`` depending on ``valid``) has settled.  A transfer
happens at the edge that follows a settled ``valid & ready`` with ``rst`` low.  The driver
follows the stream rule that ``valid``, once raised, stays up with the same payload until the
transfer; stalls on the source side therefore insert bubbles *between* words, and stalls on
the sink side drop ``ready`` on any cycle.

Stall patterns are seeded: the same seed gives the same cycle-by-cycle pattern, so a failing
run is reproducible.

Cycle numbers are ``sim_time / clock period``: both sides record at which cycle each word
transferred, which gives first-output latency, cycles per frame and initiation interval.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

__all__ = ["StallPattern", "StreamDriver", "StreamMonitor", "PassiveGroup", "start_clock",
           "Transfer"]


class StallPattern:
    """A reproducible per-cycle stall sequence.

    Parameters
    ----------
    p : float
        Probability that a cycle is stalled (0 = never, the full-throughput case).
    seed : int
        Seed of the pattern (numpy ``default_rng``).
    burst : int
        Mean length of a stall burst: a stall, once started, lasts a geometric number of cycles
        with this mean (1 = independent cycles).  The long-run stall fraction stays ``p``.
    fixed : sequence of bool, optional
        An explicit repeating pattern (True = stall) instead of random stalls.
    """

    BLOCK = 4096

    def __init__(self, p: float = 0.0, seed: int = 0, burst: int = 1,
                 fixed: Iterable[bool] | None = None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stall probability must be in [0, 1), got {p}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.p, self.seed, self.burst = float(p), int(seed), int(burst)
        self.fixed = None if fixed is None else [bool(v) for v in fixed]
        self._rng = np.random.default_rng(seed)
        self._buf: list[bool] = []
        self._pos = 0
        self._state = False
        self._fixed_pos = 0

    def __repr__(self) -> str:
        if self.fixed is not None:
            return f"StallPattern(fixed={self.fixed})"
        return f"StallPattern(p={self.p}, seed={self.seed}, burst={self.burst})"

    def _refill(self) -> None:
        n = self.BLOCK
        if self.p == 0.0:
            self._buf = [False] * n
        elif self.burst == 1:
            self._buf = (self._rng.random(n) < self.p).tolist()
        else:
            # two-state Markov chain: leave a stall with prob 1/burst, enter one with prob q
            # such that the stationary stall fraction is p: q = p / (burst * (1 - p)).
            leave = 1.0 / self.burst
            enter = min(1.0, self.p / (self.burst * (1.0 - self.p)))
            r = self._rng.random(n)
            out, s = [], self._state
            for v in r:
                s = (v >= leave) if s else (v < enter)
                out.append(bool(s))
            self._state = s
            self._buf = out
        self._pos = 0

    def next(self) -> bool:
        """Stall this cycle?"""
        if self.fixed is not None:
            v = self.fixed[self._fixed_pos % len(self.fixed)]
            self._fixed_pos += 1
            return v
        if self._pos >= len(self._buf):
            self._refill()
        v = self._buf[self._pos]
        self._pos += 1
        return v

    @classmethod
    def none(cls) -> "StallPattern":
        return cls(0.0)


def _triggers():
    from cocotb.triggers import ReadOnly, RisingEdge
    return ReadOnly, RisingEdge


def start_clock(dut, period_ns: int = 10, clk: str = "clk") -> int:
    """Start a clock on ``dut.<clk>`` (cocotb's C++ clock); returns the period in sim steps."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.simtime import convert
    cocotb.start_soon(Clock(getattr(dut, clk), period_ns, unit="ns").start())
    return int(convert(period_ns, "ns", to="step"))


@dataclass
class Transfer:
    cycle: int
    word: int


class StreamDriver:
    """Source side of a stream port ``<prefix>__valid/ready/payload``.

    Parameters
    ----------
    dut : cocotb handle of the top level
    prefix : str
        Stream name (``"i"`` for the top's input).
    period_steps : int
        Clock period in simulator steps (from :func:`start_clock`).
    stalls : StallPattern, optional
        Source stalls: on a stalled cycle no *new* word is offered.
    rst : str, optional
        Reset port name; no transfer counts while it is high.
    clk : str
        Clock port name.

    Use :meth:`send` to queue words, ``cocotb.start_soon(driver.run())`` once, and
    :meth:`wait_idle` to wait until every queued word has transferred.
    """

    def __init__(self, dut, prefix: str, period_steps: int, stalls: StallPattern | None = None,
                 rst: str | None = "rst", clk: str = "clk"):
        self.dut = dut
        self.prefix = prefix
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.rst = getattr(dut, rst) if rst else None
        self.clk = getattr(dut, clk)
        self.period = period_steps
        self.stalls = stalls or StallPattern.none()
        self.queue: deque[int] = deque()
        self.sent: list[int] = []          # cycle of each transfer (edge index)
        self.enabled = True
        self.valid.value = 0
        self._idle_event = None

    def send(self, words: Iterable[int]) -> None:
        self.queue.extend(int(w) for w in words)

    def clear(self) -> None:
        """Drop every queued word, including one being offered (when the test asserts reset;
        ``valid`` falls on the next cycle)."""
        self.queue.clear()

    @property
    def pending(self) -> int:
        return len(self.queue)

    async def run(self) -> None:
        ReadOnly, RisingEdge = _triggers()
        from cocotb.simtime import get_sim_time
        edge, ro = RisingEdge(self.clk), ReadOnly()
        valid_h, ready_h, payload_h, rst_h = self.valid, self.ready, self.payload, self.rst
        q, stalls, sent, period = self.queue, self.stalls, self.sent, self.period
        offering = False        # valid was high during the last settled phase
        fire = False
        while True:
            await edge
            if fire and q:
                # the word offered before this edge transferred (unless clear() dropped it)
                q.popleft()
                sent.append(int(get_sim_time("step")) // period)
                offering = False
            stall = stalls.next()
            if offering and q:
                pass                         # hold valid and payload until accepted
            elif q and self.enabled and not stall:
                payload_h.value = q[0]
                valid_h.value = 1
                offering = True
            else:
                if offering or valid_h.value:
                    valid_h.value = 0
                offering = False
            await ro
            fire = offering and bool(ready_h.value) and not (rst_h is not None and rst_h.value)

    async def wait_idle(self) -> None:
        _, RisingEdge = _triggers()
        edge = RisingEdge(self.clk)
        while self.queue:
            await edge


class StreamMonitor:
    """Sink side (or passive observer) of a stream port ``<prefix>__valid/ready/payload``.

    Parameters
    ----------
    dut, prefix, period_steps, rst, clk
        As for :class:`StreamDriver`.
    stalls : StallPattern, optional
        Sink stalls: ``ready`` is low on stalled cycles.  Ignored when passive.
    passive : bool
        Observe only (do not drive ``ready``); a transfer is ``valid & ready`` as seen.
    callback : callable, optional
        Called with each :class:`Transfer` as it happens (e.g. a scoreboard's ``push``).

    ``transfers`` lists every word with its cycle.
    """

    def __init__(self, dut, prefix: str, period_steps: int, stalls: StallPattern | None = None,
                 passive: bool = False, callback: Callable[[Transfer], None] | None = None,
                 rst: str | None = "rst", clk: str = "clk"):
        self.prefix = prefix
        self.valid = getattr(dut, f"{prefix}__valid")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.ready = getattr(dut, f"{prefix}__ready", None)
        self.rst = getattr(dut, rst) if rst else None
        self.clk = getattr(dut, clk)
        self.period = period_steps
        self.passive = passive
        self.stalls = stalls or StallPattern.none()
        self.callback = callback
        self.transfers: list[Transfer] = []
        self.enabled = True
        if not passive:
            if self.ready is None:
                raise AttributeError(f"{prefix}__ready not found on the design")
            self.ready.value = 0

    def clear(self) -> None:
        self.transfers.clear()

    async def run(self) -> None:
        ReadOnly, RisingEdge = _triggers()
        from cocotb.simtime import get_sim_time
        edge, ro = RisingEdge(self.clk), ReadOnly()
        valid_h, ready_h, payload_h, rst_h = self.valid, self.ready, self.payload, self.rst
        stalls, out, cb, period = self.stalls, self.transfers, self.callback, self.period
        passive = self.passive
        rdy = False
        while True:
            await edge
            if not passive:
                new = self.enabled and not stalls.next()
                if new != rdy:
                    ready_h.value = int(new)
                    rdy = new
            await ro
            if valid_h.value and (rdy if not passive else (ready_h is None or ready_h.value)):
                if rst_h is not None and rst_h.value:
                    continue
                t = Transfer(int(get_sim_time("step")) // period + 1, int(payload_h.value))
                out.append(t)
                if cb is not None:
                    cb(t)


class PassiveGroup:
    """Several passive monitors in one coroutine (probe taps): one wake-up per cycle for all.

    ``monitors`` are :class:`StreamMonitor` objects built with ``passive=True``; their
    ``transfers`` and callbacks behave exactly as if each ran on its own.
    """

    def __init__(self, monitors: list[StreamMonitor]):
        if any(not m.passive for m in monitors):
            raise ValueError("PassiveGroup takes passive monitors only")
        self.monitors = monitors

    async def run(self) -> None:
        if not self.monitors:
            return
        ReadOnly, RisingEdge = _triggers()
        from cocotb.simtime import get_sim_time
        m0 = self.monitors[0]
        edge, ro = RisingEdge(m0.clk), ReadOnly()
        rst_h, period = m0.rst, m0.period
        taps = [(m.valid, m.ready, m.payload, m.transfers, m.callback) for m in self.monitors]
        while True:
            await edge
            await ro
            if rst_h is not None and rst_h.value:
                continue
            cyc = None
            for valid_h, ready_h, payload_h, out, cb in taps:
                if valid_h.value and (ready_h is None or ready_h.value):
                    if cyc is None:
                        cyc = int(get_sim_time("step")) // period + 1
                    t = Transfer(cyc, int(payload_h.value))
                    out.append(t)
                    if cb is not None:
                        cb(t)

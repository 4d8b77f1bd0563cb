"""cocotb testbench of a whole streaming design (the generated network top, or any design with
the same ports): run inside the simulator by :func:`dupnet.sim.network.run_design` (through
:func:`dupnet.sim.build.run_cocotb`).

It reads a *job* (``$DUPNET_SIM_JOB``, a JSON file written by :mod:`dupnet.sim.network`) that
names the input frames, the expected output tensors (golden model) and, for designs generated
with probes, each probed layer's expected tensors; it drives the input stream, monitors the
output and probe streams with a :class:`~dupnet.sim.scoreboard.Scoreboard` each, and writes
``report.json`` beside the job: every scoreboard's result (first mismatch with its layer, frame,
pixel, channel, expected and actual value), the cycle of each frame's first input, first output
and last output, and the wall time.

Scenarios (``job["scenario"]``):

* ``frames`` — all frames back to back (the input stream never waits for the output).
* ``reset`` — frame 0 is started, ``rst`` is asserted in mid-frame (after ``reset_after``
  input beats, or half the frame), then every following frame must come out bit-exact.

A design with a load port (``weights = "load"``, :mod:`dupnet.hw.loader`) gets the job's load
image (``job["load"]``) on its ``load`` stream from reset, with the input stalls; the frames
are offered at the same time (the design holds them until ``loaded``).  In the ``reset``
scenario the design is then loaded again after the reset with ``job["reload"]`` (another
artifact's image, whose golden outputs the job expects), and reset once more in the middle of
that load (``reload`` restarts from its first word).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, First, RisingEdge, Timer

from dupnet.hw.stream_layout import WordLayout, image_beats

from ..files import atomic_save_npy, atomic_write_text
from .scoreboard import Scoreboard
from .stream import PassiveGroup, StallPattern, StreamDriver, StreamMonitor, start_clock

PERIOD_NS = 10      # default clock period; the job's ``period_ns`` (set by run_design) wins


def _load_job() -> tuple[dict, Path]:
    path = Path(os.environ["DUPNET_SIM_JOB"])
    return json.loads(path.read_text()), path.parent


def _layout(d: dict) -> WordLayout:
    return WordLayout(lanes=d["lanes"], bits=d["bits"], signed=d["signed"],
                      has_last=d["has_last"])


class _Watch:
    """Counts finished frames over several scoreboards; fires an event when all are done."""

    def __init__(self, boards: list[Scoreboard], frames: int):
        self.boards, self.frames = boards, frames
        self.done = Event()

    def check(self) -> None:
        if all(b.frame >= self.frames or b.errors for b in self.boards):
            self.done.set()


def _stall_patterns(job: dict) -> tuple[StallPattern, StallPattern]:
    """The seeded input-valid and output-ready stall patterns of the job."""
    seed, burst = job.get("seed", 0), job.get("burst", 1)
    return (StallPattern(job.get("stall_in", 0.0), seed=seed * 2 + 1, burst=burst),
            StallPattern(job.get("stall_out", 0.0), seed=seed * 2 + 2, burst=burst))


def _scoreboards(streams: list[dict], jdir: Path, compared: list[int]) -> list[Scoreboard]:
    """One scoreboard per checked stream (output first, then probes), on the compared frames."""
    boards = []
    for s in streams:
        exp = np.load(jdir / s["expected"])
        boards.append(Scoreboard(s["layer"], _layout(s["layout"]), [exp[f] for f in compared]))
    return boards


def _monitors(dut, streams: list[dict], boards: list[Scoreboard], period: int,
              out_stall: StallPattern, watch: _Watch, armed: list[bool]) -> list[StreamMonitor]:
    """The output stream's monitor (it drives ready, with stalls), then a passive monitor per
    probe; each pushes its words to its scoreboard while ``armed[0]``."""
    def make_cb(sb):
        def cb(t):
            if armed[0]:
                sb.push(t.word, t.cycle)
                watch.check()
        return cb

    return [StreamMonitor(dut, s["prefix"], period, stalls=out_stall if k == 0 else None,
                          passive=k > 0, callback=make_cb(sb))
            for k, (s, sb) in enumerate(zip(streams, boards))]


async def _start_agents(dut, drv: StreamDriver, monitors: list[StreamMonitor]) -> None:
    """Hold ``rst`` (already high) for 3 cycles, release it, then start the driver, the output
    monitor and one coroutine for all probe monitors."""
    edge = RisingEdge(dut.clk)
    for _ in range(3):
        await edge
    dut.rst.value = 0
    await edge
    cocotb.start_soon(drv.run())
    cocotb.start_soon(monitors[0].run())
    cocotb.start_soon(PassiveGroup(monitors[1:]).run())


async def _pulse_reset(dut, cycles: int) -> None:
    edge = RisingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(cycles):
        await edge
    dut.rst.value = 0


async def _reload(dut, job: dict, jdir: Path, loader: StreamDriver) -> None:
    """After a reset: half of the reload image, a reset in mid-load, then the whole image."""
    words = [int(w) for w in np.load(jdir / job.get("reload", job["load"]))]
    edge = RisingEdge(dut.clk)
    loader.sent.clear()
    loader.send(words[:max(1, len(words) // 2)])
    while loader.pending:
        await edge
    loader.clear()
    await _pulse_reset(dut, job.get("reset_cycles", 3))
    loader.send(words)


async def _reset_mid_frame(dut, job: dict, drv: StreamDriver, monitors: list[StreamMonitor],
                           frame0: list[int], armed: list[bool], period: int,
                           loader: StreamDriver | None = None, jdir: Path | None = None) -> int:
    """Reset scenario: send frame 0, assert ``rst`` after ``reset_after`` input beats (default
    half the frame) with the input idle, reload a design with a load port
    (:func:`_reload`), then clear and arm the monitors. Returns the cycle at which reset was
    asserted."""
    edge = RisingEdge(dut.clk)
    at = job.get("reset_after") or max(1, len(frame0) // 2)
    drv.send(frame0)
    while len(drv.sent) < at:
        await edge
    drv.clear()
    drv.enabled = False
    reset_cycle = int(get_sim_time("step")) // period
    await _pulse_reset(dut, job.get("reset_cycles", 3))
    if loader is not None:
        loader.clear()
        await _reload(dut, job, jdir, loader)
    for mon in monitors:
        mon.clear()
    armed[0] = True
    drv.sent.clear()
    drv.enabled = True
    await edge
    return reset_cycle


def _frame_input_cycles(sent: list[int], frames: int, beats_per_frame: int
                        ) -> tuple[list[int], list[int]]:
    """Cycle of each compared frame's first and last input beat (frames fully sent only)."""
    first = [sent[i * beats_per_frame] for i in range(frames)
             if i * beats_per_frame < len(sent)]
    last = [sent[(i + 1) * beats_per_frame - 1] for i in range(frames)
            if (i + 1) * beats_per_frame - 1 < len(sent)]
    return first, last


def _write_results(jdir: Path, output: dict, monitor: StreamMonitor, report: dict) -> None:
    """The captured output stream, decoded, as ``rtl_output.npy`` ([frames, H, W, C], flat if
    partial), then ``report.json`` (last: its presence means the run finished)."""
    vals, _ = _layout(output["layout"]).unpack([t.word for t in monitor.transfers])
    exp0 = np.load(jdir / output["expected"])
    per_frame = int(np.prod(exp0.shape[1:]))
    flat = vals.reshape(-1)
    if per_frame and flat.size % per_frame == 0:
        flat = flat.reshape((-1,) + exp0.shape[1:])
    atomic_save_npy(jdir / "rtl_output.npy", flat)
    atomic_write_text(jdir / "report.json", json.dumps(report, indent=1))


@cocotb.test()
async def network(dut):
    """Drive frames, compare every output word (and probed layer words) bit-exactly."""
    job, jdir = _load_job()
    t_wall = time.perf_counter()
    period_ns = int(job.get("period_ns", PERIOD_NS))
    period = start_clock(dut, period_ns)
    images = np.load(jdir / job["images"])
    scen = job.get("scenario", "frames")
    in_stall, out_stall = _stall_patterns(job)
    drv = StreamDriver(dut, job.get("input", "i"), period, stalls=in_stall)
    dut.rst.value = 1
    # Which frames are compared: all, or (reset scenario) the ones after the reset.
    n_frames = images.shape[0]
    compared = list(range(n_frames)) if scen == "frames" else list(range(1, n_frames))
    streams = [job["output"]] + job.get("probes", [])
    boards = _scoreboards(streams, jdir, compared)
    armed = [scen == "frames"]
    watch = _Watch(boards, len(compared))
    monitors = _monitors(dut, streams, boards, period, out_stall, watch, armed)

    loader = None
    if job.get("load"):
        loader = StreamDriver(dut, "load", period, stalls=_stall_patterns(job)[0])
        loader.send(int(w) for w in np.load(jdir / job["load"]))
    await _start_agents(dut, drv, monitors)
    if loader is not None:
        cocotb.start_soon(loader.run())

    beats = [image_beats(images[f], job.get("pixels_per_beat", 1)) for f in range(n_frames)]
    beats_per_frame = len(beats[0])
    t0_cycle = int(get_sim_time("step")) // period
    reset_cycle = None
    if scen == "reset":
        reset_cycle = await _reset_mid_frame(dut, job, drv, monitors, beats[0], armed, period,
                                             loader, jdir)
    for f in compared:
        drv.send(beats[f])

    max_cycles = int(job.get("max_cycles", 10_000_000))
    await First(watch.done.wait(), Timer(max_cycles * period_ns, unit="ns"))
    # a few more cycles so that an extra (unexpected) word would be seen
    edge = RisingEdge(dut.clk)
    for _ in range(job.get("drain_cycles", 8)):
        await edge
    for sb in boards:
        sb.finish()
    end_cycle = int(get_sim_time("step")) // period

    first_in, last_in = _frame_input_cycles(drv.sent, len(compared), beats_per_frame)
    report = {
        "scenario": scen, "frames": len(compared), "reset_cycle": reset_cycle,
        "start_cycle": t0_cycle, "end_cycle": end_cycle,
        "timed_out": not watch.done.is_set(), "max_cycles": max_cycles,
        "input_beats": len(drv.sent), "beats_per_frame": beats_per_frame,
        "frame_first_input": first_in, "frame_last_input": last_in,
        "scoreboards": [sb.to_dict() for sb in boards],
        "wall_s": time.perf_counter() - t_wall,
    }
    _write_results(jdir, streams[0], monitors[0], report)
    bad = [sb.summary() for sb in boards if not sb.ok]
    assert not report["timed_out"] or bad, (
        f"timed out after {max_cycles} cycles; "
        + "; ".join(f"{sb.layer}: {sb.frame} frame(s), {sb.word} words" for sb in boards))
    assert not bad, "\n".join(bad)

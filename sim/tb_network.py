"""cocotb testbench of a whole streaming design (the generated network top, or any design with
the same ports): run inside the simulator by :func:`dupnet.sim.network.run_job`.

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

from .scoreboard import Scoreboard, WordLayout, pack_pixels, unpack_words
from .stream import PassiveGroup, StallPattern, StreamDriver, StreamMonitor, start_clock

PERIOD_NS = 10


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


@cocotb.test()
async def network(dut):
    """Drive frames, compare every output word (and probed layer words) bit-exactly."""
    job, jdir = _load_job()
    t_wall = time.perf_counter()
    period = start_clock(dut, PERIOD_NS)
    images = np.load(jdir / job["images"])
    ppb = job.get("pixels_per_beat", 1)
    scen = job.get("scenario", "frames")
    in_stall = StallPattern(job.get("stall_in", 0.0), seed=job.get("seed", 0) * 2 + 1,
                            burst=job.get("burst", 1))
    out_stall = StallPattern(job.get("stall_out", 0.0), seed=job.get("seed", 0) * 2 + 2,
                             burst=job.get("burst", 1))

    drv = StreamDriver(dut, job.get("input", "i"), period, stalls=in_stall)
    dut.rst.value = 1

    # Which frames are compared: all, or (reset scenario) the ones after the reset.
    n_frames = images.shape[0]
    compared = list(range(n_frames)) if scen == "frames" else list(range(1, n_frames))

    streams = [job["output"]] + job.get("probes", [])
    boards: list[Scoreboard] = []
    monitors: list[StreamMonitor] = []
    watch = None
    for k, s in enumerate(streams):
        exp = np.load(jdir / s["expected"])
        sb = Scoreboard(s["layer"], _layout(s["layout"]), [exp[f] for f in compared])
        boards.append(sb)

    def make_cb(sb):
        def cb(t):
            if armed[0]:
                sb.push(t.word, t.cycle)
                watch.check()
        return cb

    armed = [scen == "frames"]
    watch = _Watch(boards, len(compared))
    for k, (s, sb) in enumerate(zip(streams, boards)):
        passive = k > 0
        mon = StreamMonitor(dut, s["prefix"], period, stalls=out_stall if k == 0 else None,
                            passive=passive, callback=make_cb(sb))
        monitors.append(mon)

    # reset, then start the agents
    edge = RisingEdge(dut.clk)
    for _ in range(3):
        await edge
    dut.rst.value = 0
    await edge
    cocotb.start_soon(drv.run())
    cocotb.start_soon(monitors[0].run())
    cocotb.start_soon(PassiveGroup(monitors[1:]).run())

    beats = [pack_pixels(images[f], ppb) for f in range(n_frames)]
    beats_per_frame = len(beats[0])
    frame_in_cycles: list[int] = []
    t0_cycle = int(get_sim_time("step")) // period
    reset_cycle = None

    if scen == "reset":
        at = job.get("reset_after") or max(1, beats_per_frame // 2)
        drv.send(beats[0])
        while len(drv.sent) < at:
            await edge
        # mid-frame: assert reset for a few cycles with the input idle
        drv.clear()
        drv.enabled = False
        dut.rst.value = 1
        reset_cycle = int(get_sim_time("step")) // period
        for _ in range(job.get("reset_cycles", 3)):
            await edge
        dut.rst.value = 0
        for mon in monitors:
            mon.clear()
        armed[0] = True
        drv.sent.clear()
        drv.enabled = True
        await edge
    for f in compared:
        drv.send(beats[f])

    max_cycles = int(job.get("max_cycles", 10_000_000))
    timeout = Timer(max_cycles * PERIOD_NS, unit="ns")
    await First(watch.done.wait(), timeout)
    # a few more cycles so that an extra (unexpected) word would be seen
    for _ in range(job.get("drain_cycles", 8)):
        await edge
    for sb in boards:
        sb.finish()
    end_cycle = int(get_sim_time("step")) // period

    sent = drv.sent
    frame_in_cycles = [sent[i * beats_per_frame] for i in range(len(compared))
                       if i * beats_per_frame < len(sent)]
    frame_in_last = [sent[(i + 1) * beats_per_frame - 1] for i in range(len(compared))
                     if (i + 1) * beats_per_frame - 1 < len(sent)]
    report = {
        "scenario": scen, "frames": len(compared), "reset_cycle": reset_cycle,
        "start_cycle": t0_cycle, "end_cycle": end_cycle,
        "timed_out": not watch.done.is_set(), "max_cycles": max_cycles,
        "input_beats": len(sent), "beats_per_frame": beats_per_frame,
        "frame_first_input": frame_in_cycles, "frame_last_input": frame_in_last,
        "scoreboards": [sb.to_dict() for sb in boards],
        "wall_s": time.perf_counter() - t_wall,
    }
    # the captured output stream, decoded: rtl_output.npy [frames, H, W, C] (flat if partial)
    out_lay = _layout(streams[0]["layout"])
    vals, _ = unpack_words([t.word for t in monitors[0].transfers], out_lay)
    exp0 = np.load(jdir / streams[0]["expected"])
    per_frame = int(np.prod(exp0.shape[1:]))
    flat = vals.reshape(-1)
    if per_frame and flat.size % per_frame == 0:
        flat = flat.reshape((-1,) + exp0.shape[1:])
    np.save(jdir / "rtl_output.npy", flat)
    tmp = jdir / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, jdir / "report.json")
    bad = [sb.summary() for sb in boards if not sb.ok]
    assert not report["timed_out"] or bad, (
        f"timed out after {max_cycles} cycles; "
        + "; ".join(f"{sb.layer}: {sb.frame} frame(s), {sb.word} words" for sb in boards))
    assert not bad, "\n".join(bad)

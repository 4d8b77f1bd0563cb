"""cocotb unit benches (window unit, MVTU, max-pool): run inside the simulator by
:func:`dupnet.sim.units.run_unit_bench`.

The simulated top is a wrapper (:func:`dupnet.sim.units.wrapper_component`) holding several
*variants* of one unit (different geometry, duplication factors and folding), variant ``k``
with stream ports ``v<k>_i__*`` / ``v<k>_o__*`` — one Verilator build covers a whole matrix.
The job (``$DUPNET_SIM_JOB``) lists the variants; :func:`unit` is parametrized with
``cocotb.parametrize`` over the variant (geometry / dup / folding) and the stall pattern, and
for each combination drives the variant's input frames, compares every output word with the
golden tensors through a :class:`~dupnet.sim.scoreboard.Scoreboard`, and writes
``report_<variant>_<stall>.json``.
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

from ..files import atomic_write_text
from dupnet.hw.stream_layout import WordLayout

from .scoreboard import Scoreboard
from .stream import StallPattern, StreamDriver, StreamMonitor, start_clock

PERIOD_NS = 10

_JOB_PATH = os.environ.get("DUPNET_SIM_JOB")
_JOB = json.loads(Path(_JOB_PATH).read_text()) if _JOB_PATH else {"variants": [], "stalls": []}
_VARIANTS = [v["name"] for v in _JOB["variants"]] or ["none"]
_STALLS = [s["name"] for s in _JOB.get("stalls", [])] or ["none"]


@cocotb.test()
@cocotb.parametrize(variant=_VARIANTS, stall=_STALLS)
async def unit(dut, variant: str, stall: str):
    """One unit variant under one stall pattern: every output word compared."""
    jdir = Path(_JOB_PATH).parent
    v = next(x for x in _JOB["variants"] if x["name"] == variant)
    st = next(x for x in _JOB["stalls"] if x["name"] == stall)
    t_wall = time.perf_counter()
    period = start_clock(dut, PERIOD_NS)
    seed = int(st.get("seed", 0))
    drv = StreamDriver(dut, v["in_prefix"], period,
                       stalls=StallPattern(st["p_in"], seed=seed * 2 + 1, burst=st.get("burst", 1)))
    data = np.load(jdir / v["data"])
    exp = data["expected"]
    lay = WordLayout(**v["layout"])
    sb = Scoreboard(v["layer"], lay, [exp[f] for f in range(exp.shape[0])])
    done = Event()

    def cb(t):
        sb.push(t.word, t.cycle)
        if sb.frame >= exp.shape[0] or sb.errors:
            done.set()

    mon = StreamMonitor(dut, v["out_prefix"], period, callback=cb,
                        stalls=StallPattern(st["p_out"], seed=seed * 2 + 2,
                                            burst=st.get("burst", 1)))
    edge = RisingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(3):
        await edge
    dut.rst.value = 0
    await edge
    cocotb.start_soon(drv.run())
    cocotb.start_soon(mon.run())
    drv.send(int(x, 16) for x in json.loads((jdir / v["in_words"]).read_text()))
    max_cycles = int(v.get("max_cycles", 1_000_000))
    await First(done.wait(), Timer(max_cycles * PERIOD_NS, unit="ns"))
    for _ in range(8):
        await edge
    sb.finish()
    rep = {"variant": variant, "stall": stall, "scoreboard": sb.to_dict(),
           "input_beats": len(drv.sent), "first_input": drv.sent[:1],
           "cycles": int(get_sim_time("step")) // period, "timed_out": not done.is_set(),
           "wall_s": time.perf_counter() - t_wall}
    atomic_write_text(jdir / f"report_{variant}_{stall}.json", json.dumps(rep, indent=1))
    assert sb.ok, sb.summary()

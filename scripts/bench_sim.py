#!/usr/bin/env python3
"""Simulation benchmarks (docs/verification.md, "Benchmarks").

1. Full frame of ``dupnet-tinier-yolo`` (416x416x3, random artifact, the default folding of
   ``dupnet rtl``: 30 frames/s at 100 MHz) on Verilator with the C++ stream driver
   (``dupnet.sim.cppdriver``), every output word compared with the golden model: Verilator
   build time, simulation wall time, simulated cycles per wall second.  Targets: build < 5 min,
   one frame < 60 s on 2 cores.
2. The same small design (the ``sim-dup`` regression network) simulated by
   (a) Verilator + C++ driver, (b) Verilator + cocotb (the regression benches) and
   (c) Amaranth's own simulator (``amaranth.sim``, the hw unit tests' simulator): cycles per
   wall second and the ratios, all measured in this run.

Verdicts (``scripts/benchlib.py``; exit 1 when any fails): every run bit-exact (every output
word compared with the golden model, none differing, none missing); the cycles/frame of the
back-to-back runs (small: C++ driver and cocotb, 3 frames; big: 3 frames) and the first-output
latency within the analytic model's tolerances (``dupnet.sim.design.check_timing``); big:
Verilator build < 300 s and one frame < 60 s.

Usage: ``python scripts/bench_sim.py [--skip-big] [--json OUT]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from benchlib import Verdict, Verdicts, check, verdict  # noqa: E402  (scripts/ is no package)

#: stated targets of the big design
BUILD_TARGET_S = 300.0
FRAME_TARGET_S = 60.0


def _timing(tc) -> tuple[bool, str]:
    """A ``TimingCheck`` as (ok, text): not ok when cycles/frame could not be measured (a run
    that stopped early verified no cycles)."""
    measured = tc.measured_frame is not None
    return tc.ok and measured, str(tc) + ("" if measured else " -- cycles/frame not measured")


def _exact(name: str, ok: bool, compared: int, errors: int | None) -> Verdict:
    err = "" if errors is None else f", {errors:,} error(s)"
    return check(f"sim {name} bit-exact", ok and compared > 0,
                 f"{compared:,} values compared{err}" + ("" if compared else
                                                          " (nothing compared)"))


def verdicts(out: dict) -> list[Verdict]:
    """The verdicts of the figures :func:`main` collects (``small`` and maybe ``tinier_yolo``)."""
    vs = []
    s = out.get("small")
    if s is not None:
        vs += [_exact("small Verilator + C++ driver", s["cpp_bit_exact"], s["cpp_compared"],
                      s["cpp_errors"]),
               _exact("small Verilator + cocotb", s["cocotb_bit_exact"], s["cocotb_compared"],
                      s["cocotb_errors"]),
               _exact("small Amaranth sim", s["amaranth_bit_exact"], s["amaranth_compared"],
                      s["amaranth_errors"]),
               check("sim small C++ driver cycles vs analytic", s["cpp_timing_ok"],
                     s["cpp_timing"]),
               check("sim small cocotb cycles vs analytic", s["cocotb_timing_ok"],
                     s["cocotb_timing"])]
    b = out.get("tinier_yolo")
    if b is not None:
        vs += [_exact("tinier-yolo 1 frame", b["bit_exact"], b["values_compared"], b["errors"]),
               _exact("tinier-yolo 3 frames", b["three_frames_bit_exact"],
                      b["three_frames_values_compared"], b["three_frames_errors"]),
               check("sim tinier-yolo 3 frames cycles vs analytic", b["timing_ok"],
                     b["timing_check"]),
               verdict("sim tinier-yolo Verilator build", b["build_s"], None, BUILD_TARGET_S,
                       cmp="<", unit="s"),
               verdict("sim tinier-yolo one frame wall", b["sim_wall_s"], None, FRAME_TARGET_S,
                       cmp="<", unit="s")]
    return vs


def _say(*a):
    print(*a, flush=True)


def bench_big(threads: int, opt: str) -> dict:
    from dupnet.hw.autofold import DEFAULT_CLOCK_HZ, DEFAULT_FPS
    from dupnet.hw.autofold import auto_folding
    from dupnet.sim.cppdriver import build_cpp_model, run_cpp
    from dupnet.sim.design import check_timing, generate_cached, network_streams
    from dupnet.sim.images import builtin_images
    from dupnet.sim.network import Timing, new_run_dir
    from dupnet.sw.config import load_config
    from dupnet.sw.random_artifact import random_artifact

    cfg = load_config("dupnet-tinier-yolo")
    art = random_artifact(cfg, seed=0, calibration_images=1)
    target = DEFAULT_CLOCK_HZ // DEFAULT_FPS
    fold = auto_folding(cfg, target_cycles=target)
    t0 = time.perf_counter()
    des = generate_cached(art, fold, log=_say)
    t_gen = time.perf_counter() - t0
    _say(f"tinier-yolo: folding {fold.layers}; Verilog {len(des.verilog) / 1e6:.1f} MB "
         f"({t_gen:.1f} s, cached after the first run)")
    t0 = time.perf_counter()
    model = build_cpp_model(des.verilog, des.top_name, des.design_hash, opt=opt,
                            threads=threads, jobs=os.cpu_count(), log=_say)
    t_build = model.stamp["build_seconds"]
    images = builtin_images(cfg, 1)
    t0 = time.perf_counter()
    out, _ = network_streams(art, fold, images)
    t_golden = time.perf_counter() - t0
    r = run_cpp(model, images, out.layer, out.layout, out.expected, new_run_dir("bench-big"),
                in_width=cfg.input_channels * cfg.input_bits)
    st = r.stats
    t = Timing(st["frame_first_input"], st["frame_first_output"], st["frame_last_output"],
               st["cycles"])
    tc = check_timing(t, des.model, frames_back_to_back=False)     # one frame: the latency
    res = {"design": "dupnet-tinier-yolo 416x416x3", "verilog_mb": len(des.verilog) / 1e6,
           "build_s": t_build, "build_reused": not model.built_now,
           "parallel_build": model.parallel_build, "sim_wall_s": r.sim_wall_s,
           "cycles": r.cycles, "cycles_per_s": r.cycles_per_second, "bit_exact": r.ok,
           "values_compared": r.scoreboard.compared, "errors": r.scoreboard.errors,
           "golden_s": t_golden,
           "analytic_cycles_per_frame": des.model["cycles_per_frame"],
           "measured_latency": t.latency, "analytic_latency": des.model["latency_cycles"],
           "timing_check": str(tc), "threads": threads, "opt": opt}
    _say(f"  build {t_build:.0f} s{' (cached)' if not model.built_now else ''} [target < 300 s]; "
         f"one frame {r.sim_wall_s:.1f} s [target < 60 s]; {r.cycles:,} cycles, "
         f"{r.cycles_per_second:,.0f} cycles/s; bit-exact: {r.ok} "
         f"({r.scoreboard.compared} values); golden model {t_golden:.1f} s")
    # steady state: 3 frames back to back, cycles/frame vs the analytic model
    imgs3 = builtin_images(cfg, 3)
    out3, _ = network_streams(art, fold, imgs3)
    r3 = run_cpp(model, imgs3, out3.layer, out3.layout, out3.expected,
                 new_run_dir("bench-big3"), in_width=cfg.input_channels * cfg.input_bits)
    st = r3.stats
    t3 = Timing(st["frame_first_input"], st["frame_first_output"], st["frame_last_output"],
                st["cycles"])
    tc3 = check_timing(t3, des.model)
    res.update({"three_frames_bit_exact": r3.ok, "three_frames_wall_s": r3.sim_wall_s,
                "three_frames_values_compared": r3.scoreboard.compared,
                "three_frames_errors": r3.scoreboard.errors,
                "measured_cycles_per_frame": t3.frame_cycles, "timing_check": _timing(tc3)[1],
                "timing_ok": _timing(tc3)[0]})
    _say(f"  3 frames back to back: bit-exact {r3.ok}, {r3.sim_wall_s:.1f} s; {tc3}")
    return res


def amaranth_run(art, fold, images, out):
    """Amaranth's simulator on the accelerator, no stalls; every output word compared with
    the golden model. Returns the finished Scoreboard, the cycles and the wall seconds."""
    from amaranth.sim import Simulator

    from dupnet.hw.stream_layout import image_beats
    from dupnet.hw.top import DupNetAccelerator
    from dupnet.sim.scoreboard import Scoreboard

    dut = DupNetAccelerator(art, fold)
    beats = [b for img in images for b in image_beats(img)]
    n_words = sum(e.size for e in out.expected) // out.layout.lanes
    got: list[int] = []
    cycles = [0]

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        k = 0
        while len(got) < n_words:
            if k < len(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, beats[k])
            else:
                ctx.set(dut.i.valid, 0)
            i_fire = k < len(beats) and ctx.get(dut.i.ready)
            o_fire = ctx.get(dut.o.valid)
            if o_fire:
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            cycles[0] += 1
            if i_fire:
                k += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    sim.run()
    am_wall = time.perf_counter() - t0
    sb = Scoreboard(out.layer, out.layout, list(out.expected))
    for w in got:
        sb.push(int(w))
    sb.finish()
    return sb, cycles[0], am_wall


def bench_small(frames: int = 3) -> dict:
    """Verilator (C++ driver, cocotb) vs Amaranth sim on the sim-dup network."""
    from dupnet.sim.cppdriver import build_cpp_model, run_cpp
    from dupnet.sim.design import (check_timing, generate_cached, network_streams,
                                   simulate_artifact)
    from dupnet.sim.images import random_images
    from dupnet.sim.network import Timing, new_run_dir
    from dupnet.sw.random_artifact import random_artifact
    from tests.sim.cases import config, folding

    cfg = config("dup")
    art = random_artifact(cfg, seed=1)
    fold = folding(cfg, "min")          # PE = SIMD = 1: many cycles per frame
    images = random_images(cfg, frames, seed=3)
    out, _ = network_streams(art, fold, images)
    des = generate_cached(art, fold)

    # (a) Verilator + C++ driver
    m = build_cpp_model(des.verilog, des.top_name, des.design_hash, log=_say)
    rc = run_cpp(m, images, out.layer, out.layout, out.expected, new_run_dir("bench-small"),
                 in_width=cfg.input_channels * 8)
    st = rc.stats
    tc_cpp = check_timing(Timing(st["frame_first_input"], st["frame_first_output"],
                                 st["frame_last_output"], st["cycles"]), des.model)
    # (b) Verilator + cocotb
    rv, _ = simulate_artifact(art, fold, images, design=des, log=_say)
    cocotb_cps = rv.cycles_per_second
    tc_cocotb = check_timing(rv.timing, des.model)

    # (c) Amaranth simulator, same design, same protocol (no stalls), every word compared
    sb, am_cycles, am_wall = amaranth_run(art, fold, images, out)
    am_cps = am_cycles / am_wall
    res = {"design": f"sim-dup network, PE=SIMD=1, {frames} frames",
           "cycles": rc.cycles, "cpp_cycles_per_s": rc.cycles_per_second,
           "cocotb_cycles_per_s": cocotb_cps, "amaranth_cycles_per_s": am_cps,
           "amaranth_bit_exact": sb.ok, "cpp_bit_exact": rc.ok, "cocotb_bit_exact": rv.ok,
           "amaranth_compared": sb.compared, "amaranth_errors": sb.errors,
           "amaranth_cycles": am_cycles,
           "cpp_compared": rc.scoreboard.compared, "cpp_errors": rc.scoreboard.errors,
           "cocotb_compared": sum(b["compared"] for b in rv.scoreboards),
           "cocotb_errors": sum(b["errors"] for b in rv.scoreboards),
           "cpp_timing_ok": _timing(tc_cpp)[0], "cpp_timing": _timing(tc_cpp)[1],
           "cocotb_timing_ok": _timing(tc_cocotb)[0], "cocotb_timing": _timing(tc_cocotb)[1],
           "ratio_cocotb_over_amaranth": cocotb_cps / am_cps,
           "ratio_cpp_over_amaranth": rc.cycles_per_second / am_cps}
    _say(f"small design ({res['design']}, {rc.cycles:,} cycles):")
    _say(f"  Verilator + C++ driver : {rc.cycles_per_second:>12,.0f} cycles/s "
         f"(bit-exact {rc.ok})")
    _say(f"  Verilator + cocotb     : {cocotb_cps:>12,.0f} cycles/s (bit-exact {rv.ok})")
    _say(f"  Amaranth simulator     : {am_cps:>12,.0f} cycles/s (bit-exact {sb.ok}; "
         f"{am_cycles:,} cycles) [baseline]")
    _say(f"  cycles vs analytic: C++ driver {res['cpp_timing']}; cocotb {res['cocotb_timing']}")
    _say(f"  ratio cocotb+Verilator / Amaranth sim = {res['ratio_cocotb_over_amaranth']:.1f}x; "
         f"C++ driver / Amaranth sim = {res['ratio_cpp_over_amaranth']:.0f}x")
    return res


def toolchain_line() -> str:
    from dupnet.sim.toolchain import find_toolchain
    return f"toolchain: {find_toolchain().describe()}; {os.cpu_count()} CPU(s)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-big", action="store_true", help="only the small-design comparison")
    ap.add_argument("--threads", type=int, default=1,
                    help="Verilator --threads for the big model (default 1)")
    ap.add_argument("--opt", default="-O1", help="OPT_FAST for the big model (default -O1)")
    ap.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    args = ap.parse_args(argv)
    _say(toolchain_line())
    out = {"small": bench_small()}
    if not args.skip_big:
        out["tinier_yolo"] = bench_big(args.threads, args.opt)
    if args.json:
        from dupnet.files import atomic_write_text
        atomic_write_text(args.json, json.dumps(out, indent=1))
    vs = Verdicts()
    vs.extend(verdicts(out))
    return vs.exit_code()


if __name__ == "__main__":
    sys.exit(main())

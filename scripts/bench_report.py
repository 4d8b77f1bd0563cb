#!/usr/bin/env python3
"""Benchmark of the FPGA budget report (dupnet.hw.budget).

1. Analytic vs measured LUT and BRAM for dupnet-demo and dupnet-tinier-yolo (random
   artifacts, the `dupnet rtl` default folding) on all three targets. Target: calibrated
   analytic error within 15%. Printed beside the baseline measured in the same run: the
   uncalibrated model (raw LUT6 ``lut_estimate`` and FF estimate; the memory rule as calibrated).
2. Report time for dupnet-demo on three targets: cold (empty cache) and cached.

``--calibrate`` fits the calibration coefficients (per family: NNLS of the per-layer measured
LUTs on the model's features; the FF scale; the block cost that best reproduces the measured
block RAMs) and
writes ``hw/budget/calibration.toml``; the errors are then printed again with it.

usage: .venv/bin/python scripts/bench_report.py [--calibrate] [--configs dupnet-demo,...]
       [--targets all] [--cache-dir DIR] [--skip-timing] [--no-pnr]
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

from dupnet.hw.budget.calibration import (fit_ff_scale, fit_lut_coefficients,
                                          fit_memory_cost, layer_features, load_calibration,
                                          write_calibration)
from dupnet.hw.budget.devices import parse_targets
from dupnet.hw.budget.report import build_report, calibrated_totals, design_input_from_generated
from dupnet.hw.autofold import auto_folding
from dupnet.hw.generate import generate_verilog
from dupnet.sw.config import load_config, network_geometry
from dupnet.sw.random_artifact import random_artifact

DEFAULT_CYCLES = 100_000_000 // 30      # `dupnet rtl` default: 30 frames/s at 100 MHz


def design_for(name: str):
    cfg = load_config(name)
    art = random_artifact(cfg, seed=0)
    folding = auto_folding(cfg, target_cycles=DEFAULT_CYCLES)
    gen = generate_verilog(art, folding)
    return design_input_from_generated(gen, art, gen.folding)


def progress(msg: str) -> None:
    if msg.endswith("cached") or " done " in msg or "fmax" in msg or "failed" in msg:
        print(f"    {msg}", file=sys.stderr, flush=True)


def errors_table(reports: dict[str, dict], calib: dict, label: str) -> list[float]:
    """Print calibrated (or raw) analytic vs measured totals; returns the |errors| in %."""
    print(f"\n{label}")
    print(f"{'design':<20} {'target':<12} {'LUT est':>8} {'LUT meas':>8} {'err':>7}   "
          f"{'BRAM est':>8} {'BRAM meas':>9} {'err':>7}   {'FF est':>7} {'FF meas':>7} "
          f"{'err':>7}")
    errs = []
    for name, rep in reports.items():
        design = rep["_design"]
        geoms = {g.name: g for g in network_geometry(design.config)}
        for t in rep["targets"]:
            dev = rep["_devices"][t["name"]]
            tot, _ = calibrated_totals(design.model, geoms, dev, calib)
            lut, bram, ff = tot["lut"], tot["bram"], tot["ff"]
            m = t["synth"]["resources"]
            el = 100 * (lut - m["lut"]) / m["lut"]
            eb = 100 * (bram - m["bram"]) / m["bram"] if m["bram"] else (0.0 if bram == 0
                                                                          else float("inf"))
            ef = 100 * (ff - m["ff"]) / m["ff"]
            errs += [abs(el), abs(eb)]          # the target: LUT and BRAM (FF printed)
            print(f"{name:<20} {t['name']:<12} {lut:>8.0f} {m['lut']:>8.0f} {el:>+6.1f}%   "
                  f"{bram:>8.1f} {m['bram']:>9.1f} {eb:>+6.1f}%   {ff:>7.0f} {m['ff']:>7.0f} "
                  f"{ef:>+6.1f}%")
    return errs


def raw_baseline(calib: dict) -> dict:
    """The uncalibrated model: LUT = lut_estimate (LUT6), unit scales, default costs."""
    base = copy.deepcopy(calib)
    for fam in ("ice40", "ecp5", "xc7"):
        if fam in base:
            base[fam].update(logic=1.0, mux_logic=1.0, pool_logic=1.0, rom_lut_bits=0.0,
                             ram_lut_bits=0.0, const=0.0, ff=1.0)
    return base


def calibrate(reports: dict[str, dict], calib: dict, log=print) -> dict:
    new = copy.deepcopy(calib)
    fams: dict[str, dict[str, list]] = {}
    for name, rep in reports.items():
        design = rep["_design"]
        geoms = {g.name: g for g in network_geometry(design.config)}
        for t in rep["targets"]:
            dev = rep["_devices"][t["name"]]
            f = fams.setdefault(dev.family.name, {"lut": [], "mem": [], "dev": dev})
            for l, row in zip(design.model["layers"], t["layers"]):
                if row["lut_measured"] is None:
                    continue
                f["mem"].append((l, geoms.get(l["name"]), dev, row["bram_measured"]))
    for fam, f in fams.items():
        cost, ram_cost, err = fit_memory_cost(f["mem"], new[fam])
        new[fam]["block_cost"] = float(cost)
        new[fam]["logic_cost_ram"] = float(ram_cost)
        log(f"  {fam}: block_cost {cost}, logic_cost_ram {ram_cost:.4g} (total |block error| "
              f"{err:g} over {len(f['mem'])} layers)")
        samples = []
        for l, g, dev, _ in f["mem"]:
            feats, _ = layer_features(l, g, dev, new[fam])
            samples.append((feats, None))
        # measured LUTs per layer, in the same order
        meas = []
        for name, rep in reports.items():
            for t in rep["targets"]:
                if rep["_devices"][t["name"]].family.name == fam:
                    meas += [row["lut_measured"] for row in t["layers"]
                             if row["lut_measured"] is not None]
        coefs, rel = fit_lut_coefficients([(s[0], m) for s, m in zip(samples, meas)])
        new[fam].update(coefs)
        ff_pairs = [(float(l["ff_estimate"]), row["ff_measured"])
                    for name, rep in reports.items() for t in rep["targets"]
                    if rep["_devices"][t["name"]].family.name == fam
                    for l, row in zip(rep["_design"].model["layers"], t["layers"])
                    if row["ff_measured"] is not None]
        ff_scale, ff_rel = fit_ff_scale(ff_pairs)
        new[fam]["ff"] = ff_scale
        log(f"  {fam}: FF scale {ff_scale:.4g} (mean per-layer |error| {100 * ff_rel:.1f}%)")
        log(f"  {fam}: LUT coefficients " + ", ".join(f"{k}={v:.4g}" for k, v in
                                                          coefs.items())
              + f" (mean per-layer |error| {100 * rel:.1f}%)")
    new.setdefault("meta", {})
    new["meta"]["source"] = (f"fitted by scripts/bench_report.py --calibrate on "
                             f"{', '.join(reports)} (random artifacts, default folding), "
                             f"{time.strftime('%Y-%m-%d')}")
    new["meta"]["designs"] = list(reports)
    return new


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="dupnet-demo,dupnet-tinier-yolo")
    ap.add_argument("--targets", default="ice40-up5k,ecp5-25f,artix7-35t")
    ap.add_argument("--cache-dir", default=".cache/report")
    ap.add_argument("--calibrate", action="store_true",
                    help="fit and write hw/budget/calibration.toml")
    ap.add_argument("--skip-timing", action="store_true", help="skip the cold/cached timing")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-pnr", action="store_true",
                    help="synthesis only (calibration needs no place-and-route)")
    args = ap.parse_args()
    devices = parse_targets(args.targets)
    calib = load_calibration()
    reports: dict[str, dict] = {}
    for name in args.configs.split(","):
        t0 = time.monotonic()
        design = design_for(name)
        print(f"{name}: generated {len(design.source.verilog) // 1024} KiB of Verilog in "
              f"{time.monotonic() - t0:.1f} s; synthesizing for {args.targets}", flush=True)
        t0 = time.monotonic()
        rep = build_report(design, devices, cache_dir=Path(args.cache_dir), jobs=args.jobs,
                           progress=progress, calibration=calib, pnr=not args.no_pnr)
        rep["_design"], rep["_devices"] = design, {d.name: d for d in devices}
        reports[name] = rep
        print(f"  report in {time.monotonic() - t0:.1f} s", flush=True)
        for t in rep["targets"]:
            print(f"  {t['name']:<12} fits={t['fit']['fits']} LUT {t['synth']['resources']['lut']:.0f}"
                  f" FF {t['synth']['resources']['ff']:.0f} BRAM "
                  f"{t['synth']['resources']['bram']:g} fmax {t['fmax_mhz']} MHz")
    base_errs = errors_table(reports, raw_baseline(calib),
                             "baseline: uncalibrated model (raw LUT6 lut_estimate)")
    errs = errors_table(reports, calib, "calibrated model (calibration.toml as loaded)")
    if args.calibrate:
        print("\ncalibrating:")
        calib = calibrate(reports, calib)
        path = write_calibration(calib)
        print(f"  wrote {path}")
        errs = errors_table(reports, calib, "calibrated model (new coefficients, in-sample)")
        if len(reports) > 1:
            for held in reports:
                rest = {k: v for k, v in reports.items() if k != held}
                ho = calibrate(rest, calib, log=lambda *a: None)
                errors_table({held: reports[held]}, ho,
                             f"out of sample: {held} with coefficients fitted on "
                             f"{', '.join(rest)} only")
    ok = max(errs) <= 15.0
    print(f"\nmax |error| calibrated {max(errs):.1f}% (baseline {max(base_errs):.1f}%): "
          f"{'within' if ok else 'NOT within'} the 15% target (LUT and BRAM, in-sample)")

    if not args.skip_timing:
        design = reports.get("dupnet-demo", {}).get("_design") or design_for("dupnet-demo")
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            cache = Path(tmp) / "cache"
            t0 = time.monotonic()
            build_report(design, devices, cache_dir=cache, jobs=args.jobs, progress=progress)
            cold = time.monotonic() - t0
            t0 = time.monotonic()
            build_report(design, devices, cache_dir=cache, jobs=args.jobs)
            warm = time.monotonic() - t0
        print(f"\nreport time, dupnet-demo on {len(devices)} targets: cold {cold:.1f} s, "
              f"cached {warm:.2f} s ({cold / warm:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

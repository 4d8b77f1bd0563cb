#!/usr/bin/env python3
"""Benchmark of the FPGA budget report (dupnet.hw.budget).

1. Analytic vs measured LUT, BRAM and FF on all three targets (Yosys, flat synthesis).
   **The verdict is out of sample**: designs the calibration (``hw/budget/calibration.toml``)
   never saw (:data:`OOS_DESIGNS`): ``bench-oos-variant``, a config that is not shipped
   (``scripts/bench_designs/bench-oos-variant.toml``: other widths, w_dup 3/4/8, 48x48 input)
   at the default folding, and ``dupnet-demo`` at a LUT-budget folding (not the default).
   Target: calibrated analytic LUT and BRAM within 15% (:data:`TARGET_PCT`) on every target of
   both; printed beside the baseline measured in the same run, the uncalibrated model (raw
   LUT6 ``lut_estimate`` and FF estimate; the memory rule as calibrated). Exit 1 when missed.
   The in-sample figures (``--configs``, default dupnet-demo and dupnet-tinier-yolo at the
   ``dupnet rtl`` default folding, the designs the calibration is fitted on) are printed as
   information only.
2. Report time for dupnet-demo on three targets: cold (empty cache) and cached (information).

``--calibrate`` fits the calibration coefficients on the ``--configs`` designs only (per
family: NNLS of the per-layer measured LUTs on the model's features; the FF scale; the block
cost that best reproduces the measured block RAMs) and writes ``hw/budget/calibration.toml``
(``--no-write``: fit and judge, write nothing); the out-of-sample verdict then uses the new
coefficients, and the in-sample leave-one-design-out errors are printed too.

usage: .venv/bin/python scripts/bench_report.py [--calibrate [--no-write]]
       [--configs dupnet-demo,...] [--targets all] [--cache-dir DIR] [--skip-timing] [--no-pnr]
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path

from dupnet.hw.budget.calibration import (fit_ff_scale, fit_lut_coefficients,
                                          fit_memory_cost, layer_features, load_calibration,
                                          write_calibration)
from dupnet.hw.budget.devices import parse_targets
from dupnet.hw.budget.report import (DesignInput, build_report, calibrated_totals,
                                     design_input_from_generated)
from dupnet.hw.autofold import auto_folding
from dupnet.hw.generate import generate_verilog
from dupnet.sw.config import load_config, network_geometry
from dupnet.sw.random_artifact import random_artifact

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import Verdict, Verdicts, check, verdict  # noqa: E402  (scripts/ is no package)

DEFAULT_CYCLES = 100_000_000 // 30      # `dupnet rtl` default: 30 frames/s at 100 MHz
DEFAULT_FOLDING = {"target_cycles": DEFAULT_CYCLES}
#: the stated target: calibrated LUT and BRAM totals within this many percent
TARGET_PCT = 15.0
#: designs the calibration never saw: label -> (config name or path, auto_folding arguments)
OOS_DESIGNS: dict[str, tuple[str, dict[str, int]]] = {
    "bench-oos-variant": (str(HERE / "bench_designs" / "bench-oos-variant.toml"),
                          DEFAULT_FOLDING),
    "dupnet-demo@lut-budget-5000": ("dupnet-demo", {"lut_budget": 5000}),
}


def design_for(name: str, folding: dict[str, int] | None = None) -> DesignInput:
    """A random artifact of config ``name`` (a shipped name or a path) at ``auto_folding(cfg,
    **folding)`` (default: the `dupnet rtl` default folding), generated and wrapped."""
    cfg = load_config(name)
    art = random_artifact(cfg, seed=0)
    fold = auto_folding(cfg, **(folding or DEFAULT_FOLDING))
    gen = generate_verilog(art, fold)
    return design_input_from_generated(gen, art, gen.folding)


def progress(msg: str) -> None:
    if msg.endswith("cached") or " done " in msg or "fmax" in msg or "failed" in msg:
        print(f"    {msg}", file=sys.stderr, flush=True)


def pct_error(est: float, meas: float) -> float:
    """Signed error of an estimate in percent of the measured figure; a measured 0 gives 0 when
    the estimate is 0 too, else infinity (never a pass)."""
    if meas:
        return 100.0 * (est - meas) / meas
    return 0.0 if est == 0 else math.copysign(math.inf, est)


def errors_table(reports: dict[str, dict], calib: dict, label: str) -> list[dict]:
    """Print calibrated (or raw) analytic vs measured totals; one row per design and target
    with the signed errors in % (``lut_err``, ``bram_err``, ``ff_err``)."""
    print(f"\n{label}")
    print(f"{'design':<28} {'target':<12} {'LUT est':>8} {'LUT meas':>8} {'err':>7}   "
          f"{'BRAM est':>8} {'BRAM meas':>9} {'err':>7}   {'FF est':>7} {'FF meas':>7} "
          f"{'err':>7}")
    rows = []
    for name, rep in reports.items():
        design = rep["_design"]
        geoms = {g.name: g for g in network_geometry(design.config)}
        for t in rep["targets"]:
            dev = rep["_devices"][t["name"]]
            tot, _ = calibrated_totals(design.model, geoms, dev, calib)
            lut, bram, ff = tot["lut"], tot["bram"], tot["ff"]
            m = t["synth"]["resources"]
            row = {"design": name, "target": t["name"], "lut_err": pct_error(lut, m["lut"]),
                   "bram_err": pct_error(bram, m["bram"]), "ff_err": pct_error(ff, m["ff"])}
            rows.append(row)
            print(f"{name:<28} {t['name']:<12} {lut:>8.0f} {m['lut']:>8.0f} "
                  f"{row['lut_err']:>+6.1f}%   {bram:>8.1f} {m['bram']:>9.1f} "
                  f"{row['bram_err']:>+6.1f}%   {ff:>7.0f} {m['ff']:>7.0f} {row['ff_err']:>+6.1f}%")
    return rows


def max_abs(rows: list[dict], key: str) -> float:
    """Largest |error| of ``key`` over the rows (NaN when there are none: never a pass)."""
    return max((abs(r[key]) for r in rows), default=math.nan)


def verdicts(oos: list[dict], oos_base: list[dict]) -> list[Verdict]:
    """THE verdict of the report benchmark: max |error| of the calibrated LUT and BRAM totals
    on the out-of-sample designs within :data:`TARGET_PCT`, beside the uncalibrated model's
    max |error| on the same designs (rows as :func:`errors_table` returns them)."""
    out = []
    for key, what in (("lut_err", "LUT"), ("bram_err", "BRAM")):
        worst = max((r for r in oos), key=lambda r: abs(r[key]), default=None)
        where = f" ({worst['design']} on {worst['target']})" if worst else ""
        out.append(verdict(f"report out-of-sample {what} max |error|{where}",
                           max_abs(oos, key), max_abs(oos_base, key), TARGET_PCT, cmp="<=",
                           unit="%", baseline_name="uncalibrated"))
    return out


def unseen_check(calib: dict, oos: dict[str, tuple[str, dict]]) -> Verdict:
    """The out-of-sample designs must not be among those the calibration was fitted on
    (``meta.designs``: config names, each at the default folding); a calibration that records
    no designs fails (what it saw cannot be told)."""
    fitted = set(calib.get("meta", {}).get("designs", []))
    seen = [label for label, (cfg, folding) in oos.items()
            if load_config(cfg).name in fitted and folding == DEFAULT_FOLDING]
    name = "report out-of-sample designs unseen by the calibration"
    if not fitted:
        return check(name, False, "the calibration records no designs (meta.designs): "
                                  "cannot tell which designs it was fitted on")
    return check(name, not seen,
                 f"fitted on {', '.join(sorted(fitted))} at the default folding; judged on "
                 f"{', '.join(oos)}" + (f"; SEEN: {', '.join(seen)}" if seen else ""))


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


def judge(calib: dict, oos_rows: list[dict], oos_base: list[dict]) -> int:
    """Print the verdicts (designs unseen, LUT and BRAM out of sample); the exit status."""
    vs = Verdicts()
    vs.add(unseen_check(calib, OOS_DESIGNS))
    vs.extend(verdicts(oos_rows, oos_base))
    return vs.exit_code()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="dupnet-demo,dupnet-tinier-yolo",
                    help="in-sample designs (information; --calibrate fits on these); '' for "
                         "none")
    ap.add_argument("--targets", default="ice40-up5k,ecp5-25f,artix7-35t")
    ap.add_argument("--cache-dir", default=".cache/report")
    ap.add_argument("--calibrate", action="store_true",
                    help="fit and write hw/budget/calibration.toml")
    ap.add_argument("--no-write", action="store_true",
                    help="with --calibrate: fit and judge, leave calibration.toml as it is")
    ap.add_argument("--skip-timing", action="store_true", help="skip the cold/cached timing")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-pnr", action="store_true",
                    help="synthesis only (calibration needs no place-and-route)")
    args = ap.parse_args(argv)
    args.config_names = [n.strip() for n in args.configs.split(",") if n.strip()]
    if args.calibrate and not args.config_names:
        ap.error("--calibrate needs in-sample designs (--configs)")
    return args


def synth_reports(designs: list[tuple[str | None, str, dict | None]], devices: list, args,
                  calib: dict, per_module: bool, pnr: bool) -> dict[str, dict]:
    """Generate and synthesize (cached) each ``(label, config, folding)``; label -> report with
    ``_design`` and ``_devices`` attached (a label of None: the config's name)."""
    reports: dict[str, dict] = {}
    for label, name, folding in designs:
        t0 = time.monotonic()
        design = design_for(name, folding)
        label = label or design.name
        print(f"{label}: generated {len(design.source.verilog) // 1024} KiB of Verilog in "
              f"{time.monotonic() - t0:.1f} s (folding {design.folding}); synthesizing for "
              f"{args.targets}", flush=True)
        t0 = time.monotonic()
        rep = build_report(design, devices, cache_dir=Path(args.cache_dir), jobs=args.jobs,
                           progress=progress, calibration=calib, pnr=pnr,
                           per_module=per_module)
        rep["_design"], rep["_devices"] = design, {d.name: d for d in devices}
        reports[label] = rep
        print(f"  report in {time.monotonic() - t0:.1f} s", flush=True)
        for t in rep["targets"]:
            r = t["synth"]["resources"]
            print(f"  {t['name']:<12} fits={t['fit']['fits']} LUT {r['lut']:.0f} FF "
                  f"{r['ff']:.0f} BRAM {r['bram']:g} fmax {t['fmax_mhz']} MHz")
    return reports


def in_sample(reports: dict[str, dict], calib: dict, args) -> dict:
    """Print the in-sample figures (information); with --calibrate fit (and write) new
    coefficients on these designs. Returns the calibration the verdict uses."""
    if not reports:
        return calib
    errors_table(reports, raw_baseline(calib), "in sample (information): baseline, the "
                 "uncalibrated model (raw LUT6 lut_estimate)")
    rows = errors_table(reports, calib, "in sample (information): calibrated model "
                        "(calibration.toml as loaded)")
    if args.calibrate:
        print(f"\ncalibrating on {', '.join(reports)}:")
        calib = calibrate(reports, calib)
        if args.no_write:
            print("  --no-write: calibration.toml left as it is")
        else:
            print(f"  wrote {write_calibration(calib)}")
        rows = errors_table(reports, calib, "in sample (information): calibrated model, new "
                            "coefficients")
        if len(reports) > 1:
            for held in reports:
                rest = {k: v for k, v in reports.items() if k != held}
                ho = calibrate(rest, calib, log=lambda *a: None)
                errors_table({held: reports[held]}, ho,
                             f"held out (information): {held} with coefficients fitted on "
                             f"{', '.join(rest)} only")
    print(f"\nin sample (information, not the verdict): max |error| LUT "
          f"{max_abs(rows, 'lut_err'):.1f}%, BRAM {max_abs(rows, 'bram_err'):.1f}%")
    return calib


def report_timing(reports: dict[str, dict], devices: list, args) -> None:
    """Cold (empty cache) and cached report time of dupnet-demo (information)."""
    design = reports.get("dupnet-demo", {}).get("_design") or design_for("dupnet-demo")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        cache = Path(tmp) / "cache"
        t0 = time.monotonic()
        build_report(design, devices, cache_dir=cache, jobs=args.jobs, progress=progress)
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        build_report(design, devices, cache_dir=cache, jobs=args.jobs)
        warm = time.monotonic() - t0
    print(f"\nreport time, dupnet-demo on {len(devices)} targets (information): cold "
          f"{cold:.1f} s, cached {warm:.2f} s ({cold / warm:.0f}x)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    devices = parse_targets(args.targets)
    calib = load_calibration()
    reports = synth_reports([(None, n, None) for n in args.config_names], devices, args, calib,
                            per_module=True, pnr=not args.no_pnr)
    calib = in_sample(reports, calib, args)
    print(f"\nout of sample (the verdict): {', '.join(OOS_DESIGNS)}; flat synthesis only "
          f"(the totals are judged; no place-and-route, no per-module runs)", flush=True)
    oos = synth_reports([(k, *v) for k, v in OOS_DESIGNS.items()], devices, args, calib,
                        per_module=False, pnr=False)
    oos_base = errors_table(oos, raw_baseline(calib), "out of sample: baseline, the "
                            "uncalibrated model (raw LUT6 lut_estimate)")
    oos_rows = errors_table(oos, calib, "out of sample: calibrated model (the verdict)")
    rc = judge(calib, oos_rows, oos_base)
    if not args.skip_timing:
        report_timing(reports, devices, args)
    return rc


if __name__ == "__main__":
    sys.exit(main())

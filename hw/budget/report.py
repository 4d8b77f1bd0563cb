"""Build the budget report of one design for several target FPGAs (plain JSON-able data).

:func:`build_report` runs (or takes from the cache) the synthesis and place-and-route of every
target, puts the calibrated analytic model beside the measured figures, and says what would
fit where the design does not. :mod:`.render` turns the result into Markdown, HTML and PNGs.
"""
from __future__ import annotations

import concurrent.futures as cf
import gzip
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dupnet.hw.analytic import layer_model
from dupnet.hw.folded import DEFAULT_ARITH
from dupnet.hw.kinds import hw_kind
from dupnet.sw.config import NetworkConfig, network_geometry, param_geometries

from .calibration import calibrated_layer, glue_estimate, load_calibration
from .devices import RESOURCES, Device, load_devices
from .fit import fit_summary, frames_per_second, pct_error
from .parsers import parse_critical_paths, slowest_path
from .flow import (FLOW_VERSION, DesignSource, PnrRun, SynthResult, place_and_route,
                   pnr_cached, synthesize)
from .tools import tool_versions

__all__ = ["DesignInput", "build_report", "layer_of_module", "memory_savings",
           "REPORT_FORMAT", "REPORT_VERSION", "design_input_from_generated"]

REPORT_FORMAT = "dupnet-budget-report"
REPORT_VERSION = 1

#: placed-logic bel of each nextpnr family (the PnR count of the "lut" resource)
PLACED_LOGIC = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


@dataclass
class DesignInput:
    """What a report is about: the Verilog plus the analytic model of the same design.

    ``model`` is ``PipelineModel.to_json()`` (``layers`` with ``name``, ``kind``,
    ``cycles_per_frame``, ``rom_bits``, ``buffer_bits``, ``lut_estimate``, ...; a layer may
    carry an explicit ``memories`` list). ``config`` gives the layer geometry (memory shapes,
    duplication savings); hand-made test designs may leave it None."""
    source: DesignSource
    model: dict[str, Any]
    name: str = "design"
    config: NetworkConfig | None = None
    folding: dict[str, Any] | None = None
    rom_bits_instantiated: int | None = None


def design_input_from_generated(gen: Any, artifact: Any, folding: Any) -> DesignInput:
    """From ``dupnet.hw.generate.GeneratedDesign`` (verilog, top_name, design_hash, summary,
    rom_bits_instantiated)."""
    fold = folding.to_dict() if hasattr(folding, "to_dict") else dict(folding)
    summary = dict(gen.summary)
    model = summary.get("model", summary)
    return DesignInput(source=DesignSource(gen.verilog, gen.top_name, gen.design_hash),
                       model=dict(model), name=artifact.config.name,
                       config=artifact.config, folding=fold,
                       rom_bits_instantiated=getattr(gen, "rom_bits_instantiated", None))


def layer_of_module(module: str, layer_names: list[str]) -> str | None:
    """The layer a (hierarchical) module belongs to: a dotted component equal to the layer
    name or starting with ``<layer>_`` (``dupnet_top.conv1_mvtu`` -> ``conv1``); longest
    name wins."""
    parts = module.split(".")[1:] or module.split(".")
    best = None
    for part in parts:
        for name in layer_names:
            if part == name or part.startswith(name + "_"):
                if best is None or len(name) > len(best):
                    best = name
        if best is not None:
            return best
    return None


def preadd_comparison(config: NetworkConfig, folding: dict[str, Any]) -> dict[str, Any] | None:
    """Analytic LUT6 estimate of the layers with ``w_dup > 1`` with and without ``preadd`` (sum
    the inputs that share a weight bit once, before the weight is applied) at the design's
    folding and arithmetic; None when no layer shares weights or the folding is unknown."""
    arith = str(folding.get("arith", DEFAULT_ARITH))
    rows = []
    for g in network_geometry(config):
        if not hw_kind(g).foldable or g.w_dup == 1 or not isinstance(folding.get(g.name), dict):
            continue
        pe, simd = int(folding[g.name]["pe"]), int(folding[g.name]["simd"])
        on = layer_model(g, pe, simd, preadd=True, arith=arith).lut_estimate
        off = layer_model(g, pe, simd, preadd=False, arith=arith).lut_estimate
        rows.append({"layer": g.name, "w_dup": g.w_dup, "pe": pe, "simd": simd,
                     "lut_preadd": on, "lut_no_preadd": off})
    if not rows:
        return None
    on = sum(r["lut_preadd"] for r in rows)
    off = sum(r["lut_no_preadd"] for r in rows)
    return {"in_design": bool(folding.get("preadd", True)), "arith": arith, "layers": rows,
            "lut_preadd": on, "lut_no_preadd": off, "ratio": on / off if off else None}


def memory_savings(config: NetworkConfig) -> dict[str, Any]:
    """Stored unique weight bits vs the bits a non-duplicated (IFQ-style) layer needs."""
    rows = []
    for g in param_geometries(config):
        rows.append({"layer": g.name, "w_dup": g.w_dup, "x_dup": g.x_dup,
                     "unique_weight_bits": g.unique_weight_bits,
                     "weight_bits_without_dup": g.weight_bits_without_dup,
                     "saved_bits": g.weight_bits_without_dup - g.unique_weight_bits,
                     "threshold_bits": g.threshold_storage_bits})
    u = sum(r["unique_weight_bits"] for r in rows)
    n = sum(r["weight_bits_without_dup"] for r in rows)
    return {"layers": rows, "unique_weight_bits": u, "weight_bits_without_dup": n,
            "saved_bits": n - u, "ratio": (n / u) if u else None}


Progress = Callable[[str], None]


def _run_all(design: DesignSource, devices: list[Device], cache_dir: Path | None, jobs: int,
             pnr: bool, per_module: bool | set[str], seed: int, progress: Progress | None
             ) -> tuple[dict[str, SynthResult], dict[str, SynthResult], dict[str, PnrRun]]:
    flat: dict[str, SynthResult] = {}
    hier: dict[str, SynthResult] = {}
    pnrs: dict[str, PnrRun] = {}
    with tempfile.TemporaryDirectory(prefix="dupnet-report-") as tmp, \
            cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futs: dict[cf.Future, tuple[str, Device]] = {}
        nets = {d.name: Path(tmp) / f"{d.name}.pnr.json" for d in devices}
        for d in devices:
            want_net = pnr and d.has_pnr
            futs[pool.submit(synthesize, design, d, "flat", cache_dir, progress,
                             nets[d.name] if want_net else None)] = ("flat", d)
        if per_module:
            for d in devices:
                if per_module is not True and d.name not in per_module:
                    continue
                futs[pool.submit(synthesize, design, d, "hier", cache_dir, progress)] = ("hier", d)
        pending = set(futs)
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                kind, d = futs[f]
                res = f.result()
                if kind == "flat":
                    flat[d.name] = res
                    if not (pnr and d.has_pnr):
                        pnrs[d.name] = PnrRun(device=d.name, ok=False, result=None, message=(
                            "no open place-and-route for this family in this toolset "
                            "(synthesis only, no fmax)" if not d.has_pnr else
                            "place-and-route not requested"))
                        continue
                    fit = fit_summary(res.resources, d.capacity)
                    if not fit.fits:
                        pnrs[d.name] = PnrRun(device=d.name, ok=False, result=None, message=(
                            f"not placed: synthesis already exceeds the device "
                            f"({', '.join(fit.over)})"))
                        continue
                    nf = pool.submit(_netlist_and_pnr, design, d, nets[d.name], cache_dir,
                                     progress, seed)
                    futs[nf] = ("pnr", d)
                    pending.add(nf)
                elif kind == "hier":
                    hier[d.name] = res
                else:
                    pnrs[d.name] = res
    return flat, hier, pnrs


def _netlist_and_pnr(design: DesignSource, d: Device, net: Path, cache_dir: Path | None,
                     progress: Progress | None, seed: int) -> PnrRun:
    """Place and route; a flat synthesis that came from the cache wrote no netlist, so make
    one first (only when the place-and-route result is not cached either)."""
    if not net.exists() and not pnr_cached(design, d, cache_dir, seed):
        synthesize(design, d, "flat", cache_dir, progress, net, require_netlist=True)
    return place_and_route(design, d, net, cache_dir, progress, seed)


def _num(x: float | None, nd: int = 2) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return None
    return round(float(x), nd)


def build_report(design: DesignInput, devices: list[Device], cache_dir: Path | None = None,
                 jobs: int = 2, pnr: bool = True, per_module: bool | set[str] = True,
                 seed: int = 1,
                 progress: Progress | None = None, calibration: dict[str, Any] | None = None,
                 all_devices: dict[str, Device] | None = None) -> dict[str, Any]:
    """Synthesize/place ``design`` for every device and assemble the report data.

    ``per_module``: run the hierarchy-preserving synthesis (measured per-layer figures) for
    every device (True), none (False) or the named ones (a set of device names)."""
    t0 = time.monotonic()
    calib = calibration if calibration is not None else load_calibration()
    model = design.model
    layers = list(model.get("layers", []))
    names = [l["name"] for l in layers]
    geoms = {g.name: g for g in network_geometry(design.config)} if design.config else {}
    cycles = int(model.get("cycles_per_frame") or max(l["cycles_per_frame"] for l in layers))
    bottleneck = model.get("bottleneck_layer") or max(layers, key=lambda l:
                                                       l["cycles_per_frame"])["name"]
    flat, hier, pnrs = _run_all(design.source, devices, cache_dir, jobs, pnr, per_module, seed,
                                progress)
    targets = []
    for d in devices:
        targets.append(_target_report(design, d, flat[d.name], hier.get(d.name),
                                      pnrs.get(d.name), layers, names, geoms, cycles, calib,
                                      all_devices or load_devices()))
    out: dict[str, Any] = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "design": {"name": design.name, "top": design.source.top,
                   "design_hash": design.source.hash,
                   "verilog_bytes": len(design.source.verilog.encode()),
                   "folding": design.folding,
                   "rom_bits_instantiated": design.rom_bits_instantiated},
        "pipeline": {"cycles_per_frame": cycles, "bottleneck_layer": bottleneck,
                     "latency_cycles": model.get("latency_cycles"),
                     "rom_bits": model.get("rom_bits", sum(l.get("rom_bits", 0) for l in layers)),
                     "threshold_rom_bits": model.get("threshold_rom_bits"),
                     "buffer_bits": model.get("buffer_bits",
                                              sum(l.get("buffer_bits", 0) for l in layers)),
                     "lut_estimate": model.get("lut_estimate"),
                     "ff_estimate": model.get("ff_estimate")},
        "layers": [{k: l.get(k) for k in ("name", "kind", "cycles_per_frame", "rom_bits",
                                          "threshold_rom_bits", "buffer_bits", "lut_estimate",
                                          "ff_estimate", "pe", "simd")}
                   | {"bottleneck": l["name"] == bottleneck} for l in layers],
        "memory": memory_savings(design.config) if design.config else None,
        "preadd": (preadd_comparison(design.config, design.folding or {})
                   if design.config else None),
        "targets": targets,
        "calibration": {"source": calib.get("meta", {}).get("source", ""),
                        "families": {t["family"]: {k: v for k, v in
                                                   calib.get(t["family"], {}).items()}
                                     for t in targets}},
        "tools": tool_versions(),
        "flow_version": FLOW_VERSION,
        "seconds": round(time.monotonic() - t0, 2),
    }
    return out


def _target_report(design: DesignInput, d: Device, flat: SynthResult,
                   hier: SynthResult | None, prun: PnrRun | None, layers: list[dict],
                   names: list[str], geoms: dict, cycles: int, calib: dict,
                   all_devices: dict[str, Device]) -> dict[str, Any]:
    used = {r: flat.resources.get(r, 0.0) for r in RESOURCES}
    fmax = prun.result.fmax_mhz if prun and prun.ok and prun.result else None
    critical = _critical_path(prun)       # before prun.to_json(): may fill prun.result
    placed = None
    if prun and prun.ok and prun.result and d.family.name in PLACED_LOGIC:
        placed = prun.result.utilization.get(PLACED_LOGIC[d.family.name], (None, None))[0]
    fit = fit_summary(used, d.capacity)
    # analytic, calibrated, per layer; measured per layer from the hierarchical run
    measured_layers: dict[str, dict[str, float]] = {n: {r: 0.0 for r in RESOURCES}
                                                    for n in names}
    glue_measured = {r: 0.0 for r in RESOURCES}
    if hier is not None:
        for mod, res in hier.modules.items():
            mult = hier.module_instances.get(mod, 1)
            owner = layer_of_module(mod, names)
            target = measured_layers[owner] if owner else glue_measured
            for r in RESOURCES:
                target[r] += res.get(r, 0.0) * mult
    lrows = []
    est_tot, ests = calibrated_totals(design.model, geoms, d, calib)
    for l, e in zip(layers, ests):
        m = measured_layers[l["name"]] if hier is not None else None
        lrows.append({
            "name": l["name"], "kind": l["kind"],
            "lut_analytic": l.get("lut_estimate"), "lut_calibrated": _num(e.lut, 1),
            "lut_measured": m["lut"] if m else None,
            "lut_error_pct": _num(pct_error(e.lut, m["lut"])) if m else None,
            "ff_calibrated": _num(e.ff, 1), "ff_measured": m["ff"] if m else None,
            "bram_estimate": e.bram, "bram_measured": m["bram"] if m else None,
            "memories": [{"name": p.memory.name, "depth": p.memory.depth,
                          "width": p.memory.width, "rom": p.memory.rom, "where": p.where,
                          "blocks": p.blocks} for p in e.placements],
        })
    errors = {"lut_pct": _num(pct_error(est_tot["lut"], used["lut"])),
              "ff_pct": _num(pct_error(est_tot["ff"], used["ff"])),
              "bram_pct": _num(pct_error(est_tot["bram"], used["bram"])),
              "bram_blocks": _num(est_tot["bram"] - used["bram"])}
    out = {
        "name": d.name, "part": d.part, "description": d.description,
        "family": d.family.name, "lut_label": d.lut_label,
        "capacity": d.capacity, "bram_bits": d.bram_bits, "spram_bits": d.spram_bits,
        "synth": {"resources": flat.resources, "cells": flat.cells,
                  "unclassified": flat.unclassified, "seconds": flat.seconds,
                  "cached": flat.cached, "log": flat.log,
                  "hier_seconds": hier.seconds if hier else None,
                  "hier_cached": hier.cached if hier else None},
        "fit": fit.to_json(),
        "pnr": prun.to_json() if prun else None,
        "placed_logic": placed,
        "fmax_mhz": _num(fmax),
        "critical_path": critical,
        "fps": _num(frames_per_second(fmax, cycles), 1),
        "analytic": {"lut": _num(est_tot["lut"], 1), "ff": _num(est_tot["ff"], 1),
                     "bram": est_tot["bram"], "spram": est_tot["spram"]},
        "errors": errors,
        "layers": lrows,
        "glue_measured": glue_measured if hier is not None else None,
    }
    if placed is not None and placed > d.capacity["lut"]:
        out["fit"]["fits"] = False
        out["fit"]["over"] = sorted(set(out["fit"]["over"]) | {"lut"})
    out["advice"] = [] if out["fit"]["fits"] else advise(design, d, out, calib, all_devices)
    return out


def _critical_path(prun: PnrRun | None) -> dict[str, Any] | None:
    """The post-route critical path of a placed target as JSON-able data.

    Parameters
    ----------
    prun : the target's place-and-route run (None or failed: no path)

    Returns
    -------
    dict or None
        :meth:`.parsers.CriticalPath.to_json` of the slowest clock's path. A result cached
        before paths were recorded gets it from the run's stored log (``prun.log``), and keeps
        it in ``prun.result`` so that the report's ``pnr`` section agrees.
    """
    if not (prun and prun.ok and prun.result):
        return None
    res = prun.result
    if res.critical_path is None and prun.log:
        text = _read_log(prun.log)
        if text:
            res.critical_path = slowest_path(parse_critical_paths(text), res.clocks)
    return res.critical_path.to_json() if res.critical_path else None


def _read_log(path: str) -> str | None:
    """A stored tool log (gzipped when the name ends in ``.gz``); None when unreadable."""
    try:
        data = Path(path).read_bytes()
        return (gzip.decompress(data) if path.endswith(".gz") else data).decode(
            errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


def calibrated_totals(model: dict[str, Any], geoms: dict[str, Any], d: Device,
                      calib: dict[str, Any]) -> tuple[dict[str, float], list[Any]]:
    """Calibrated analytic totals (``lut``, ``ff``, ``bram``, ``spram``) of a pipeline model on
    ``d``, top-level glue included, and the per-layer estimates (``LayerEstimate``, layer
    order)."""
    ests = [calibrated_layer(l, geoms.get(l["name"]), d, calib)
            for l in model.get("layers", [])]
    gl, gf = glue_estimate(_extra(model, "lut"), _extra(model, "ff"), d, calib)
    return ({"lut": sum(e.lut for e in ests) + gl, "ff": sum(e.ff for e in ests) + gf,
             "bram": sum(e.bram for e in ests),
             # whole blocks: the stream bank's layers hold fractions of its blocks
             "spram": float(math.ceil(sum(e.spram for e in ests) - 1e-9))}, ests)


def _extra(model: dict[str, Any], what: str) -> float:
    """Top-level glue of the analytic model (total minus the layers)."""
    key = "lut_estimate" if what == "lut" else "ff_estimate"
    total = model.get(key)
    if total is None:
        return 0.0
    return max(0.0, float(total) - sum(float(l.get(key, 0)) for l in model.get("layers", [])))


def advise(design: DesignInput, d: Device, target: dict[str, Any], calib: dict[str, Any],
           all_devices: dict[str, Device]) -> list[str]:
    """What would make the design fit ``d``, from the calibrated analytic model."""
    from .advice import advise as _advise
    return _advise(design, d, target, calib, all_devices)

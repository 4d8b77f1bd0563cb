"""What would make a design fit a device: folding or resource changes, from the calibrated
analytic model (no synthesis)."""
from __future__ import annotations

import math
from typing import Any

from dupnet.sw.config import ConvGeometry, network_geometry

from .calibration import calibrated_layer
from .devices import Device

__all__ = ["advise", "estimate_on"]


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:,.1f}"


def _folding_str(layers: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{n} PE={pe} SIMD={s}" for n, (pe, s) in layers.items())


def estimate_on(model: dict[str, Any], geoms: dict[str, Any], d: Device,
                calib: dict[str, Any]) -> dict[str, float]:
    """Calibrated analytic totals (lut, ff, bram) of a pipeline model on device ``d``."""
    tot = {"lut": 0.0, "ff": 0.0, "bram": 0.0}
    for l in model["layers"]:
        e = calibrated_layer(l, geoms.get(l["name"]), d, calib)
        tot["lut"] += e.lut
        tot["ff"] += e.ff
        tot["bram"] += e.bram
    return tot


def advise(design: Any, d: Device, target: dict[str, Any], calib: dict[str, Any],
           all_devices: dict[str, Device]) -> list[str]:
    used = target["synth"]["resources"]
    cap = d.capacity
    msgs: list[str] = []
    over = target["fit"]["over"]
    for r in over:
        u = target["placed_logic"] if r == "lut" and target.get("placed_logic") else used[r]
        msgs.append(f"{r.upper()}: {_fmt(u)} used, the device has {_fmt(cap[r])} "
                    f"(over by {_fmt(u - cap[r])}).")
    cfg = design.config
    if cfg is None:
        msgs.append("No network config with this design: folding advice needs it.")
        return msgs
    from dupnet.hw.analytic import DEFAULT_ARITH, layer_model, pipeline_model
    from dupnet.hw.folding import FoldingError, auto_folding, folding_candidates
    geoms = {g.name: g for g in network_geometry(cfg)}
    preadd = bool((design.folding or {}).get("preadd", True))
    arith = str((design.folding or {}).get("arith", DEFAULT_ARITH))

    if "lut" in over or "ff" in over:
        raw_total = float(design.model.get("lut_estimate") or 0)
        ratio = (target.get("placed_logic") or used["lut"]) / raw_total if raw_total else 1.0
        budget = max(1, int(0.85 * cap["lut"] / ratio))
        try:
            f = auto_folding(cfg, lut_budget=budget, preadd=preadd, arith=arith)
            pm = pipeline_model(cfg, f)
            msgs.append(
                f"Fold more: `auto_folding(config, lut_budget={budget})` (LUT6 estimate; "
                f"{ratio:.2f} measured {d.lut_label} per estimated LUT6 on this device) gives "
                f"{_folding_str(dict(f.layers))}: about {_fmt(pm.lut_estimate * ratio)} "
                f"{d.lut_label} (85% of capacity), {pm.cycles_per_frame:,} cycles/frame "
                f"(bottleneck {pm.bottleneck_layer}).")
        except FoldingError as e:
            msgs.append(f"No folding fits the logic: {e}. A device with at least "
                        f"{_fmt(used['lut'])} {d.lut_label} is needed at this folding.")

    if "bram" in over:
        blocks_min = 0.0
        new_layers: dict[str, tuple[int, int]] = {}
        worst_cycles = 0
        for l in design.model["layers"]:
            g = geoms.get(l["name"])
            if isinstance(g, ConvGeometry):
                best = None
                for pe, simd in folding_candidates(g):
                    lm = layer_model(g, pe, simd, preadd=preadd, arith=arith).to_json()
                    b = calibrated_layer(lm, g, d, calib).bram
                    key = (b, lm["cycles_per_frame"])
                    if best is None or key < best[0]:
                        best = (key, (pe, simd))
                assert best is not None
                blocks_min += best[0][0]
                worst_cycles = max(worst_cycles, best[0][1])
                if (l.get("pe"), l.get("simd")) != best[1]:
                    new_layers[l["name"]] = best[1]
            else:
                blocks_min += calibrated_layer(l, g, d, calib).bram
                worst_cycles = max(worst_cycles, int(l["cycles_per_frame"]))
        wbits = sum(g.unique_weight_bits for g in geoms.values()
                    if isinstance(g, ConvGeometry))
        buf = sum(int(l.get("buffer_bits") or 0) for l in design.model["layers"])
        if blocks_min <= cap["bram"] and new_layers:
            msgs.append(f"Fold for memory: {_folding_str(new_layers)} (other layers as now) "
                        f"needs about {_fmt(blocks_min)} block RAMs of {_fmt(cap['bram'])} "
                        f"(fewer PE = fewer, deeper weight ROMs); the slowest layer then takes "
                        f"{worst_cycles:,} cycles/frame.")
        else:
            msgs.append(f"No folding fits the block RAM: even the fewest-block folding needs "
                        f"about {_fmt(blocks_min)} blocks of {_fmt(cap['bram'])}. The unique "
                        f"weights alone are {wbits:,} bits = "
                        f"{math.ceil(wbits / d.bram_bits)} blocks of {d.bram_bits} bits.")
        if d.spram_bits and cap["spram"]:
            spram = cap["spram"] * d.spram_bits
            msgs.append(f"SPRAM ({_fmt(cap['spram'])} x {d.spram_bits // 1024} kbit = "
                        f"{spram / 1024:,.0f} kbit) is unused: the line/row buffers "
                        f"({buf:,} bits) could live there (single-port, so two banks or a "
                        f"buffer rework), freeing block RAM; weights cannot (SPRAM has no "
                        f"initial contents: they would need a loader at boot).")
    # other devices of the list on which the calibrated estimate fits
    fits_on = []
    for other in all_devices.values():
        if other.name == d.name:
            continue
        try:
            est = estimate_on(design.model, geoms, other, calib)
        except KeyError:
            continue
        if est["lut"] <= other.capacity["lut"] and est["bram"] <= other.capacity["bram"] \
                and est["ff"] <= other.capacity["ff"]:
            fits_on.append(other.name)
    if fits_on:
        msgs.append(f"At this folding the calibrated estimate fits: {', '.join(fits_on)}.")
    return msgs

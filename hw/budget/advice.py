"""What would make a design fit a device: folding or resource changes, from the calibrated
analytic model (no synthesis)."""
from __future__ import annotations

import math
from typing import Any

from dupnet.hw.analytic import layer_model
from dupnet.hw.autofold import auto_folding
from dupnet.hw.folded import DEFAULT_ARITH, FoldedConv, FoldingError
from dupnet.hw.kinds import hw_kind
from dupnet.hw.pipeline import pipeline_model
from dupnet.sw.config import network_geometry

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


#: iCE40 UltraPlus SPRAM (SB_SPRAM256KA): 16384 words x 16 bits, single port
SPRAM_WIDTH = 16


def _memory_layout_advice(model: dict[str, Any], geoms: dict[str, Any], d: Device,
                          calib: dict[str, Any]) -> list[str]:
    """Block RAM lost to wide, shallow memories, and which buffers SPRAM could take."""
    msgs = []
    placed = [(l["name"], p) for l in model["layers"]
              for p in calibrated_layer(l, geoms.get(l["name"]), d, calib).placements
              if p.where == "bram"]
    if not placed:
        return msgs
    used = sum(p.blocks for _, p in placed)
    packed = sum(math.ceil(p.memory.bits / d.bram_bits) for _, p in placed)
    name, worst = max(placed, key=lambda t: t[1].blocks - math.ceil(t[1].memory.bits / d.bram_bits))
    if packed < used:
        msgs.append(
            f"Block RAM is mostly lost to wide, shallow memories: e.g. {name} {worst.memory.name} "
            f"({worst.memory.depth} x {worst.memory.width} bits = {worst.memory.bits:,} bits) "
            f"takes {_fmt(worst.blocks)} blocks of {d.bram_bits:,} bits. Packed into full-depth "
            f"words (a pixel over several narrower words, read over several cycles; the "
            f"generator does not do this yet) the block-RAM memories would need about "
            f"{_fmt(packed)} blocks instead of {_fmt(used)}.")
    if d.spram_bits and d.capacity.get("spram"):
        depth = d.spram_bits // SPRAM_WIDTH
        cands = []
        for lname, p in placed:
            if p.memory.rom:
                continue          # SPRAM has no initial contents
            n = math.ceil(p.memory.width / SPRAM_WIDTH) * math.ceil(p.memory.depth / depth)
            cands.append((p.blocks / n, n, p.blocks, f"{lname} {p.memory.name}"))
        cands.sort(reverse=True)
        free, take, freed = int(d.capacity["spram"]), [], 0.0
        for _, n, blocks, what in cands:
            if n <= free:
                free -= n
                take.append(what)
                freed += blocks
        if take:
            msgs.append(f"SPRAM ({_fmt(d.capacity['spram'])} blocks of {depth} x "
                        f"{SPRAM_WIDTH} bits) is unused: moving {', '.join(take)} there would "
                        f"free about {_fmt(freed)} block RAMs (single-port: the buffer needs a "
                        f"read/write schedule; not generated yet). Weights cannot move (SPRAM "
                        f"has no initial contents).")
        elif cands:
            n_min = min(n for _, n, _, _ in cands)
            msgs.append(f"SPRAM cannot help at these widths: the narrowest buffer needs "
                        f"{n_min} SPRAM blocks of {SPRAM_WIDTH} bits width, the device has "
                        f"{_fmt(d.capacity['spram'])}.")
    return msgs


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
            if g is not None and hw_kind(g).foldable:
                best = None
                for pe, simd in FoldedConv.candidates(g):
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
        wbits = sum(g.unique_weight_bits for g in geoms.values() if g.has_params)
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
        msgs += _memory_layout_advice(design.model, geoms, d, calib)
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

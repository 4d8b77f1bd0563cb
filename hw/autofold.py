"""Choosing a folding: balance the pipeline for a target cycles/frame, or find the fastest
folding that fits a LUT budget (estimates of :mod:`dupnet.hw.analytic`).

:func:`choose_folding` is what the command-line tools call: a folding file wins, else an
automatic folding for a LUT budget, else for a target cycles/frame (default: 30 frames/s at
100 MHz).
"""
from __future__ import annotations

from pathlib import Path

from dupnet.sw.config import ConvGeometry, NetworkConfig, conv_geometries, network_geometry

from .analytic import layer_model
from .folded import DEFAULT_ARITH, FoldedConv, FoldingError, divisors
from .folding import Folding, check_pixels_per_beat, load_folding
from .kinds import hw_kind
from .pipeline import pipeline_model

__all__ = ["auto_folding", "choose_folding", "min_layer_cycles", "DEFAULT_FPS",
           "DEFAULT_CLOCK_HZ", "KP_POLICIES"]


def _layer_options(g: ConvGeometry):
    """Every valid ``(PE, SIMD, KP)`` of a conv layer, ``KP = 1`` first."""
    return [(pe, simd, kp) for kp in FoldedConv.kernel_options(g)
            for pe, simd in FoldedConv.candidates(g)]


#: where the auto-folding emits a row of the window per beat (``KP = k``): only where one
#: kernel position per beat cannot meet the target (its banked line buffer takes more block
#: RAMs than one buffer, which the LUT estimate does not weigh), or wherever it is the
#: cheaper option in LUTs (fewer lanes for the same cycles; the device fit weighs the RAMs)
KP_POLICIES = ("needed", "cheapest")


def _best_for_target(g: ConvGeometry, target: int, preadd: bool, arith: str,
                     kp_policy: str = "needed"):
    """The ``(PE, SIMD, KP)`` of the smallest LUT estimate within ``target`` cycles/frame
    (ties: fewer lanes, more cycles, fewer PE), or None; ``KP = k`` as ``kp_policy`` says
    (:data:`KP_POLICIES`)."""
    best = None
    for pe, simd, kp in _layer_options(g):
        if kp > 1 and kp_policy == "needed" and best is not None and best[1][2] == 1:
            break                   # KP = 1 meets the target (the options list KP = 1 first)
        m = layer_model(g, pe, simd, preadd=preadd, arith=arith, kp=kp)
        if m.cycles_per_frame > target:
            continue
        key = (m.lut_estimate, m.lanes, m.cycles_per_frame, pe, kp)
        if best is None or key < best[0]:
            best = (key, (pe, simd, kp), m)
    return best


def min_layer_cycles(g: ConvGeometry, preadd: bool = True) -> tuple[int, tuple[int, int, int]]:
    """Fewest cycles/frame of a conv layer at any valid folding, and that (PE, SIMD, KP):
    fully unfolded, ``H*W*k`` (the window unit emits at most one row of the kernel per
    cycle)."""
    return min((layer_model(g, pe, simd, preadd=preadd, kp=kp).cycles_per_frame, (pe, simd, kp))
               for pe, simd, kp in _layer_options(g))


def _fixed_min_cycles(config: NetworkConfig, pixels_per_beat: int) -> tuple[int, str]:
    worst = (config.input_height * config.input_width // pixels_per_beat, "input stream")
    for g in network_geometry(config):
        kind = hw_kind(g)
        if not kind.foldable:
            c = kind.model(kind.fold(g, Folding())).cycles_per_frame
            if c > worst[0]:
                worst = (c, f"layer {g.index} ({g.name})")
    return worst


def _with_pool_lanes(config: NetworkConfig, folding: Folding, target: int) -> Folding:
    """``folding`` with a ``lanes`` entry for every layer that is not a conv whose default
    lanes (its upstream's) would take more than ``target`` cycles/frame: the fewest lanes
    that meet it (the whole pixel at most)."""
    lanes = config.input_channels
    for g in network_geometry(config):
        kind = hw_kind(g)
        f = kind.fold(g, folding, lanes)
        if not kind.foldable and f.cycles_per_frame > target:
            for n in divisors(f.geometry.channels):
                if kind.fold(g, Folding(pools={g.name: n}), lanes).cycles_per_frame <= target:
                    break
            folding.pools[g.name] = n
            f = kind.fold(g, folding, lanes)
        lanes = f.out_lanes
    return folding


def auto_folding(config: NetworkConfig, target_cycles: int | None = None,
                 lut_budget: int | None = None, preadd: bool = True,
                 pixels_per_beat: int = 1, arith: str = DEFAULT_ARITH,
                 kp_policy: str = "needed") -> Folding:
    """A balanced folding.

    ``target_cycles``: every layer at most this many cycles/frame, each with the smallest LUT
    estimate. ``lut_budget``: the smallest cycles/frame whose total LUT estimate fits. Exactly
    one of the two must be given. ``kp_policy``: where a conv emits a row of the window per
    beat (:data:`KP_POLICIES`). Raises :class:`FoldingError` when the request is impossible.
    """
    if (target_cycles is None) == (lut_budget is None):
        raise FoldingError("auto folding needs exactly one of target_cycles and lut_budget")
    if kp_policy not in KP_POLICIES:
        raise FoldingError(f"kp_policy must be one of {', '.join(KP_POLICIES)}, got "
                           f"{kp_policy!r}")
    check_pixels_per_beat(config, pixels_per_beat)
    geoms = conv_geometries(config)
    fixed, fixed_what = _fixed_min_cycles(config, pixels_per_beat)

    def for_target(t: int) -> Folding | None:
        layers, kps = {}, {}
        for g in geoms:
            b = _best_for_target(g, t, preadd, arith, kp_policy)
            if b is None:
                return None
            pe, simd, kp = b[1]
            layers[g.name] = (pe, simd)
            if kp > 1:
                kps[g.name] = kp
        return _with_pool_lanes(config, Folding(layers, preadd=preadd, arith=arith, kp=kps), t)

    if target_cycles is not None:
        if isinstance(target_cycles, bool) or not isinstance(target_cycles, int) \
                or target_cycles < 1:
            raise FoldingError(f"target cycles must be a positive integer, got {target_cycles!r}")
        if target_cycles < fixed:
            raise FoldingError(f"target of {target_cycles} cycles/frame is impossible: the "
                               f"{fixed_what} alone needs {fixed} cycles/frame")
        for g in geoms:
            least, (pe, simd, kp) = min_layer_cycles(g, preadd)
            if least > target_cycles:
                raise FoldingError(
                    f"target of {target_cycles} cycles/frame is impossible: layer {g.index} "
                    f"({g.name}) needs at least H*W*k = {g.height}*{g.width}*{g.k} = "
                    f"{least} cycles/frame even fully unfolded (PE = C_out = {pe}, SIMD = C' "
                    f"= {simd}, KP = k = {kp}: the window unit emits at most one row of the "
                    f"kernel per cycle)")
        f = for_target(target_cycles)
        if f is None:      # unreachable after the checks above; never a bare assert
            raise FoldingError(f"no folding meets a target of {target_cycles} cycles/frame")
        return f

    if isinstance(lut_budget, bool) or not isinstance(lut_budget, int) or lut_budget < 1:
        raise FoldingError(f"LUT budget must be a positive integer, got {lut_budget!r}")
    targets = sorted({layer_model(g, pe, s, preadd, kp=kp).cycles_per_frame
                      for g in geoms for pe, s, kp in _layer_options(g)} | {fixed})
    targets = [t for t in targets if t >= fixed]

    def luts(t: int) -> int | None:
        f = for_target(t)
        return None if f is None else pipeline_model(config, f, pixels_per_beat).lut_estimate

    slowest = targets[-1]
    most_folded = luts(slowest)
    if most_folded is None or most_folded > lut_budget:
        raise FoldingError(f"LUT budget of {lut_budget} is impossible: the most folded design "
                           f"(PE = SIMD = 1 everywhere) is estimated at {most_folded} LUTs")
    lo, hi = 0, len(targets) - 1          # find the smallest target that fits
    while lo < hi:
        mid = (lo + hi) // 2
        v = luts(targets[mid])
        if v is not None and v <= lut_budget:
            hi = mid
        else:
            lo = mid + 1
    f = for_target(targets[lo])
    if f is None:          # unreachable: targets[lo] was checked to fit; never a bare assert
        raise FoldingError(f"LUT budget of {lut_budget}: no folding found")
    return f


# The default performance target of `dupnet rtl`, `report` and `sim` when no folding is given.
DEFAULT_FPS = 30
DEFAULT_CLOCK_HZ = 100_000_000


def choose_folding(config: NetworkConfig, folding_file: str | Path | None = None,
                   target_cycles: int | None = None, lut_budget: int | None = None,
                   preadd: bool = True, pixels_per_beat: int = 1) -> tuple[Folding, str]:
    """The folding the command-line tools use, and a line saying how it was chosen.

    A folding file wins; else ``auto_folding`` for ``lut_budget``; else for ``target_cycles``
    (default: ``DEFAULT_FPS`` frames/s at ``DEFAULT_CLOCK_HZ``).
    """
    if folding_file:
        return load_folding(folding_file, config), f"folding file {folding_file}"
    if lut_budget is not None:
        return (auto_folding(config, lut_budget=lut_budget, preadd=preadd,
                             pixels_per_beat=pixels_per_beat),
                f"auto folding for a LUT budget of {lut_budget}")
    if target_cycles is None:
        target = DEFAULT_CLOCK_HZ // DEFAULT_FPS
        how = f"auto folding for {DEFAULT_FPS} frames/s at 100 MHz ({target} cycles)"
    else:
        target, how = target_cycles, f"auto folding for {target_cycles} cycles/frame"
    return (auto_folding(config, target_cycles=target, preadd=preadd,
                         pixels_per_beat=pixels_per_beat), how)


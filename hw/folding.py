"""Folding: (PE, SIMD) per conv layer, from a file or chosen automatically.

A folding file (TOML or JSON) has one table per conv layer, named by the layer's config
name, and optional top-level ``preadd`` and ``arith`` fields::

    preadd = true
    arith = "xnor"      # MVTU datapath: "xnor" (default), "gated" or "addsub"
    [conv1]
    pe = 8
    simd = 6

:func:`auto_folding` balances the pipeline for a target cycles/frame, or finds the fastest
folding that fits a LUT budget (:mod:`dupnet.hw.analytic` estimates).
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dupnet.errors import DupnetError
from dupnet.sw.config import ConvGeometry, NetworkConfig, conv_geometries, network_geometry

from .analytic import ARITHMETICS, DEFAULT_ARITH

__all__ = ["Folding", "FoldingError", "load_folding", "validate_folding", "auto_folding",
           "check_pixels_per_beat",
           "folding_candidates", "divisors", "min_layer_cycles"]


class FoldingError(DupnetError):
    """A folding is invalid or a folding request cannot be met (names the layer and field)."""


@dataclass
class Folding:
    """``layers``: conv layer name -> ``(pe, simd)``; ``preadd``: sum the inputs that share a
    weight bit before gating (w_dup > 1 layers); ``arith``: the MVTU datapath arithmetic
    (:data:`dupnet.hw.analytic.ARITHMETICS`)."""
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    preadd: bool = True
    arith: str = DEFAULT_ARITH

    def __getitem__(self, name: str) -> tuple[int, int]:
        return self.layers[name]

    def __contains__(self, name: str) -> bool:
        return name in self.layers

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def items(self):
        return self.layers.items()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"preadd": self.preadd, "arith": self.arith}
        for name, (pe, simd) in self.layers.items():
            d[name] = {"pe": pe, "simd": simd}
        return d

    def to_toml(self) -> str:
        lines = ["# DupNet folding: (PE, SIMD) per conv layer (docs/hardware.md)",
                 f"preadd = {'true' if self.preadd else 'false'}", f'arith = "{self.arith}"',
                 ""]
        for name, (pe, simd) in self.layers.items():
            lines += [f"[{name}]", f"pe = {pe}", f"simd = {simd}", ""]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _parse(data: Any, where: str) -> Folding:
    if not isinstance(data, dict):
        raise FoldingError(f"{where}: a folding is a table of conv layers")
    preadd = data.get("preadd", True)
    if not isinstance(preadd, bool):
        raise FoldingError(f"{where}: field 'preadd' must be true or false, got {preadd!r}")
    arith = data.get("arith", DEFAULT_ARITH)
    if arith not in ARITHMETICS:
        raise FoldingError(f"{where}: field 'arith' must be one of "
                           f"{', '.join(map(repr, ARITHMETICS))}, got {arith!r}")
    layers: dict[str, tuple[int, int]] = {}
    for name, entry in data.items():
        if name in ("preadd", "arith"):
            continue
        lw = f"{where}: layer {name!r}"
        if not isinstance(entry, dict):
            raise FoldingError(f"{lw}: must be a table with fields 'pe' and 'simd'")
        extra = sorted(set(entry) - {"pe", "simd"})
        if extra:
            raise FoldingError(f"{lw}: unknown field(s) {', '.join(map(repr, extra))}; "
                               f"allowed: pe, simd")
        vals = []
        for f in ("pe", "simd"):
            if f not in entry:
                raise FoldingError(f"{lw}: missing field '{f}'")
            v = entry[f]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FoldingError(f"{lw}: field '{f}' must be a positive integer, got {v!r}")
            vals.append(v)
        layers[name] = (vals[0], vals[1])
    return Folding(layers, preadd=preadd, arith=arith)


def load_folding(path: str | Path, config: NetworkConfig | None = None) -> Folding:
    """Read a folding file (``.toml`` or ``.json``); with ``config``, also validate it."""
    p = Path(path)
    if not p.is_file():
        raise FoldingError(f"{p}: folding file not found")
    text = p.read_text()
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise FoldingError(f"{p}: a folding file must end in .toml or .json")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise FoldingError(f"{p}: not valid {p.suffix[1:].upper()}: {e}") from None
    folding = _parse(data, str(p))
    if config is not None:
        validate_folding(config, folding, where=str(p))
    return folding


def validate_folding(config: NetworkConfig, folding: Folding, where: str = "folding") -> None:
    """Check a folding against a config: every conv present, divisibility, w_dup compat."""
    from .analytic import _check_conv_folding
    geoms = conv_geometries(config)
    names = {g.name for g in geoms}
    unknown = sorted(set(folding.layers) - names)
    if unknown:
        raise FoldingError(f"{where}: unknown layer(s) {', '.join(map(repr, unknown))}; the "
                           f"conv layers of {config.name!r} are {', '.join(g.name for g in geoms)}")
    for g in geoms:
        if g.name not in folding.layers:
            raise FoldingError(f"{where}: layer {g.index} ({g.name}): missing (fields 'pe' and "
                               f"'simd')")
        pe, simd = folding.layers[g.name]
        try:
            _check_conv_folding(g, pe, simd)
        except FoldingError as e:
            raise FoldingError(f"{where}: {e}") from None


def check_pixels_per_beat(config: NetworkConfig, pixels_per_beat: Any) -> None:
    """:class:`FoldingError` unless ``pixels_per_beat`` is a positive integer dividing the
    ``H*W`` pixels of a frame."""
    hw_pixels = config.input_height * config.input_width
    if isinstance(pixels_per_beat, bool) or not isinstance(pixels_per_beat, int) \
            or pixels_per_beat < 1 or hw_pixels % pixels_per_beat:
        raise FoldingError(f"pixels_per_beat ({pixels_per_beat!r}) must be a positive integer "
                           f"dividing the {config.input_height}x{config.input_width} = "
                           f"{hw_pixels} pixels of a frame")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def folding_candidates(g: ConvGeometry) -> list[tuple[int, int]]:
    """All valid (PE, SIMD) pairs of a conv layer."""
    simds = [s for s in divisors(g.c_dup)
             if g.w_dup == 1 or s % g.w_dup == 0 or g.w_dup % s == 0]
    return [(pe, s) for pe in divisors(g.out_channels) for s in simds]


def _best_for_target(g: ConvGeometry, target: int, preadd: bool, arith: str):
    from .analytic import layer_model
    best = None
    for pe, simd in folding_candidates(g):
        m = layer_model(g, pe, simd, preadd=preadd, arith=arith)
        if m.cycles_per_frame > target:
            continue
        key = (m.lut_estimate, m.lanes, m.cycles_per_frame, pe)
        if best is None or key < best[0]:
            best = (key, (pe, simd), m)
    return best


def min_layer_cycles(g: ConvGeometry, preadd: bool = True) -> tuple[int, tuple[int, int]]:
    """Fewest cycles/frame of a conv layer at any valid folding, and that (PE, SIMD): fully
    unfolded, ``H*W*k*k`` (the window unit emits one kernel position per cycle; SIMD
    parallelises channels only)."""
    from .analytic import layer_model
    return min((layer_model(g, pe, simd, preadd=preadd).cycles_per_frame, (pe, simd))
               for pe, simd in folding_candidates(g))


def _fixed_min_cycles(config: NetworkConfig, pixels_per_beat: int) -> tuple[int, str]:
    from .analytic import pool_model
    worst = (config.input_height * config.input_width // pixels_per_beat, "input stream")
    for g in network_geometry(config):
        if not isinstance(g, ConvGeometry):
            c = pool_model(g).cycles_per_frame
            if c > worst[0]:
                worst = (c, f"layer {g.index} ({g.name})")
    return worst


def auto_folding(config: NetworkConfig, target_cycles: int | None = None,
                 lut_budget: int | None = None, preadd: bool = True,
                 pixels_per_beat: int = 1, arith: str = DEFAULT_ARITH) -> Folding:
    """A balanced folding.

    ``target_cycles``: every layer at most this many cycles/frame, each with the smallest LUT
    estimate. ``lut_budget``: the smallest cycles/frame whose total LUT estimate fits. Exactly
    one of the two must be given. Raises :class:`FoldingError` when the request is impossible.
    """
    from .analytic import pipeline_model
    if (target_cycles is None) == (lut_budget is None):
        raise FoldingError("auto folding needs exactly one of target_cycles and lut_budget")
    check_pixels_per_beat(config, pixels_per_beat)
    geoms = conv_geometries(config)
    fixed, fixed_what = _fixed_min_cycles(config, pixels_per_beat)

    def for_target(t: int) -> Folding | None:
        layers = {}
        for g in geoms:
            b = _best_for_target(g, t, preadd, arith)
            if b is None:
                return None
            layers[g.name] = b[1]
        return Folding(layers, preadd=preadd, arith=arith)

    if target_cycles is not None:
        if isinstance(target_cycles, bool) or not isinstance(target_cycles, int) \
                or target_cycles < 1:
            raise FoldingError(f"target cycles must be a positive integer, got {target_cycles!r}")
        if target_cycles < fixed:
            raise FoldingError(f"target of {target_cycles} cycles/frame is impossible: the "
                               f"{fixed_what} alone needs {fixed} cycles/frame")
        for g in geoms:
            least, (pe, simd) = min_layer_cycles(g, preadd)
            if least > target_cycles:
                raise FoldingError(
                    f"target of {target_cycles} cycles/frame is impossible: layer {g.index} "
                    f"({g.name}) needs at least H*W*k*k = {g.height}*{g.width}*{g.k}*{g.k} = "
                    f"{least} cycles/frame even fully unfolded (PE = C_out = {pe}, SIMD = C' "
                    f"= {simd}: the window unit emits one kernel position per cycle)")
        f = for_target(target_cycles)
        if f is None:      # unreachable after the checks above; never a bare assert
            raise FoldingError(f"no folding meets a target of {target_cycles} cycles/frame")
        return f

    if isinstance(lut_budget, bool) or not isinstance(lut_budget, int) or lut_budget < 1:
        raise FoldingError(f"LUT budget must be a positive integer, got {lut_budget!r}")
    from .analytic import layer_model
    targets = sorted({layer_model(g, pe, s, preadd).cycles_per_frame
                      for g in geoms for pe, s in folding_candidates(g)} | {fixed})
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


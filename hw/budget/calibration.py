"""The calibrated analytic model: per-family coefficients (``calibration.toml``) applied to the
analytic per-layer figures of :mod:`dupnet.hw.analytic`, and the fit that produces them.

Public API (also for :mod:`dupnet.hw.analytic`, which may import it)::

    calib = load_calibration()                       # {family: {coefficient: value}}
    est = calibrated_layer(layer_json, geometry, device, calib)
    est.lut, est.ff, est.bram, est.placements

See ``calibration.toml`` for the model's form.
"""
from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dupnet.files import atomic_write_bytes
from dupnet.hw.kinds import HW_KINDS

from .devices import Device
from .memory import MemoryPlacement, place_layer_memories

__all__ = ["CALIBRATION_FILE", "FEATURES", "LayerEstimate", "load_calibration",
           "layer_features", "calibrated_layer", "glue_estimate", "fit_lut_coefficients",
           "fit_memory_cost", "fit_ff_scale", "write_calibration", "calibration_path"]

CALIBRATION_FILE = "calibration.toml"
#: LUT model features, in coefficient order
FEATURES = ("logic", "mux_logic", "pool_logic", "rom_lut_bits", "ram_lut_bits", "const")
_MEM_KEYS = ("block_cost", "logic_cost_rom", "logic_cost_ram")


def calibration_path() -> Path:
    return Path(str(importlib.resources.files("dupnet.hw.budget").joinpath(CALIBRATION_FILE)))


def load_calibration(path: str | Path | None = None) -> dict[str, Any]:
    """``{family: {coefficient: float}, "meta": {...}}`` from the calibration file."""
    p = Path(path) if path is not None else calibration_path()
    return tomllib.loads(p.read_text())


@dataclass
class LayerEstimate:
    lut: float
    ff: float
    bram: float
    features: dict[str, float]
    placements: list[MemoryPlacement] = field(default_factory=list)
    spram: float = 0.0


def _coefs(calib: dict[str, Any], device: Device) -> dict[str, float]:
    fam = device.family.name
    if fam not in calib:
        raise KeyError(f"calibration has no [{fam}] table (family of {device.name})")
    return {k: float(v) for k, v in calib[fam].items()}


def layer_features(layer: dict[str, Any], geometry: Any, device: Device,
                   coefs: dict[str, float]) -> tuple[dict[str, float], list[MemoryPlacement]]:
    """The LUT model's features of one layer and where its memories go."""
    placements = place_layer_memories(layer, geometry, device, coefs)
    rom_logic = sum(p.memory.bits for p in placements if p.where == "logic" and p.memory.rom)
    ram_logic = sum(p.memory.bits for p in placements if p.where == "logic" and not p.memory.rom)
    est = float(layer.get("lut_estimate", 0))
    mux = float(layer.get("mux_lut_estimate", 0))
    pool = HW_KINDS[layer["kind"]].logic_feature == "pool_logic"
    feats = {"logic": 0.0 if pool else est - mux, "mux_logic": 0.0 if pool else mux,
             "pool_logic": est if pool else 0.0,
             "rom_lut_bits": float(rom_logic), "ram_lut_bits": float(ram_logic), "const": 1.0}
    return feats, placements


def calibrated_layer(layer: dict[str, Any], geometry: Any, device: Device,
                     calib: dict[str, Any]) -> LayerEstimate:
    c = _coefs(calib, device)
    c.setdefault("logic", 1.0)
    c.setdefault("pool_logic", c["logic"])         # files written before pools had their own
    c.setdefault("mux_logic", c["logic"])          # ... and before the window multiplexer
    feats, placements = layer_features(layer, geometry, device, c)
    lut = sum(c.get(f, 0.0) * v for f, v in feats.items())
    ff = c.get("ff", 1.0) * float(layer.get("ff_estimate", 0))
    bram = sum(p.blocks for p in placements if p.where == "bram")
    spram = sum(p.blocks for p in placements if p.where == "spram")
    return LayerEstimate(lut=lut, ff=ff, bram=bram, features=feats, placements=placements,
                         spram=spram)


def glue_estimate(extra_luts: float, extra_ffs: float, device: Device,
                  calib: dict[str, Any]) -> tuple[float, float]:
    c = _coefs(calib, device)
    return c.get("logic", 1.0) * extra_luts, c.get("ff", 1.0) * extra_ffs


def fit_lut_coefficients(samples: Iterable[tuple[dict[str, float], float]]
                         ) -> tuple[dict[str, float], float]:
    """Non-negative least squares of measured LUTs on the features, weighted by 1/measured
    (relative error). Returns the coefficients and the mean absolute relative error."""
    rows, ys = [], []
    for feats, y in samples:
        rows.append([feats.get(f, 0.0) for f in FEATURES])
        ys.append(float(y))
    if not rows:
        raise ValueError("no samples to fit")
    A, y = np.asarray(rows, float), np.asarray(ys, float)
    w = 1.0 / np.maximum(y, 50.0)                 # relative, but not dominated by tiny layers
    Aw, yw = A * w[:, None], y * w
    try:
        from scipy.optimize import nnls
        x, _ = nnls(Aw, yw)
    except ImportError:                           # projected least squares
        x = np.clip(np.linalg.lstsq(Aw, yw, rcond=None)[0], 0, None)
    pred = A @ x
    err = float(np.mean(np.abs(pred - y) / np.maximum(y, 1.0)))
    return {f: float(v) for f, v in zip(FEATURES, x)}, err


def fit_ff_scale(pairs: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """The FF scale ``ff`` (measured ~ ff * ff_estimate) from per-layer ``(estimate, measured)``
    pairs: the ratio of the sums, so that design totals are unbiased (FFs are dominated by a
    few wide layers; a per-layer relative fit let the many small ones set the scale). Returns
    the scale and the mean absolute relative error per sample."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no samples to fit")
    e, m = (np.asarray(v, float) for v in zip(*pairs))
    scale = float(m.sum() / max(e.sum(), 1e-12))
    err = float(np.mean(np.abs(scale * e - m) / np.maximum(m, 1.0)))
    return scale, err


def fit_memory_cost(samples: list[tuple[dict[str, Any], Any, Device, float]],
                    coefs: dict[str, float],
                    candidates: Iterable[float] = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                                                   768, 1024, 1536, 2048),
                    ram_candidates: Iterable[float] | None = None
                    ) -> tuple[float, float, float]:
    """The ``block_cost`` and ``logic_cost_ram`` that best reproduce the measured block counts
    (``logic_cost_rom`` and ``ram_depth_granule`` stay: only the ratios matter; sum of absolute
    errors; ties: the pair closest to the current values). ``ram_candidates`` defaults to the
    current ``logic_cost_ram`` times 1/16 .. 16. Returns (block_cost, logic_cost_ram, total abs
    error)."""
    ram0 = float(coefs.get("logic_cost_ram", 0.0625))
    if ram_candidates is None:
        ram_candidates = [ram0 * 2.0 ** (e / 4) for e in range(-16, 17)]
    best: tuple[float, float, float, float] | None = None
    for ram_cost in ram_candidates:
        for cost in candidates:
            c = dict(coefs, block_cost=float(cost), logic_cost_ram=float(ram_cost))
            err = 0.0
            for layer, geometry, device, measured in samples:
                blocks = sum(p.blocks for p in place_layer_memories(layer, geometry, device, c))
                err += abs(blocks - measured)
            dist = (abs(np.log(cost / max(coefs.get("block_cost", cost), 1e-9)))
                    + abs(np.log(ram_cost / max(ram0, 1e-9))))
            key = (err, dist, cost, ram_cost)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3], best[0]


def write_calibration(calib: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write the calibration back as TOML, keeping the explanatory header."""
    p = Path(path) if path is not None else calibration_path()
    try:
        header = "".join(l for l in p.read_text().splitlines(keepends=True)
                         if l.startswith("#"))
    except FileNotFoundError:
        header = ""
    out = [header.rstrip("\n") + "\n\n" if header else ""]

    def val(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, float):
            return repr(round(v, 6))
        return str(v)

    for table in ["meta"] + sorted(k for k in calib if k != "meta"):
        if table not in calib:
            continue
        out.append(f"[{table}]\n")
        for k, v in calib[table].items():
            out.append(f"{k} = {val(v)}\n")
        out.append("\n")
    atomic_write_bytes(p, "".join(out).rstrip("\n").encode() + b"\n")
    return p

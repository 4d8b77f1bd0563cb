"""Designs chosen for a device: the folding and the memory mapping that fit an FPGA's LUT /
FF / block RAM / SPRAM (the calibrated analytic estimate, :func:`calibrated_totals`) with a
margin, and give the most frames/s at the device's clock (or the smallest design that meets a
frame rate).

* :func:`memory_mapping`: the weights stay in bitstream-initialised ROMs where the block RAM
  holds them (the default); on a device with SPRAM, when it does not, the largest layers'
  weight memories move to SPRAM (:mod:`dupnet.hw.spram`, ``weights = "load"``: the load port
  writes them after reset), as many as the SPRAM blocks hold, or the hidden layers' weight
  and threshold words go into one shared stream bank (:mod:`dupnet.hw.stream_bank`),
  whichever needs fewer block RAMs.
* :func:`fit_device`: the fastest fitting design, or for ``fps`` the smallest design that
  meets it; a :class:`~dupnet.hw.folded.FoldingError` names the binding resource and by how
  much when nothing fits (or the rate the device can reach instead).
* :func:`select_folding`: what the command-line tools call (``--device``, ``--fps``, else
  :func:`dupnet.hw.autofold.choose_folding`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dupnet.sw.config import NetworkConfig, network_geometry

from ..analytic import REFERENCE_CLOCK_HZ
from ..autofold import KP_POLICIES, auto_folding, choose_folding
from ..folded import FoldingError
from ..folding import Folding
from ..kinds import fold_network
from ..pipeline import PipelineModel, pipeline_model
from ..spram import SPRAM_DEPTH, spram_blocks
from ..stream_bank import bank_keeps_up, layer_streams
from .calibration import load_calibration
from .devices import Device, load_devices
from .fit import FitSummary, ResourceUse
from .report import calibrated_totals

__all__ = ["DEFAULT_MARGIN", "DevicePoint", "memory_mapping", "estimate_point", "fit_device",
           "select_folding", "device_clock_mhz"]

#: LUT and FF may use this fraction of the device (the calibrated estimate is within about
#: 15 % of Yosys, docs/report.md); block RAM, SPRAM and DSP are counted exactly
DEFAULT_MARGIN = 0.85
_EXACT = ("bram", "spram", "dsp")
#: the most folded design of every network: PE = SIMD = 1 everywhere is below this target
_SLOWEST = 1 << 62


@dataclass
class DevicePoint:
    """One design on one device: folding (with its memory mapping), analytic pipeline model,
    calibrated estimate and its fit (LUT / FF against ``margin`` of the device)."""
    folding: Folding
    model: PipelineModel
    estimate: dict[str, float]
    fit: FitSummary
    clock_mhz: float
    #: the LUT6 budget of the auto-folding that made it (None: a cycles/frame target)
    budget: int | None = None

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.model.cycles_per_frame


def device_clock_mhz(device: Device, clock_mhz: float | None = None) -> float:
    """The clock frames/s are planned and quoted at: ``clock_mhz``, else the device file's
    ``expected_mhz`` (the place-and-route fmax measured on the generated designs), else its
    ``pnr_freq_mhz`` (the clock nextpnr aims at), else the analytic model's reference clock
    (100 MHz)."""
    if clock_mhz:
        return float(clock_mhz)
    if device.expected_mhz > 0:
        return float(device.expected_mhz)
    if device.pnr_freq_mhz > 0:
        return float(device.pnr_freq_mhz)
    return REFERENCE_CLOCK_HZ / 1e6


def _fit(est: dict[str, float], device: Device, margin: float) -> FitSummary:
    return FitSummary(tuple(
        ResourceUse(r, float(est.get(r, 0.0)),
                    float(device.capacity.get(r, 0.0)) * (1.0 if r in _EXACT else margin))
        for r in ("lut", "ff", "bram", "spram")))


def estimate_point(config: NetworkConfig, folding: Folding, device: Device, calib: dict,
                   margin: float = DEFAULT_MARGIN, clock_mhz: float | None = None
                   ) -> DevicePoint:
    """The calibrated estimate of ``folding`` on ``device`` and its fit."""
    pm = pipeline_model(config, folding)
    model = {"layers": [m.to_json() for m in pm.layers], "lut_estimate": pm.lut_estimate,
             "ff_estimate": pm.ff_estimate}
    geoms = {g.name: g for g in network_geometry(config)}
    est, _ = calibrated_totals(model, geoms, device, calib)
    return DevicePoint(folding, pm, est, _fit(est, device, margin),
                       device_clock_mhz(device, clock_mhz))


def memory_mapping(config: NetworkConfig, folding: Folding, device: Device, calib: dict,
                   margin: float = DEFAULT_MARGIN) -> Folding:
    """``folding`` with the memory mapping for ``device``: ROM weights where the block RAM
    holds the design; else, on a device with SPRAM, weights loaded at run time and the one of
    two SPRAM mappings that needs fewer block RAMs (then fewer LUTs): the largest layers'
    weight memories each in SPRAM blocks of their own (:func:`_own_spram`), or the hidden
    layers' weight and threshold words streamed from one shared bank, the rest in blocks of
    their own (:func:`_banked`)."""
    rom = dataclasses.replace(folding, weights="rom", spram=(), bank=())
    spram_cap = int(device.capacity.get("spram", 0))
    if not spram_cap or estimate_point(config, rom, device, calib, margin).fit.fits:
        return rom
    load = dataclasses.replace(folding, weights="load", spram=(), bank=())
    options = [_own_spram(config, load, spram_cap), _banked(config, load, spram_cap)]
    points = [estimate_point(config, f, device, calib, margin) for f in options]
    best = min(range(len(options)),
               key=lambda i: (points[i].estimate["bram"], points[i].estimate["lut"]))
    return options[best]


def _own_spram(config: NetworkConfig, load: Folding, free: int,
               skip: tuple[str, ...] = ()) -> Folding:
    """``load`` with the largest layers' weight memories in SPRAM blocks of their own (each
    memory whole, largest weight bits first, while ``free`` blocks remain; not the ``skip``
    layers)."""
    layers = [f for f in fold_network(config, load)
              if hasattr(f, "weight_rom") and f.geometry.name not in skip]
    layers.sort(key=lambda f: -f.geometry.unique_weight_bits)
    chosen = []
    for f in layers:
        need = spram_blocks(*f.weight_memory)
        if need <= free:
            chosen.append(f.geometry.name)
            free -= need
    return dataclasses.replace(load, spram=tuple(chosen))


def _banked(config: NetworkConfig, load: Folding, capacity: int) -> Folding:
    """``load`` with the hidden conv layers' weight and threshold words in one stream bank,
    largest weight bits first, each added while the bank's read port keeps up
    (:func:`~dupnet.hw.stream_bank.bank_keeps_up`) and its words fit ``capacity`` blocks; the
    blocks left go to the other layers' weight memories (:func:`_own_spram`)."""
    layers = [f for f in fold_network(config, load)
              if hasattr(f, "weight_rom") and f.geometry.act_bits is not None]
    layers.sort(key=lambda f: -f.geometry.unique_weight_bits)
    streams: list = []
    chosen: list[str] = []
    for f in layers:
        trial = streams + layer_streams(dataclasses.replace(f, banked=True))
        if bank_keeps_up(trial) and -(-sum(s.length for s in trial) // SPRAM_DEPTH) <= capacity:
            streams, chosen = trial, chosen + [f.geometry.name]
    used = -(-sum(s.length for s in streams) // SPRAM_DEPTH)
    order = [f.geometry.name for f in fold_network(config, load)]
    banked = dataclasses.replace(load, bank=tuple(n for n in order if n in chosen))
    return _own_spram(config, banked, capacity - used, skip=tuple(chosen))


def _at(config, folding, device, calib, margin, clock_mhz, budget=None) -> DevicePoint:
    p = estimate_point(config, memory_mapping(config, folding, device, calib, margin),
                       device, calib, margin, clock_mhz)
    p.budget = budget
    return p


def _at_budget(config, budget, device, calib, margin, clock_mhz, kp_policy) -> DevicePoint:
    return _at(config, auto_folding(config, lut_budget=budget, kp_policy=kp_policy), device,
               calib, margin, clock_mhz, budget)


def _too_big(config, device, point: DevicePoint, margin: float) -> FoldingError:
    over = [u for u in point.fit.uses if not u.fits]
    what = "; ".join(f"{u.resource.upper()} {u.used:,.0f} of {u.capacity:,.0f}"
                     + (f" ({margin:.0%} of the device)" if u.resource in ("lut", "ff") else "")
                     + f", over by {u.used - u.capacity:,.0f}" for u in over)
    return FoldingError(f"{config.name} does not fit {device.name} even at its most folded "
                        f"design (PE = SIMD = 1 everywhere, memories mapped for the device): "
                        f"{what}")


def fit_device(config: NetworkConfig, device: Device, calib: dict | None = None,
               margin: float = DEFAULT_MARGIN, clock_mhz: float | None = None,
               fps: float | None = None, strict: bool = True) -> DevicePoint:
    """The design for ``device``: with ``fps``, the smallest design (fewest LUTs, the
    auto-folding for ``clock/fps`` cycles per frame) that meets it and fits; else the fastest
    that fits (a binary search over the auto-folding's LUT budget). Both with each of the
    auto-folding's ``KP`` policies (:data:`~dupnet.hw.autofold.KP_POLICIES`: a row of the
    window per beat where needed, or wherever it saves LUTs), keeping the better design.
    :class:`FoldingError` names the binding resource when nothing fits (``strict=False``: the
    most folded design is returned instead, its ``fit.fits`` False), or the frames/s the
    device can reach."""
    calib = calib if calib is not None else load_calibration()
    most = _at(config, auto_folding(config, target_cycles=_SLOWEST), device, calib, margin,
               clock_mhz)
    if not most.fit.fits:
        if not strict:
            return most
        raise _too_big(config, device, most, margin)
    if fps is not None:
        return _for_fps(config, device, calib, margin, clock_mhz, fps)
    points = [_fastest(config, device, calib, margin, clock_mhz, most, kp) for kp in KP_POLICIES]
    return min(points, key=lambda p: (p.model.cycles_per_frame, p.estimate["lut"]))


def _fastest(config, device, calib, margin, clock_mhz, most, kp_policy) -> DevicePoint:
    """The fastest fitting design of one ``KP`` policy (``most`` fits)."""
    fastest = _at_budget(config, 1 << 40, device, calib, margin, clock_mhz, kp_policy)
    if fastest.fit.fits:
        return fastest
    lo, hi = most.model.lut_estimate, fastest.model.lut_estimate
    best = _at_budget(config, lo, device, calib, margin, clock_mhz, kp_policy)
    while hi - lo > 1:                   # lo fits, hi does not
        mid = (lo + hi) // 2
        p = _at_budget(config, mid, device, calib, margin, clock_mhz, kp_policy)
        if p.fit.fits:
            lo, best = mid, p
        else:
            hi = mid
    return best


def _for_fps(config, device, calib, margin, clock_mhz, fps) -> DevicePoint:
    if not fps > 0:
        raise FoldingError(f"--fps must be positive, got {fps}")
    mhz = device_clock_mhz(device, clock_mhz)
    target = int(mhz * 1e6 // fps)
    try:
        points = [_at(config, auto_folding(config, target_cycles=target, kp_policy=kp), device,
                      calib, margin, clock_mhz) for kp in KP_POLICIES]
    except FoldingError as e:
        raise FoldingError(f"{fps:g} frames/s at {mhz:g} MHz ({target} cycles/frame) is "
                           f"out of reach for {config.name}: {e}") from None
    fitting = [p for p in points if p.fit.fits]
    if fitting:
        return min(fitting, key=lambda p: p.estimate["lut"])
    p = min(points, key=lambda p: p.estimate["lut"])
    best = fit_device(config, device, calib, margin, clock_mhz)
    raise FoldingError(f"{config.name} at {fps:g} frames/s ({target} cycles/frame at "
                       f"{mhz:g} MHz) does not fit {device.name} (binds first: "
                       f"{p.fit.binding}); the fastest design that fits reaches "
                       f"{best.fps:.2f} frames/s ({best.model.cycles_per_frame} cycles/frame)")


def select_folding(config: NetworkConfig, folding_file=None, target_cycles: int | None = None,
                   lut_budget: int | None = None, preadd: bool = True,
                   pixels_per_beat: int = 1, device: str | None = None,
                   fps: float | None = None, clock_mhz: float | None = None
                   ) -> tuple[Folding, str]:
    """The folding the command-line tools use and how it was chosen: for ``device`` (a name in
    the device file) :func:`fit_device`; else :func:`~dupnet.hw.autofold.choose_folding`
    (``fps`` with ``clock_mhz``: the auto-folding for ``clock/fps`` cycles per frame)."""
    if device is None:
        if fps is not None:
            mhz = clock_mhz or REFERENCE_CLOCK_HZ / 1e6
            target_cycles = int(mhz * 1e6 // fps)
        return choose_folding(config, folding_file, target_cycles, lut_budget, preadd=preadd,
                              pixels_per_beat=pixels_per_beat)
    devices = load_devices()
    if device not in devices:
        raise FoldingError(f"unknown device {device!r}; the device file lists "
                           f"{', '.join(sorted(devices))}")
    p = fit_device(config, devices[device], clock_mhz=clock_mhz, fps=fps)
    f = p.folding
    mem = (f"weights loaded at run time, {', '.join(f.spram)} in SPRAM" if f.spram else
           "weights loaded at run time" if f.weights == "load" else "weights in ROM")
    want = f"{fps:g} frames/s" if fps else "the most frames/s"
    est = ", ".join(f"{r.upper()} {p.estimate[r]:,.0f}" for r in ("lut", "ff", "bram", "spram"))
    return f, (f"folding for {device} ({want} at {p.clock_mhz:g} MHz: {p.fps:.2f} frames/s, "
               f"{mem}; estimate {est})")

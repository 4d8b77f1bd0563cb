"""The target FPGAs of the budget report, loaded from one data file (``devices.toml``).

A device entry names its family, its capacities, the Yosys synthesis command and the nextpnr
flags; the family table says how Yosys cell types map to resources (LUT, FF, BRAM, SPRAM, DSP).
Adding a target of a known family is one ``[devices.<name>]`` entry.
"""
from __future__ import annotations

import fnmatch
import hashlib
import importlib.resources
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dupnet.errors import DupnetError

__all__ = ["Device", "Family", "DeviceError", "UnknownTargetError", "RESOURCES",
           "load_devices", "get_device", "parse_targets", "known_targets", "DEVICES_FILE"]

#: resources a report accounts for, in report order
RESOURCES = ("lut", "ff", "bram", "spram", "dsp")

DEVICES_FILE = "devices.toml"


class DeviceError(DupnetError):
    """The device list is malformed (names the file, device and field)."""


class UnknownTargetError(DupnetError):
    """A target name that is not in the device list."""


@dataclass(frozen=True)
class Family:
    name: str
    vendor: str
    lut_inputs: int
    hier_flag: str
    flat_flag: str
    cells: tuple[tuple[str, dict[str, float]], ...]   # (glob, resources per cell), file order
    block_shapes: tuple[tuple[int, int], ...]
    block_unit: float = 1.0

    def classify(self, cell_type: str) -> dict[str, float] | None:
        """Resources one cell of ``cell_type`` uses; None if no pattern matches."""
        for pattern, res in self.cells:
            if fnmatch.fnmatchcase(cell_type, pattern):
                return res
        return None


@dataclass(frozen=True)
class Device:
    name: str
    family: Family
    part: str
    description: str
    capacity: dict[str, float]
    bram_bits: int
    spram_bits: int
    io: int
    synth: str
    pnr: str
    pnr_args: tuple[str, ...]
    pnr_freq_mhz: float
    #: the clock frames/s are planned at (``--device`` / ``--fps``): the place-and-route fmax
    #: measured on the generated designs; 0: unknown (``pnr_freq_mhz`` is used)
    expected_mhz: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def has_pnr(self) -> bool:
        return bool(self.pnr)

    @property
    def lut_label(self) -> str:
        return f"LUT{self.family.lut_inputs}"

    def fingerprint(self) -> str:
        """Hash of everything in this entry and its family that can change a result."""
        fam = {"cells": [list(c) for c in self.family.cells], "hier": self.family.hier_flag,
               "flat": self.family.flat_flag}
        blob = json.dumps({"device": self.raw, "family": fam}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _default_path() -> Path:
    return Path(str(importlib.resources.files("dupnet.hw.budget").joinpath(DEVICES_FILE)))


def _req(where: str, d: dict, key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise DeviceError(f"{where}: missing field '{key}'")
    v = d[key]
    if not isinstance(v, typ) or isinstance(v, bool):
        raise DeviceError(f"{where}: field '{key}' has the wrong type ({type(v).__name__})")
    return v


def _clock(where: str, d: dict, key: str) -> float:
    """An optional clock field (MHz): a number >= 0 (0 or absent: unknown)."""
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise DeviceError(f"{where}: field '{key}' must be a clock in MHz (a number >= 0), "
                          f"got {v!r}")
    return float(v)


def load_devices(path: str | Path | None = None) -> dict[str, Device]:
    """All devices of the data file (default: the packaged ``devices.toml``), by name."""
    p = Path(path) if path is not None else _default_path()
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise DeviceError(f"{p}: device list not found") from None
    except tomllib.TOMLDecodeError as e:
        raise DeviceError(f"{p}: not valid TOML: {e}") from None
    fams: dict[str, Family] = {}
    for fname, f in data.get("families", {}).items():
        where = f"{p} [families.{fname}]"
        cells = _req(where, f, "cells", dict)
        parsed = []
        for pattern, res in cells.items():
            if not isinstance(res, dict):
                raise DeviceError(f"{where}.cells: '{pattern}' must map to a table of resources")
            parsed.append((pattern, {k: float(v) for k, v in res.items()}))
        shapes = tuple((int(a), int(b)) for a, b in _req(where, f, "block_shapes", list))
        fams[fname] = Family(name=fname, vendor=str(f.get("vendor", "")),
                             lut_inputs=int(_req(where, f, "lut_inputs", int)),
                             hier_flag=str(f.get("hier_flag", "")),
                             flat_flag=str(f.get("flat_flag", "")), cells=tuple(parsed),
                             block_shapes=shapes, block_unit=float(f.get("block_unit", 1.0)))
    devices: dict[str, Device] = {}
    for name, d in data.get("devices", {}).items():
        where = f"{p} [devices.{name}]"
        fam = _req(where, d, "family", str)
        if fam not in fams:
            raise DeviceError(f"{where}: field 'family' is {fam!r}, not one of the families "
                              f"{', '.join(sorted(fams))}")
        cap = _req(where, d, "capacity", dict)
        missing = [r for r in RESOURCES if r not in cap]
        if missing:
            raise DeviceError(f"{where}: field 'capacity' lacks {', '.join(missing)}")
        pnr = str(d.get("pnr", ""))
        if pnr not in ("", "nextpnr-ice40", "nextpnr-ecp5"):
            raise DeviceError(f"{where}: field 'pnr' is {pnr!r}; known: nextpnr-ice40, "
                              f"nextpnr-ecp5 or \"\" (synthesis only)")
        devices[name] = Device(
            name=name, family=fams[fam], part=str(d.get("part", name)),
            description=str(d.get("description", name)),
            capacity={r: float(cap[r]) for r in RESOURCES},
            bram_bits=int(_req(where, d, "bram_bits", int)),
            spram_bits=int(d.get("spram_bits", 0)), io=int(d.get("io", 0)),
            synth=_req(where, d, "synth", str), pnr=pnr,
            pnr_args=tuple(str(a) for a in d.get("pnr_args", [])),
            pnr_freq_mhz=float(d.get("pnr_freq_mhz", 0)),
            expected_mhz=_clock(where, d, "expected_mhz"), raw=d)
    if not devices:
        raise DeviceError(f"{p}: no [devices.<name>] entry")
    return devices


def known_targets(path: str | Path | None = None) -> list[str]:
    return list(load_devices(path))


def get_device(name: str, path: str | Path | None = None) -> Device:
    devices = load_devices(path)
    if name not in devices:
        raise UnknownTargetError(f"unknown target {name!r}; known targets: "
                                 f"{', '.join(devices)} (device list: "
                                 f"{path or _default_path()})")
    return devices[name]


def parse_targets(spec: str | list[str] | None, path: str | Path | None = None) -> list[Device]:
    """``"ice40-up5k,ecp5-25f"`` (or a list of such strings; ``"all"``) -> devices, in order."""
    devices = load_devices(path)
    if spec is None:
        return list(devices.values())
    items = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        for n in item.split(","):
            n = n.strip()
            if not n:
                continue
            if n == "all":
                names.extend(devices)
            else:
                names.append(n)
    unknown = [n for n in names if n not in devices]
    if unknown:
        raise UnknownTargetError(f"unknown target{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))}; known targets: "
                                 f"{', '.join(devices)}")
    if not names:
        raise UnknownTargetError(f"no target given; known targets: {', '.join(devices)}")
    return [devices[n] for n in dict.fromkeys(names)]

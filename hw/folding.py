"""Folding: (PE, SIMD) per conv layer of a network, read from a file and checked.

A folding file (TOML or JSON) has one table per conv layer, named by the layer's config
name, optional tables for max-pools (their ``lanes``: channels per beat) and optional
top-level ``preadd`` and ``arith`` fields::

    preadd = true
    arith = "xnor"      # MVTU datapath: "xnor" (default), "gated" or "addsub"
    weights = "rom"     # "rom" (default): initialised memories; "load": the load port
    spram = ["conv6"]   # optional, with weights = "load": these layers' weights in SPRAM
    bank = ["conv4", "conv5"]   # optional, with weights = "load": these layers' weight and
                        # threshold words streamed from one shared SPRAM bank
    [conv1]
    pe = 8
    simd = 6
    kp = 3              # optional: kernel positions per beat, 1 (default) or k
    [pool1]
    lanes = 8           # optional; default: the lanes of the stream into the pool

A pool without an entry works on the chunks its upstream layer emits (a conv's PE lanes):
:func:`dupnet.hw.kinds.fold_network` resolves it.

The rules of one layer's folding live in :class:`dupnet.hw.folded.FoldedConv`;
:mod:`dupnet.hw.autofold` chooses a folding automatically (for a target cycles/frame or a LUT
budget).
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dupnet.sw.config import NetworkConfig, conv_geometries, network_geometry

from .folded import ARITHMETICS, DEFAULT_ARITH, WEIGHT_SOURCES, FoldedConv, FoldingError
from .stream_bank import bank_streams, slot_table

__all__ = ["Folding", "FoldingError", "load_folding", "validate_folding",
           "check_pixels_per_beat"]


@dataclass
class Folding:
    """``layers``: conv layer name -> ``(pe, simd)``; ``preadd``: sum the inputs that share a
    weight bit before gating (w_dup > 1 layers); ``arith``: the MVTU datapath arithmetic
    (:data:`dupnet.hw.folded.ARITHMETICS`); ``pools``: max-pool name -> lanes (channels per
    beat), for the pools that do not take their upstream's lanes; ``weights``: where the
    weights and thresholds come from (:data:`dupnet.hw.folded.WEIGHT_SOURCES`); ``spram``:
    the conv layers whose weight memories are iCE40 SPRAM blocks (with ``weights = "load"``);
    ``kp``: conv layer name -> kernel positions per beat, for the layers where it is not 1
    (:class:`~dupnet.hw.folded.FoldedConv`); ``bank``: the hidden conv layers whose weight
    and threshold words are streamed from one shared SPRAM bank (with ``weights = "load"``;
    :mod:`dupnet.hw.stream_bank`)."""
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    preadd: bool = True
    arith: str = DEFAULT_ARITH
    pools: dict[str, int] = field(default_factory=dict)
    weights: str = "rom"
    spram: tuple[str, ...] = ()
    kp: dict[str, int] = field(default_factory=dict)
    bank: tuple[str, ...] = ()

    def kernel_positions(self, name: str) -> int:
        """Kernel positions per beat of conv layer ``name`` (1 unless set)."""
        return self.kp.get(name, 1)

    def __getitem__(self, name: str) -> tuple[int, int]:
        return self.layers[name]

    def __contains__(self, name: str) -> bool:
        return name in self.layers

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def items(self):
        return self.layers.items()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"preadd": self.preadd, "arith": self.arith,
                             "weights": self.weights}
        if self.spram:
            d["spram"] = list(self.spram)
        if self.bank:
            d["bank"] = list(self.bank)
        for name, (pe, simd) in self.layers.items():
            d[name] = {"pe": pe, "simd": simd}
            if self.kernel_positions(name) != 1:
                d[name]["kp"] = self.kernel_positions(name)
        for name, lanes in self.pools.items():
            d[name] = {"lanes": lanes}
        return d

    def to_toml(self) -> str:
        lines = ["# DupNet folding: (PE, SIMD) per conv layer (docs/hardware.md)",
                 f"preadd = {'true' if self.preadd else 'false'}", f'arith = "{self.arith}"',
                 f'weights = "{self.weights}"']
        for key, names in (("spram", self.spram), ("bank", self.bank)):
            if names:
                lines.append(f"{key} = [" + ", ".join(f'"{n}"' for n in names) + "]")
        lines.append("")
        for name, (pe, simd) in self.layers.items():
            kp = [f"kp = {self.kernel_positions(name)}"] if self.kernel_positions(name) != 1 \
                else []
            lines += [f"[{name}]", f"pe = {pe}", f"simd = {simd}", *kp, ""]
        for name, lanes in self.pools.items():
            lines += [f"[{name}]", f"lanes = {lanes}", ""]
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
    weights = data.get("weights", "rom")
    if weights not in WEIGHT_SOURCES:
        raise FoldingError(f"{where}: field 'weights' must be one of "
                           f"{', '.join(map(repr, WEIGHT_SOURCES))}, got {weights!r}")
    spram, bank = (_names(data, key, where) for key in ("spram", "bank"))
    layers: dict[str, tuple[int, int]] = {}
    pools: dict[str, int] = {}
    kps: dict[str, int] = {}
    for name, entry in data.items():
        if name in ("preadd", "arith", "weights", "spram", "bank"):
            continue
        lw = f"{where}: layer {name!r}"
        if not isinstance(entry, dict):
            raise FoldingError(f"{lw}: must be a table with fields 'pe' and 'simd' (a conv) "
                               f"or 'lanes' (a max-pool)")
        fields = ("lanes",) if "lanes" in entry else ("pe", "simd")
        optional = () if "lanes" in entry else ("kp",)
        extra = sorted(set(entry) - set(fields) - set(optional))
        if extra:
            raise FoldingError(f"{lw}: unknown field(s) {', '.join(map(repr, extra))}; "
                               f"allowed: pe, simd, kp (a conv) or lanes (a max-pool)")
        fields += tuple(f for f in optional if f in entry)
        vals = []
        for f in fields:
            if f not in entry:
                raise FoldingError(f"{lw}: missing field '{f}'")
            v = entry[f]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FoldingError(f"{lw}: field '{f}' must be a positive integer, got {v!r}")
            vals.append(v)
        if fields == ("lanes",):
            pools[name] = vals[0]
        else:
            layers[name] = (vals[0], vals[1])
            if len(vals) > 2 and vals[2] != 1:
                kps[name] = vals[2]
    return Folding(layers, preadd=preadd, arith=arith, pools=pools, weights=weights,
                   spram=tuple(spram), kp=kps, bank=tuple(bank))


def _names(data: dict, key: str, where: str) -> list[str]:
    """A top-level list of conv layer names (``spram``, ``bank``)."""
    names = data.get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FoldingError(f"{where}: field '{key}' must be a list of conv layer names, got "
                           f"{names!r}")
    return names


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
    """Check a folding against a config: every conv present, divisibility, w_dup compat; the
    ``lanes`` entries name layers that are not convs (their values are checked where the layer
    is folded, :func:`dupnet.hw.kinds.fold_network`)."""
    geoms = conv_geometries(config)
    names = {g.name for g in geoms}
    unknown = sorted(set(folding.layers) - names)
    if unknown:
        raise FoldingError(f"{where}: unknown layer(s) {', '.join(map(repr, unknown))}; the "
                           f"conv layers of {config.name!r} are {', '.join(g.name for g in geoms)}")
    for key in ("spram", "bank"):
        unknown = sorted(set(getattr(folding, key)) - names)
        if unknown:
            raise FoldingError(f"{where}: field '{key}' names unknown conv layer(s) "
                               f"{', '.join(map(repr, unknown))}; the conv layers of "
                               f"{config.name!r} are {', '.join(g.name for g in geoms)}")
    others = [g.name for g in network_geometry(config) if g.name not in names]
    unknown = sorted(set(folding.pools) - set(others))
    if unknown:
        raise FoldingError(f"{where}: unknown layer(s) {', '.join(map(repr, unknown))} with a "
                           f"'lanes' entry; the other layers of {config.name!r} are "
                           f"{', '.join(others) or 'none'}")
    folded = []
    for g in geoms:
        if g.name not in folding.layers:
            raise FoldingError(f"{where}: layer {g.index} ({g.name}): missing (fields 'pe' and "
                               f"'simd')")
        pe, simd = folding.layers[g.name]
        try:
            folded.append(FoldedConv(g, pe, simd, preadd=folding.preadd, arith=folding.arith,
                                     weights=folding.weights, spram=g.name in folding.spram,
                                     kp=folding.kernel_positions(g.name),
                                     banked=g.name in folding.bank))
        except FoldingError as e:
            raise FoldingError(f"{where}: {e}") from None
    _check_bank(folded, where)


def _check_bank(convs: list[FoldedConv], where: str) -> None:
    """The streams of the banked layers fit one bank's read port (:func:`~dupnet.hw.
    stream_bank.slot_table`)."""
    streams = bank_streams(convs)
    if not streams:
        return
    try:
        slot_table(streams)
    except ValueError as e:
        raise FoldingError(f"{where}: field 'bank': {e}") from None


def check_pixels_per_beat(config: NetworkConfig, pixels_per_beat: Any) -> None:
    """:class:`FoldingError` unless ``pixels_per_beat`` is a positive integer dividing the
    ``H*W`` pixels of a frame."""
    hw_pixels = config.input_height * config.input_width
    if isinstance(pixels_per_beat, bool) or not isinstance(pixels_per_beat, int) \
            or pixels_per_beat < 1 or hw_pixels % pixels_per_beat:
        raise FoldingError(f"pixels_per_beat ({pixels_per_beat!r}) must be a positive integer "
                           f"dividing the {config.input_height}x{config.input_width} = "
                           f"{hw_pixels} pixels of a frame")

"""Verilog generation: artifact + folding -> readable Verilog + the analytic JSON summary."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dupnet.files import atomic_write_bytes
from dupnet.sw.artifact import Artifact

from .pipeline import pipeline_model
from .top import DupNetAccelerator, output_layout
from .folded import FoldingError
from .folding import Folding
from .lint import waiver_file_text
from .spram import GENERATOR_PLATFORM
from .yosys import rtlil_to_verilog

__all__ = ["GeneratedDesign", "generate_verilog", "write_design", "count_verilog_memory_bits"]


@dataclass
class GeneratedDesign:
    """A generated accelerator.

    Attributes
    ----------
    verilog : str
        The Verilog text (no absolute paths, no source locations).
    top_name : str
        Name of the top module.
    design_hash : str
        Hex SHA-256 of ``verilog``.
    summary : dict
        ``{"design": {...}, "model": PipelineModel.to_json(), "folding": {...}}``.
    rom_bits_instantiated : int
        Sum of depth x width over the weight ROM ``Memory`` objects in the design.
    folding : Folding
    """
    verilog: str
    top_name: str
    design_hash: str
    summary: dict[str, Any]
    rom_bits_instantiated: int
    folding: Folding = field(default_factory=Folding)


_MEM_DECL = re.compile(r"^\s*reg\s*(?:\[(\d+):(\d+)\])?\s*(\S+)\s*\[(\d+):(\d+)\]\s*;", re.M)


def count_verilog_memory_bits(verilog: str, name_pattern: str = r"w_rom\d*") -> int:
    """Bits of the memory arrays declared in ``verilog`` whose name matches ``name_pattern``
    (a ``reg [W-1:0] name [0:D-1];`` declaration counts ``W*D``)."""
    total = 0
    pat = re.compile(name_pattern)
    for mo in _MEM_DECL.finditer(verilog):
        hi, lo, name, a, b = mo.groups()
        width = 1 if hi is None else abs(int(hi) - int(lo)) + 1
        depth = abs(int(b) - int(a)) + 1
        if pat.search(name):
            total += width * depth
    return total


def generate_verilog(artifact: Artifact, folding: Folding, pixels_per_beat: int = 1,
                     probes: bool = False, name: str = "dupnet_top",
                     preadd: bool | None = None) -> GeneratedDesign:
    """Elaborate :class:`~dupnet.hw.top.DupNetAccelerator` and emit Verilog."""
    from amaranth.back import rtlil

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise FoldingError(f"top module name {name!r} is not a Verilog identifier")
    top = DupNetAccelerator(artifact, folding, pixels_per_beat=pixels_per_beat, probes=probes,
                            preadd=preadd)
    folding = top.folding
    il = rtlil.convert(top, name=name, emit_src=False, platform=GENERATOR_PLATFORM)
    text = rtlil_to_verilog(il, strip_internal_attrs=True)
    text = text.replace("\r\n", "\n")
    digest = hashlib.sha256(text.encode()).hexdigest()
    model = pipeline_model(artifact, folding, pixels_per_beat=pixels_per_beat,
                           preadd=top.preadd)
    cfg = artifact.config
    out = output_layout(artifact, folding)
    ports = {
        "clk": 1, "rst": 1,
        "i__valid": 1, "i__ready": 1,
        "i__payload": pixels_per_beat * cfg.input_channels * cfg.input_bits,
        "o__valid": 1, "o__ready": 1, "o__payload": out.width,
    }
    if probes:
        for lname, _ in top.engines:
            w = len(getattr(top, f"probe_{lname}").payload)
            ports.update({f"probe_{lname}__valid": 1, f"probe_{lname}__ready": 1,
                          f"probe_{lname}__payload": w})
    summary = {
        "design": {
            "top_name": name, "design_hash": digest,
            "rom_bits_instantiated": top.rom_bits_instantiated,
            "unique_weight_bits": sum(g.unique_weight_bits for g in artifact.geometries),
            "pixels_per_beat": pixels_per_beat, "probes": probes, "preadd": top.preadd,
            "arith": folding.arith,
            "ports": ports,
            "adapters": {n: [a.lanes_in, a.lanes_out] for n, a in top.adapters.items()},
            "output": {"pe": out.lanes, "acc_bits": out.bits, "last_bit": out.last_bit,
                       "beats_per_pixel": artifact.geometries[-1].out_channels // out.lanes},
        },
        "model": model.to_json(),
        "folding": folding.to_dict(),
    }
    return GeneratedDesign(verilog=text, top_name=name, design_hash=digest, summary=summary,
                           rom_bits_instantiated=top.rom_bits_instantiated, folding=folding)


def write_design(design: GeneratedDesign, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<top>.v``, ``<top>.json``, ``folding.toml`` and ``lint_waivers.vlt`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "verilog": out / f"{design.top_name}.v",
        "summary": out / f"{design.top_name}.json",
        "folding": out / "folding.toml",
        "waivers": out / "lint_waivers.vlt",
    }
    atomic_write_bytes(files["verilog"], design.verilog.encode())
    atomic_write_bytes(files["summary"],
                       (json.dumps(design.summary, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(files["folding"], design.folding.to_toml().encode())
    atomic_write_bytes(files["waivers"], waiver_file_text().encode())
    return files

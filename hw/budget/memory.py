"""Analytic memory mapping: which of a layer's memories land in block RAM, and how many blocks.

The memories of each layer are its folded layer's (:class:`dupnet.hw.folded.FoldedConv`,
``FoldedPool``: ``.memories``): per conv, ``PE`` weight ROMs, a threshold ROM of ``nf`` words
when ``nf > 1`` and the line buffer (a RAM); per max-pool, the row buffer (a RAM).

The mapping rule mirrors Yosys ``memory_libmap``: a memory goes to block RAM when the blocks it
needs cost less than building it from soft logic (``bits * logic_cost``, ROM and RAM priced
separately). The per-family costs live in the calibration file (``calibration.toml``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dupnet.hw.folded import DEFAULT_ARITH, LayerMemory
from dupnet.hw.folding import Folding
from dupnet.hw.kinds import fold_layer
from dupnet.hw.spram import SPRAM_DEPTH, bank_words, spram_blocks

from .devices import Device

__all__ = ["Memory", "layer_memories", "blocks_for", "MemoryPlacement", "place_memory",
           "place_layer_memories"]


#: a memory of a layer (name, depth, width, rom): :class:`dupnet.hw.folded.LayerMemory`
Memory = LayerMemory


def blocks_for(depth: int, width: int, shapes: tuple[tuple[int, int], ...] | list) -> int:
    """Fewest blocks of one of the ``(depth, width)`` aspect ratios that hold the memory. A
    memory narrower than a shape may also be packed several words per row (``w // width``
    words, the row picked by the high address bits and the word by a multiplexer): how Yosys
    fits an 18432 x 1 ROM into one 2048 x 9 RAMB18 / DP16KD, parity bits included."""
    n = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)
    packed = [math.ceil(depth / (d * (w // width))) for d, w in shapes if width < w]
    return min([n] + packed)


def layer_memories(layer: dict[str, Any], geometry: Any | None) -> list[Memory]:
    """Memories of one layer (a :class:`~dupnet.hw.analytic.LayerModel` as JSON dict, with its
    geometry): its kind's folded layer's ``.memories`` (:mod:`dupnet.hw.kinds`).

    ``layer["memories"]`` (a list of ``{name, depth, width, rom}``) overrides the derivation;
    hand-made designs in tests use it. No geometry: no memories known."""
    if "memories" in layer:
        return [Memory(m["name"], int(m["depth"]), int(m["width"]), bool(m["rom"]))
                for m in layer["memories"]]
    if geometry is None:
        return []
    fold = {geometry.name: (int(layer["pe"]), int(layer["simd"]))} if "pe" in layer else {}
    pools = {geometry.name: int(layer["lanes"])} if "lanes" in layer and not fold else {}
    folding = Folding(fold, preadd=bool(layer.get("preadd", True)),
                      arith=layer.get("arith", DEFAULT_ARITH), pools=pools,
                      weights=layer.get("weights", "rom"),
                      spram=(geometry.name,) if layer.get("spram") else (),
                      bank=(geometry.name,) if layer.get("bank") else (),
                      kp={geometry.name: int(layer["kp"])} if layer.get("kp") else {})
    return fold_layer(geometry, folding).memories


@dataclass(frozen=True)
class MemoryPlacement:
    memory: Memory
    where: str          # "bram" | "logic" | "spram"
    blocks: float       # capacity.bram units (0 in logic), capacity.spram units in SPRAM


def place_memory(mem: Memory, device: Device, costs: dict[str, float]) -> MemoryPlacement:
    """Block RAM or soft logic, by the cheaper cost (the Yosys ``memory_libmap`` rule).

    Block RAM when ``blocks * block_cost < width * depth' * logic_cost_rom|ram``, where
    ``depth'`` is the depth rounded up to ``ram_depth_granule`` for RAMs (the depth of one
    LUT-RAM cell: 64 on Artix-7, 16 on ECP5; 1 where RAMs in logic are flip-flops) and the
    plain depth for ROMs."""
    if mem.spram:          # the generator built it from SPRAM cells: one block per 16 x 16K
        return MemoryPlacement(mem, "spram", float(spram_blocks(mem.depth, mem.width)))
    if mem.banked:         # its share of the stream bank's SPRAM words (totals round up)
        return MemoryPlacement(mem, "spram", bank_words(mem.depth, mem.width) / SPRAM_DEPTH)
    fam = device.family
    n = blocks_for(mem.depth, mem.width, fam.block_shapes)
    bram_cost = n * costs.get("block_cost", 64.0)
    depth = mem.depth
    if not mem.rom:
        granule = max(1, int(costs.get("ram_depth_granule", 1)))
        depth = -(-depth // granule) * granule
    logic_cost = mem.width * depth * costs.get("logic_cost_rom" if mem.rom else
                                               "logic_cost_ram", 1.0)
    if device.capacity["bram"] > 0 and bram_cost < logic_cost:
        return MemoryPlacement(mem, "bram", n * fam.block_unit)
    return MemoryPlacement(mem, "logic", 0.0)


def place_layer_memories(layer: dict[str, Any], geometry: Any | None, device: Device,
                         costs: dict[str, float]) -> list[MemoryPlacement]:
    return [place_memory(m, device, costs) for m in layer_memories(layer, geometry)]

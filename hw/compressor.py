"""Bit-heap compressor: the sum of many weighted bits, built from LUT6-sized counters.

A *heap* maps a column ``c`` (bit weight ``2**c``) to its items. An item is a plain bit (one
input) or an XNOR pair ``(x, w)`` standing for the bit ``~(x ^ w)`` (two inputs): the XNOR of an
activation bit with its binary weight bit is folded into the first counter instead of costing a
LUT of its own. A *counter* takes items of one column whose inputs total at most six and emits
their count in binary, one bit per column ``c, c+1, ...``; each of its output bits is a single
function of at most six inputs, so it maps to one LUT6.

Each stage is its own module (:class:`CompressorStage`) marked ``keep_hierarchy`` (by
:data:`KEEP_HIERARCHY_PATTERN`, applied in :mod:`dupnet.hw.yosys` where RTLIL becomes Verilog or
is synthesized): Yosys' delay-driven ``abc9`` otherwise re-derives several stages as one cone
and duplicates logic (measured on 32 W1A3 lanes with ``synth_xilinx``: 2.09 LUT6 per lane-bit
flattened, 1.39 with one module per stage).

Stages (Wallace style, every column reduced in parallel):

1. XNOR pairs in threes: a full adder on three pairs (6 inputs, 2 LUT6 for 3 lane-bits).
2. Plain bits: 6:3 counters (3 LUT6 remove 3 bits), a 5:3 on a remainder of five.

until every column holds at most ``final_rows`` items; those rows are then added with a carry
chain adder (one LUT per bit and row on LUT6 devices). LUT cost is about 1.3 LUT6 per XNOR'd
input bit, against ~2.3 for a carry-chain adder tree with separate gating (see
``scripts/bench_hw.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Elaboratable, Module, Signal, Value

__all__ = ["XnorPair", "CompressorStage", "compress_heap", "compressor_luts", "heap_of_terms",
           "KEEP_HIERARCHY_PATTERN"]

#: Yosys module-name pattern of the compressor stages (they get ``keep_hierarchy``)
KEEP_HIERARCHY_PATTERN = "*_cstage*"


class CompressorStage(Elaboratable):
    """One stage of counters, a module of its own (combinational; its ports are the nets that
    cross it)."""

    def __init__(self):
        self.m = Module()

    def elaborate(self, platform):
        return self.m


@dataclass(frozen=True)
class XnorPair:
    """The bit ``~(x ^ w)``: activation bit ``x`` times weight bit ``w`` in offset form."""
    x: Value
    w: Value

    def value(self) -> Value:
        return ~(self.x ^ self.w)


def _bit(item) -> Value:
    return item.value() if isinstance(item, XnorPair) else item


def heap_of_terms(terms) -> dict[int, list]:
    """Heap of ``sum(w ? v : ~v)`` over ``terms = [(v, w), ...]`` (``v`` unsigned, ``~v`` its
    bitwise complement in ``len(v)`` bits): bit ``j`` of each term is ``XnorPair(v[j], w)``."""
    heap: dict[int, list] = {}
    for v, w in terms:
        for j in range(len(v)):
            heap.setdefault(j, []).append(XnorPair(v[j], w))
    return heap


def _count_logic(bits: list[Value]) -> list[Value]:
    """Binary count of ``bits`` as gate logic (full and half adders of XOR/AND/OR, no ``+``:
    an arithmetic ``$add`` would be mapped to a carry chain before LUT mapping)."""
    cols = [list(bits)]
    out = []
    j = 0
    while j < len(cols):
        col = cols[j]
        while len(col) > 1:
            if len(col) >= 3:
                a, b, c = col.pop(), col.pop(), col.pop()
                s, cy = a ^ b ^ c, (a & b) | (a & c) | (b & c)
            else:
                a, b = col.pop(), col.pop()
                s, cy = a ^ b, a & b
            col.insert(0, s)
            if j + 1 == len(cols):
                cols.append([])
            cols[j + 1].append(cy)
        out.append(col[0] if col else Const(0, 1))
        j += 1
    return out


def _counter(m: Module, items: list, name: str) -> list[Signal]:
    """Count the (XNOR-resolved) bits of ``items``; one output signal (one LUT) per result
    bit."""
    width = len(items).bit_length()
    logic = _count_logic([_bit(it) for it in items])
    outs = []
    for j in range(width):
        o = Signal(name=f"{name}_o{j}")
        m.d.comb += o.eq(logic[j] if j < len(logic) else 0)
        outs.append(o)
    return outs


def _split_column(items: list) -> tuple[list[list], list]:
    """Counter groups for one column and the items passed on unchanged."""
    pairs = [it for it in items if isinstance(it, XnorPair)]
    singles = [it for it in items if not isinstance(it, XnorPair)]
    groups: list[list] = []
    while len(pairs) >= 3:                      # full adder on three XNOR pairs: 6 inputs
        groups.append(pairs[:3])
        pairs = pairs[3:]
    while len(singles) >= 6:                    # 6:3 counter
        groups.append(singles[:6])
        singles = singles[6:]
    if len(singles) == 5:                       # 5:3 counter
        groups.append(singles)
        singles = []
    return groups, pairs + singles


def _reduce(cols: dict[int, list], final_rows: int, counter) -> dict[int, list]:
    """The stage schedule, shared by the hardware (:func:`compress_heap`) and the LUT count
    (:func:`compressor_luts`): ``counter(stage, column, tag, items)`` returns the output items
    of one counter (its count, LSB first, one item per column from ``column`` up)."""
    if final_rows not in (2, 3):
        raise ValueError(f"final_rows must be 2 or 3, got {final_rows!r}")
    stage = 0
    while cols and max(len(v) for v in cols.values()) > final_rows:
        new: dict[int, list] = {}
        progress = False
        for c in sorted(cols):
            groups, rest = _split_column(cols[c])
            if len(cols[c]) <= final_rows:
                groups, rest = [], cols[c]
            new.setdefault(c, []).extend(rest)
            for gi, grp in enumerate(groups):
                progress = True
                for j, o in enumerate(counter(stage, c, f"g{gi}", grp)):
                    new.setdefault(c + j, []).append(o)
        if not progress:     # only 3-4 singles left in some column: one full adder each
            new = {}
            for c in sorted(cols):
                items = cols[c]
                if len(items) > final_rows:
                    grp, items = items[:3], items[3:]
                    for j, o in enumerate(counter(stage, c, "fa", grp)):
                        new.setdefault(c + j, []).append(o)
                new.setdefault(c, []).extend(items)
        cols = new
        stage += 1
    return cols


def compress_heap(m: Module, heap: dict[int, list], name: str, final_rows: int = 2) -> Value:
    """Sum of a heap (see the module docstring) as an unsigned value.

    Parameters
    ----------
    m : Module
        Gets one :class:`CompressorStage` submodule per stage (``{name}_cstage{k}``) and the
        final adder (combinational).
    heap : dict
        Column -> items (plain 1-bit values or :class:`XnorPair`).
    name : str
        Prefix of the stage modules' names.
    final_rows : int
        Reduce until every column holds at most this many items (2 or 3), then add the rows.
    """
    stages: dict[int, CompressorStage] = {}

    def counter(stage, c, tag, items):
        if stage not in stages:
            stages[stage] = CompressorStage()
            m.submodules[f"{name}_cstage{stage}"] = stages[stage]
        return _counter(stages[stage].m, items, f"c{c}{tag}")

    cols = _reduce({c: list(v) for c, v in heap.items() if v}, final_rows, counter)
    if not cols:
        return Const(0, 1)
    top = max(cols) + 1
    rows = []
    for r in range(final_rows):
        bits = [_bit(cols[c][r]) if c in cols and len(cols[c]) > r else Const(0, 1)
                for c in range(top)]
        rows.append(Cat(*bits))
    total = rows[0]
    for r in rows[1:]:
        total = total + r
    return total


def compressor_luts(n_terms: int, term_bits: int, final_rows: int = 2) -> int:
    """LUT6 count of :func:`compress_heap` on :func:`heap_of_terms` of ``n_terms`` terms of
    ``term_bits`` bits: one LUT per counter output, one per XNOR pair left for the final rows,
    one per bit and extra row of the final carry-chain adder."""
    luts = 0

    def counter(stage, c, tag, items):
        nonlocal luts
        width = len(items).bit_length()
        luts += width
        return [None] * width

    pair = XnorPair(None, None)
    cols = _reduce({j: [pair] * n_terms for j in range(term_bits) if n_terms}, final_rows,
                   counter)
    if not cols:
        return 0
    luts += sum(1 for v in cols.values() for it in v if isinstance(it, XnorPair))
    width = max(cols) + 1
    if max(len(v) for v in cols.values()) > 1:
        luts += (final_rows - 1) * width
    return luts

"""Bit-heap compressor: the sum of many weighted bits, from LUT6 counters and carry-chain adders.

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

Stages:

1. XNOR pairs in threes: a full adder on three pairs (6 inputs, 2 LUT6 for 3 lane-bits; 4 LUT4);
   other items pass on.
2. Carry-chain adder stages until one item per column is left: from the lowest column up, an
   adder starts at each column holding two items or more, adds two rows through the columns
   holding items (one LUT per column holding two, on LUT6 and LUT4 alike) and takes a third
   item of its first column as carry-in (free). An XNOR pair that reaches an adder costs its
   XNOR (a LUT).

Measured (issue 12, 64 lanes, ``scripts/bench_hw.py``; against the former 6:3-counter Wallace
stages): W1A1 1.30 LUT6 per lane-bit (was 1.31), W1A2 1.38 (1.31), W1A3 1.35 (1.33); iCE40
LUT4 2.02 / 2.07 / 2.05 (2.66 / 2.71 / 2.77: a 6:3 counter is 3 LUT6 but ~7 LUT4, a carry-chain
adder is one LUT per column on both); ECP5 LUT4 2.56 / 2.48 / 2.39 (2.69 / 2.73 / 2.78).
Counting Yosys cells (a dual-output LUT6_2 counts two), every construction here removes at most
one heap bit per LUT past the first stage, so the compressor stays near 4/3 LUT6 per lane-bit.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Elaboratable, Module, Signal, Value

__all__ = ["XnorPair", "CompressorStage", "compress_heap", "compressor_luts", "heap_of_terms",
           "term_heap", "compressor_stages", "pipeline_split", "pipeline_bits",
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


def _pair_groups(items: list) -> tuple[list[list], list]:
    """The first stage's counters of one column (full adders on three XNOR pairs) and the
    items passed on unchanged."""
    pairs = [it for it in items if isinstance(it, XnorPair)]
    rest = [it for it in items if not isinstance(it, XnorPair)]
    n = len(pairs) - len(pairs) % 3
    return [pairs[i:i + 3] for i in range(0, n, 3)], pairs[n:] + rest


def _reduce(cols: dict[int, list], counter, adder, between=None) -> dict[int, list]:
    """The stage schedule, shared by the hardware (:func:`compress_heap`) and the LUT count
    (:func:`compressor_luts`). Returns the heap reduced to one item per column.

    * stage 0: ``counter(stage, column, tag, items)`` on every three XNOR pairs of a column
      (a full adder, one LUT6 per output bit), returning the output items (LSB first, one per
      column from ``column`` up);
    * then carry-chain adder stages: in each, ``adder(stage, column, a, b, cin)`` adds the
      row ``a`` (one item per column from ``column`` up), the row ``b`` (the same columns;
      None where a column has no second item) and the carry-in ``cin`` (an item of
      ``column`` or None) and returns its ``len(a) + 1`` output items. Adders are placed from
      the lowest column up: one starts at every column holding two items or more and runs up
      through the columns holding at least one; a third item of its first column is its
      carry-in (free on the carry chain).

    ``between(stage, cols)``, when given, is called after every stage with the heap it left
    and returns the heap the next stage takes (a pipeline register, :func:`compress_heap`).
    """
    between = between or (lambda stage, cols: cols)
    new: dict[int, list] = {}
    for c in sorted(cols):
        groups, rest = _pair_groups(cols[c])
        new.setdefault(c, []).extend(rest)
        for gi, grp in enumerate(groups):
            for j, o in enumerate(counter(0, c, f"g{gi}", grp)):
                new.setdefault(c + j, []).append(o)
    cols = between(0, {c: v for c, v in new.items() if v})
    stage = 1
    while any(len(v) > 1 for v in cols.values()):
        cur = {c: list(v) for c, v in cols.items()}
        new = {}
        c, hi = min(cur), max(cur)
        while c <= hi:
            if len(cur.get(c, [])) < 2:
                c += 1
                continue
            width = 1
            while cur.get(c + width):
                width += 1
            a = [cur[c + i].pop(0) for i in range(width)]
            b = [cur[c + i].pop(0) if cur[c + i] else None for i in range(width)]
            cin = cur[c].pop(0) if cur[c] else None
            for j, o in enumerate(adder(stage, c, a, b, cin)):
                new.setdefault(c + j, []).append(o)
        for cc, v in cur.items():
            new.setdefault(cc, []).extend(v)
        cols = between(stage, {cc: v for cc, v in new.items() if v})
        stage += 1
    return cols


def _dummy(heap: dict[int, list]) -> dict[int, list]:
    """The heap's shape only (what the stage schedule depends on)."""
    pair = XnorPair(None, None)
    return {c: [pair if isinstance(it, XnorPair) else None for it in v]
            for c, v in heap.items() if v}


def _shape_run(heap: dict[int, list], between=None) -> tuple[int, dict[int, list]]:
    """The stage schedule on the heap's shape alone (no logic): the number of stages (the
    first counts even when it has no counter) and the reduced heap."""
    n = [0]

    def counter(stage, c, tag, items):
        n[0] = max(n[0], stage + 1)
        return [None] * len(items).bit_length()

    def adder(stage, c, a, b, cin):
        n[0] = max(n[0], stage + 1)
        return [None] * (len(a) + 1)

    cols = _reduce(_dummy(heap), counter, adder, between)
    return n[0], cols


def term_heap(n_terms: int, term_bits: int) -> dict[int, list]:
    """The shape of :func:`heap_of_terms` on ``n_terms`` terms of ``term_bits`` bits: every
    column an XNOR pair per term (stand-ins, for the counts)."""
    pair = XnorPair(None, None)
    return {j: [pair] * n_terms for j in range(term_bits) if n_terms}


def compressor_stages(heap: dict[int, list]) -> int:
    """Stages of :func:`compress_heap` on ``heap`` (the first stage counts even when it has
    no counter)."""
    return _shape_run(heap)[0]


def pipeline_split(heap: dict[int, list]) -> int | None:
    """The stage after which :func:`compress_heap` registers the heap (half the stages), or
    None: the heap takes at most one stage and its sum is registered instead."""
    n = compressor_stages(heap)
    return n // 2 - 1 if n >= 2 else None


def pipeline_bits(heap: dict[int, list]) -> int:
    """Flip-flops of the register :func:`compress_heap` puts in the middle: the items left
    after :func:`pipeline_split`'s stage (or the sum's bits)."""
    split, count = pipeline_split(heap), [0]

    def between(stage, cols):
        if stage == split:
            count[0] = sum(len(v) for v in cols.values())
        return cols

    _, cols = _shape_run(heap, between)
    return count[0] if split is not None else (max(cols) + 1 if cols else 1)


def compress_heap(m: Module, heap: dict[int, list], name: str, register=None) -> Value:
    """Sum of a heap (see the module docstring) as an unsigned value.

    Parameters
    ----------
    m : Module
        Gets one :class:`CompressorStage` submodule per stage (``{name}_cstage{k}``:
        combinational).
    heap : dict
        Column -> items (plain 1-bit values or :class:`XnorPair`).
    name : str
        Prefix of the stage modules' names.
    register : callable or None
        A pipeline register, ``values -> registered values``: applied to the heap after half
        of the stages (:func:`pipeline_split`), or to the sum when there is one stage at most;
        None: combinational.
    """
    stages: dict[int, CompressorStage] = {}
    n_adders = [0]

    def stage_module(stage) -> Module:
        if stage not in stages:
            stages[stage] = CompressorStage()
            m.submodules[f"{name}_cstage{stage}"] = stages[stage]
        return stages[stage].m

    def counter(stage, c, tag, items):
        return _counter(stage_module(stage), items, f"c{c}{tag}")

    def adder(stage, c, a, b, cin):
        sm = stage_module(stage)
        total = (Cat(*[_bit(it) for it in a])
                 + Cat(*[Const(0, 1) if it is None else _bit(it) for it in b]))
        if cin is not None:
            total = total + _bit(cin)
        o = Signal(len(a) + 1, name=f"a{n_adders[0]}c{c}")
        n_adders[0] += 1
        sm.d.comb += o.eq(total)
        return [o[j] for j in range(len(a) + 1)]

    split = pipeline_split(heap) if register is not None else None

    def between(stage, cols):
        if stage != split:
            return cols
        flat = [(c, it) for c in sorted(cols) for it in cols[c]]
        regs = iter(register([_bit(it) for _, it in flat]))
        out: dict[int, list] = {}
        for c, _ in flat:
            out.setdefault(c, []).append(next(regs))
        return out

    cols = _reduce({c: list(v) for c, v in heap.items() if v}, counter, adder, between)
    total = (Cat(*[_bit(cols[c][0]) if c in cols else Const(0, 1)
                   for c in range(max(cols) + 1)]) if cols else Const(0, 1))
    if register is not None and split is None:
        total = register([total])[0]
    return total


def compressor_luts(n_terms: int, term_bits: int) -> int:
    """LUT6 count of :func:`compress_heap` on :func:`heap_of_terms` of ``n_terms`` terms of
    ``term_bits`` bits: one LUT per counter output; per adder one LUT per column where it adds
    two items (a column with one item and the carry-in ride the carry chain), two for a
    one-column adder with a carry-in (a full adder); one per XNOR pair that reaches an adder or
    the result (its XNOR)."""
    luts = 0
    bit = Const(0, 1)      # a stand-in for a counter's or adder's output item

    def counter(stage, c, tag, items):
        nonlocal luts
        width = len(items).bit_length()
        luts += width
        return [bit] * width

    def adder(stage, c, a, b, cin):
        nonlocal luts
        luts += sum(isinstance(it, XnorPair) for it in a + b + [cin])
        both = sum(it is not None for it in b)
        luts += 2 if len(a) == 1 and cin is not None else both
        return [bit] * (len(a) + 1)

    cols = _reduce(term_heap(n_terms, term_bits), counter, adder)
    return luts + sum(isinstance(v[0], XnorPair) for v in cols.values())

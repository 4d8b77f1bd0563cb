"""Parsers of Yosys and nextpnr output: ``stat -json``, the text ``stat`` log, nextpnr's
``--report`` JSON and its log. Pure functions of text, unit-tested on stored real logs
(``tests/budget/data``)."""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from dupnet.errors import DupnetError

__all__ = ["ParseError", "YosysStat", "PnrResult", "CriticalPath", "parse_stat_json",
           "parse_stat_text", "parse_nextpnr_report", "parse_nextpnr_log",
           "parse_critical_paths", "slowest_path", "cell_unit", "cell_signal", "yosys_errors",
           "yosys_pass_title"]


class ParseError(DupnetError):
    """A tool's output is not in the expected format."""


@dataclass
class YosysStat:
    """Cell counts per module (local: excluding submodules) and the hierarchy."""
    modules: dict[str, dict[str, int]]            # module -> {cell type: count}, leaf cells
    submodules: dict[str, dict[str, int]]         # module -> {child module: instances}
    top: str

    def total(self, module: str | None = None) -> dict[str, int]:
        """Cell counts of ``module`` (default: top) including its submodules."""
        module = module or self.top
        out: dict[str, int] = {}
        for t, n in self.modules.get(module, {}).items():
            out[t] = out.get(t, 0) + n
        for child, n in self.submodules.get(module, {}).items():
            for t, m in self.total(child).items():
                out[t] = out.get(t, 0) + n * m
        return out

    def instance_paths(self) -> dict[str, int]:
        """Every module below (and including) top with its number of instances."""
        counts: dict[str, int] = {}

        def walk(m: str, mult: int) -> None:
            counts[m] = counts.get(m, 0) + mult
            for child, n in self.submodules.get(m, {}).items():
                walk(child, mult * n)
        walk(self.top, 1)
        return counts


def _strip(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def _find_top(modules: set[str], submodules: dict[str, dict[str, int]],
              top: str | None) -> str:
    if top is not None:
        if top not in modules:
            raise ParseError(f"stat: top module {top!r} not in the statistics "
                             f"(modules: {', '.join(sorted(modules))})")
        return top
    children = {c for subs in submodules.values() for c in subs}
    roots = sorted(modules - children)
    if len(roots) != 1:
        raise ParseError(f"stat: cannot tell the top module among {', '.join(roots)}")
    return roots[0]


def parse_stat_json(text: str, top: str | None = None) -> YosysStat:
    """Parse the output of Yosys ``tee -o FILE stat -json`` (not ``-hierarchy``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"stat -json: not JSON: {e}") from None
    mods = data.get("modules")
    if not isinstance(mods, dict) or not mods:
        raise ParseError("stat -json: no 'modules' table")
    names = {_strip(m) for m in mods}
    cells: dict[str, dict[str, int]] = {}
    subs: dict[str, dict[str, int]] = {}
    for raw, m in mods.items():
        name = _strip(raw)
        by_type = m.get("num_cells_by_type", {})
        if any(isinstance(v, dict) for v in by_type.values()):
            raise ParseError("stat -json: hierarchical format (stat -json -hierarchy); "
                             "run plain `stat -json`")
        leaf, child = {}, {}
        for t, n in by_type.items():
            t = _strip(t)
            (child if t in names else leaf)[t] = int(n)
        cells[name], subs[name] = leaf, child
    return YosysStat(modules=cells, submodules=subs, top=_find_top(names, subs, top))


_SECTION = re.compile(r"^=== (.+) ===\s*$")
_COUNT = re.compile(r"^\s+(\d+)\s{3}(\S+)\s*$")


def parse_stat_text(log: str, top: str | None = None) -> YosysStat:
    """Parse the text of Yosys ``stat`` (a log or ``tee -o``): the fallback when no JSON."""
    cells: dict[str, dict[str, int]] = {}
    current: str | None = None
    for line in log.splitlines():
        m = _SECTION.match(line)
        if m:
            name = m.group(1).strip()
            current = None if name == "design hierarchy" else _strip(name)
            if current is not None:
                cells[current] = {}   # a later stat of the same module replaces the earlier
            continue
        if current is None:
            continue
        m = _COUNT.match(line)
        if m:
            cells[current][_strip(m.group(2))] = int(m.group(1))
    if not cells:
        raise ParseError("stat log: no '=== module ===' section found")
    names = set(cells)
    subs = {m: {t: n for t, n in c.items() if t in names} for m, c in cells.items()}
    leaf = {m: {t: n for t, n in c.items() if t not in names} for m, c in cells.items()}
    return YosysStat(modules=leaf, submodules=subs, top=_find_top(names, subs, top))


_ERROR = re.compile(r"^ERROR: (.*)$", re.M)


def yosys_errors(log: str) -> list[str]:
    return [m.group(1).strip() for m in _ERROR.finditer(log)]


_PASS = re.compile(r"^(\d+(?:\.\d+)*)\. (Executing .*?|Printing statistics)\.?\s*$")


def yosys_pass_title(line: str) -> str | None:
    """``"2.48. Executing ABC9 pass."`` -> ``"2.48 Executing ABC9 pass"`` (progress lines)."""
    m = _PASS.match(line.strip())
    return f"{m.group(1)} {m.group(2)}" if m else None


@dataclass
class CriticalPath:
    """The critical path of one clock as nextpnr reports it (post-route when routed).

    Attributes
    ----------
    clock : str
        The clock whose paths this is the slowest of (``clk``).
    total_ns, logic_ns, routing_ns : float
        Path delay and its split into cell delays (clock-to-out, logic, setup) and wires.
    start, end : str
        The cells the path starts at (a register or a block RAM output) and ends at, as
        nextpnr names them (hierarchical, without the pin: ``conv4_mvtu.w_rom0.0.0``).
    units : list of str
        The accelerator units the path crosses in order: the first dotted component of every
        cell on it, consecutive repeats removed, cells without a unit
        (``$nextpnr_ICESTORM_LC_75``) skipped.
    logic_levels : int
        The number of ``logic`` steps (cells passed through, carry-chain steps included).
    """
    clock: str
    total_ns: float
    logic_ns: float
    routing_ns: float
    start: str
    end: str
    units: list[str] = field(default_factory=list)
    logic_levels: int = 0

    @property
    def routing_pct(self) -> float | None:
        """Share of the path delay spent in routing, in percent (None for a zero delay)."""
        total = self.logic_ns + self.routing_ns
        return 100.0 * self.routing_ns / total if total > 0 else None

    @property
    def summary(self) -> str:
        """One line: ``pool4_pool (fp) -> conv4_window (can_issue) via conv4_mvtu: 37.8 ns,
        12 logic levels, 62% routing``."""
        ends = (cell_unit(self.start), cell_unit(self.end))
        via = [u for u in dict.fromkeys(self.units) if u not in ends]
        levels = f"{self.logic_levels} logic level{'' if self.logic_levels == 1 else 's'}"
        pct = self.routing_pct
        return (f"{_cell_label(self.start)} -> {_cell_label(self.end)}"
                + (f" via {', '.join(via)}" if via else "")
                + f": {self.total_ns:.1f} ns, {levels}"
                + ("" if pct is None else f", {pct:.0f}% routing"))

    def to_json(self) -> dict[str, Any]:
        """The fields, ``routing_pct`` and ``summary`` as JSON-able data."""
        pct = self.routing_pct
        return {"clock": self.clock, "total_ns": self.total_ns, "logic_ns": self.logic_ns,
                "routing_ns": self.routing_ns,
                "routing_pct": None if pct is None else round(pct, 1),
                "start": self.start, "end": self.end, "units": list(self.units),
                "logic_levels": self.logic_levels, "summary": self.summary}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CriticalPath":
        """Inverse of :meth:`to_json` (the derived ``routing_pct`` and ``summary`` ignored)."""
        return cls(clock=d["clock"], total_ns=float(d["total_ns"]),
                   logic_ns=float(d["logic_ns"]), routing_ns=float(d["routing_ns"]),
                   start=d["start"], end=d["end"], units=list(d.get("units", [])),
                   logic_levels=int(d.get("logic_levels", 0)))


def cell_unit(cell: str) -> str | None:
    """The accelerator unit of a hierarchical cell name: its first dotted component.

    ``conv4_mvtu.w_rom0.0.0`` -> ``conv4_mvtu``; None for a cell with no hierarchy
    (``$nextpnr_ICESTORM_LC_75``, a top-level register)."""
    head, dot, _ = cell.partition(".")
    if not dot or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", head):
        return None
    return head


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cell_signal(cell: str) -> str | None:
    """The designer's signal or memory name in a cell name, after the unit.

    Synthesis appends the cell types it mapped through (``_TRELLIS_FF_Q_10``,
    ``_SB_LUT4_O_LC``): the name is cut at the first ``_`` part with a capital letter.
    ``conv4_mvtu.s0_TRELLIS_FF_Q_10`` -> ``s0``; ``pool4_pool.rowbuf.0.0_WCLKE_SB_DFF_Q``
    -> ``rowbuf``; None for a generated name (``pool4_pool.$signal_SB_...``)."""
    rest = cell.partition(".")[2] if cell_unit(cell) else cell
    m = _IDENT.match(rest)
    if not m:
        return None
    keep = []
    for part in m.group(0).split("_"):
        if any(c.isupper() for c in part):
            break
        keep.append(part)
    return "_".join(keep).strip("_") or None


def _cell_label(cell: str) -> str:
    """``unit (signal)``, ``unit``, or the cell name itself for a cell without a unit."""
    unit, sig = cell_unit(cell), cell_signal(cell)
    if unit is None:
        return sig or cell
    return f"{unit} ({sig})" if sig else unit


def _units(cells: list[str]) -> list[str]:
    """Units of ``cells`` in order, consecutive repeats removed, unit-less cells skipped."""
    out: list[str] = []
    for c in cells:
        u = cell_unit(c)
        if u is not None and (not out or out[-1] != u):
            out.append(u)
    return out


def _make_path(clock: str, kinds: list[str], cells: list[str], logic_ns: float,
               routing_ns: float, total_ns: float) -> CriticalPath | None:
    """A :class:`CriticalPath` from the step kinds and the cells in path order."""
    if not cells:
        return None
    return CriticalPath(clock=clock, total_ns=round(total_ns, 2), logic_ns=round(logic_ns, 2),
                        routing_ns=round(routing_ns, 2), start=cells[0], end=cells[-1],
                        units=_units(cells), logic_levels=kinds.count("logic"))


_CP_HEAD = re.compile(r"^Info: Critical path report for clock '([^']+)'")
_CP_ROW = re.compile(r"^Info:\s+(?:([a-z][a-z-]*)\s+)?(-?[0-9.]+)\s+(-?[0-9.]+)\s+"
                     r"(Source|Net)\s+(\S+)")
_CP_SINK = re.compile(r"^Info:\s+Sink\s+(\S+)")
_CP_SPLIT = re.compile(r"^Info:\s+(-?[0-9.]+) ns logic, (-?[0-9.]+) ns routing")


def _pinless(name: str) -> str:
    """``cell.PIN`` -> ``cell`` (nextpnr prints the pin after the last dot)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def _read_path_block(lines: Iterable[str], clock: str) -> CriticalPath | None:
    """One ``Critical path report`` block, the lines after its header."""
    kinds: list[str] = []
    cells: list[str] = []
    delays = {"logic": 0.0, "routing": 0.0}
    total, split = 0.0, None
    for line in lines:
        m = _CP_ROW.match(line)
        if m:
            kind = m.group(1) or ("routing" if m.group(4) == "Net" else "logic")
            kinds.append(kind)
            total = float(m.group(3))
            delays["routing" if kind == "routing" else "logic"] += float(m.group(2))
            if m.group(4) == "Source":
                cells.append(_pinless(m.group(5)))
        elif (m := _CP_SINK.match(line)):
            cells.append(_pinless(m.group(1)))
        elif (m := _CP_SPLIT.match(line)):
            split = (float(m.group(1)), float(m.group(2)))
            break
        elif not line.startswith("Info: "):
            break
    logic, routing = split or (delays["logic"], delays["routing"])
    return _make_path(clock, kinds, cells, logic, routing, total)


def parse_critical_paths(log: str) -> dict[str, CriticalPath]:
    """The critical path of every clock in a nextpnr log.

    nextpnr prints ``Critical path report for clock 'clk' (posedge -> posedge):`` blocks
    (after placement in some versions, always after routing); the last block of each clock is
    the one kept, the post-route path of a routed design. Cross-domain path reports are not
    read.

    Parameters
    ----------
    log : str
        The text nextpnr printed.

    Returns
    -------
    dict of str to CriticalPath
        Clock name -> its path; empty when the log has no path report.
    """
    lines = log.splitlines()
    out: dict[str, CriticalPath] = {}
    for i, line in enumerate(lines):
        m = _CP_HEAD.match(line)
        if m:
            path = _read_path_block(itertools.islice(lines, i + 1, None), m.group(1))
            if path is not None:
                out[m.group(1)] = path
    return out


def _report_paths(data: dict[str, Any]) -> dict[str, CriticalPath]:
    """The ``critical_paths`` of nextpnr's ``--report`` JSON, per clock (same-clock paths)."""
    out: dict[str, CriticalPath] = {}
    for entry in data.get("critical_paths") or []:
        src, dst = str(entry.get("from", "")), str(entry.get("to", ""))
        clock = src.split()[-1] if src.split() else ""
        if not clock or dst.split()[-1:] != [clock]:
            continue
        steps = entry.get("path") or []
        cells = [s[k]["cell"] for s in steps for k in ("from", "to") if k in s]
        kinds = [str(s.get("type", "")) for s in steps]
        wires = sum(float(s.get("delay", 0)) for s in steps if s.get("type") == "routing")
        total = sum(float(s.get("delay", 0)) for s in steps)
        path = _make_path(clock, kinds, cells, total - wires, wires, total)
        if path is not None:
            out[clock] = path
    return out


def slowest_path(paths: dict[str, CriticalPath],
                 clocks: dict[str, dict[str, float]]) -> CriticalPath | None:
    """The critical path that sets the fmax: the slowest clock's (the longest path when the
    clocks' fmax are unknown); None without paths."""
    known = [c for c in paths if c in clocks and "achieved_mhz" in clocks[c]]
    if known:
        return paths[min(known, key=lambda c: clocks[c]["achieved_mhz"])]
    return max(paths.values(), key=lambda p: p.total_ns, default=None)


@dataclass
class PnrResult:
    """What a nextpnr run measured.

    ``critical_path`` is the path that sets ``fmax_mhz`` (the slowest clock's), None when
    nextpnr reported none or the result was cached before paths were recorded."""
    fmax_mhz: float | None                      # the slowest clock's achieved fmax
    clocks: dict[str, dict[str, float]] = field(default_factory=dict)  # clk -> achieved, target
    utilization: dict[str, tuple[int, int]] = field(default_factory=dict)  # bel: (used, avail)
    routed: bool = True
    critical_path: CriticalPath | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-able data (the cache's ``result.json``); inverse of :meth:`from_json`."""
        return {"fmax_mhz": self.fmax_mhz, "clocks": self.clocks, "routed": self.routed,
                "utilization": {k: list(v) for k, v in self.utilization.items()},
                "critical_path": self.critical_path.to_json() if self.critical_path else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PnrResult":
        """From :meth:`to_json` data; results cached without a critical path load with None."""
        cp = d.get("critical_path")
        return cls(fmax_mhz=d.get("fmax_mhz"), clocks=d.get("clocks", {}),
                   utilization={k: tuple(v) for k, v in d.get("utilization", {}).items()},
                   routed=d.get("routed", True),
                   critical_path=CriticalPath.from_json(cp) if cp else None)


def parse_nextpnr_report(text: str) -> PnrResult:
    """Parse nextpnr's ``--report FILE`` JSON (fmax per clock, utilisation per bel type, the
    critical path of the slowest clock)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"nextpnr report: not JSON: {e}") from None
    clocks = {}
    for clk, v in (data.get("fmax") or {}).items():
        clocks[clk] = {"achieved_mhz": float(v["achieved"]),
                       "target_mhz": float(v.get("constraint", 0.0))}
    util = {k: (int(v["used"]), int(v["available"]))
            for k, v in (data.get("utilization") or {}).items()}
    fmax = min((c["achieved_mhz"] for c in clocks.values()), default=None)
    return PnrResult(fmax_mhz=fmax, clocks=clocks, utilization=util,
                     critical_path=slowest_path(_report_paths(data), clocks))


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+) MHz"
                   r"(?:\s*\((PASS|FAIL) at ([0-9.]+) MHz\))?")
_UTIL = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")


def parse_nextpnr_log(log: str) -> PnrResult:
    """Parse a nextpnr log: the last (post-route) fmax of each clock, the utilisation and the
    critical path of the slowest clock (its last report)."""
    routed = "Routing complete" in log
    tail = log.split("Routing complete", 1)[1] if routed else log
    clocks: dict[str, dict[str, float]] = {}
    for m in _FMAX.finditer(tail):
        clocks[m.group(1)] = {"achieved_mhz": float(m.group(2)),
                              "target_mhz": float(m.group(4) or 0.0)}
    util: dict[str, tuple[int, int]] = {}
    in_util = False
    for line in log.splitlines():
        if line.startswith("Info: Device utilisation"):
            in_util, util = True, {}
            continue
        if in_util:
            m = _UTIL.match(line.replace("\t", " "))
            if m:
                util[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            elif line.strip() in ("Info:", ""):
                continue
            else:
                in_util = False
    fmax = min((c["achieved_mhz"] for c in clocks.values()), default=None)
    return PnrResult(fmax_mhz=fmax, clocks=clocks, utilization=util, routed=routed,
                     critical_path=slowest_path(parse_critical_paths(log), clocks))

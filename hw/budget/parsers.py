"""Parsers of Yosys and nextpnr output: ``stat -json``, the text ``stat`` log, nextpnr's
``--report`` JSON and its log. Pure functions of text, unit-tested on stored real logs
(``tests/budget/data``)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dupnet.errors import DupnetError

__all__ = ["ParseError", "YosysStat", "PnrResult", "parse_stat_json", "parse_stat_text",
           "parse_nextpnr_report", "parse_nextpnr_log", "yosys_errors", "yosys_pass_title"]


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
class PnrResult:
    """What a nextpnr run measured."""
    fmax_mhz: float | None                      # the slowest clock's achieved fmax
    clocks: dict[str, dict[str, float]] = field(default_factory=dict)  # clk -> achieved, target
    utilization: dict[str, tuple[int, int]] = field(default_factory=dict)  # bel: (used, avail)
    routed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"fmax_mhz": self.fmax_mhz, "clocks": self.clocks, "routed": self.routed,
                "utilization": {k: list(v) for k, v in self.utilization.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PnrResult":
        return cls(fmax_mhz=d.get("fmax_mhz"), clocks=d.get("clocks", {}),
                   utilization={k: tuple(v) for k, v in d.get("utilization", {}).items()},
                   routed=d.get("routed", True))


def parse_nextpnr_report(text: str) -> PnrResult:
    """Parse nextpnr's ``--report FILE`` JSON (fmax per clock, utilisation per bel type)."""
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
    return PnrResult(fmax_mhz=fmax, clocks=clocks, utilization=util)


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+) MHz"
                   r"(?:\s*\((PASS|FAIL) at ([0-9.]+) MHz\))?")
_UTIL = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")


def parse_nextpnr_log(log: str) -> PnrResult:
    """Parse a nextpnr log: the last (post-route) fmax of each clock and the utilisation."""
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
    return PnrResult(fmax_mhz=fmax, clocks=clocks, utilization=util, routed=routed)

"""Synthesis (Yosys) and place-and-route (nextpnr) of one design for one device, cached by
design hash.

Three kinds of run per device, each cached on its own under ``<cache>/<key>/result.json``:

* ``flat``: ``synth_* -top TOP`` flattened, the numbers the fit is judged on; also writes the
  netlist for place-and-route with every top-level port except the clock and reset unbound
  (out-of-context: data ports need no pins, so a wide output stream fits a 39-pin package;
  IO timing is not part of the fmax).
* ``hier``: the same synthesis keeping the hierarchy, for per-module (per-layer) figures.
* ``pnr``: nextpnr on the ``flat`` netlist: fmax and the placed utilisation.

The cache key is a hash of the design hash, the run kind, the device entry, the tool versions
and :data:`FLOW_VERSION`; deleting the cache folder is always safe.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dupnet.hw.yosys import FLATTEN_STAGES
from dupnet.files import atomic_write_bytes

from .devices import RESOURCES, Device
from .parsers import (PnrResult, parse_nextpnr_log, parse_nextpnr_report,
                      parse_stat_json, parse_stat_text, yosys_errors)
from .tools import Progress, ToolError, run_tool, tool_versions

__all__ = ["FLOW_VERSION", "DesignSource", "SynthResult", "PnrRun", "synthesize",
           "place_and_route", "pnr_cached", "resources_of", "default_cache_dir", "cache_key",
           "KEEP_PORTS"]

#: bump when the scripts below change in a way that changes results
FLOW_VERSION = 2
#: top-level ports that stay bound to pins in the place-and-route netlist
KEEP_PORTS = ("clk", "rst")


def default_cache_dir() -> Path:
    """``$DUPNET_CACHE/report`` or ``./.cache/report``."""
    root = os.environ.get("DUPNET_CACHE")
    return (Path(root) if root else Path.cwd() / ".cache") / "report"


@dataclass(frozen=True)
class DesignSource:
    """Verilog text, its top module and a hash that identifies it (the cache key)."""
    verilog: str
    top: str
    design_hash: str = ""

    @property
    def hash(self) -> str:
        if self.design_hash:
            return self.design_hash
        return hashlib.sha256(self.verilog.encode()).hexdigest()


def resources_of(cells: dict[str, int], device: Device) -> tuple[dict[str, float], list[str]]:
    """Resources used by a cell-count table, and the cell types no family pattern knows."""
    res: dict[str, float] = {r: 0.0 for r in RESOURCES}
    unknown = []
    for t, n in sorted(cells.items()):
        per = device.family.classify(t)
        if per is None:
            unknown.append(t)
            continue
        for r, v in per.items():
            res[r] = res.get(r, 0.0) + v * n
    return res, unknown


@dataclass
class SynthResult:
    device: str
    mode: str                                   # "flat" | "hier"
    cells: dict[str, int]                       # whole design
    resources: dict[str, float]
    unclassified: list[str]
    modules: dict[str, dict[str, float]] = field(default_factory=dict)   # hier: local res.
    module_instances: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    log: str = ""                               # path of the (gzipped) log in the cache
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SynthResult":
        return cls(**d)


@dataclass
class PnrRun:
    device: str
    ok: bool
    result: PnrResult | None
    message: str = ""
    seconds: float = 0.0
    cached: bool = False
    log: str = ""
    seed: int = 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["result"] = self.result.to_json() if self.result else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PnrRun":
        d = dict(d)
        d["result"] = PnrResult.from_json(d["result"]) if d.get("result") else None
        return cls(**d)


def cache_key(design: DesignSource, device: Device, kind: str, extra: Any = None) -> str:
    tools = ["yosys"] + ([device.pnr] if kind == "pnr" and device.pnr else [])
    blob = json.dumps({"design": design.hash, "top": design.top, "kind": kind,
                       "device": device.name, "entry": device.fingerprint(),
                       "tools": tool_versions(tools), "flow": FLOW_VERSION, "extra": extra},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _cache_get(cache_dir: Path | None, key: str) -> dict[str, Any] | None:
    if cache_dir is None:
        return None
    p = cache_dir / key / "result.json"
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _cache_put(cache_dir: Path | None, key: str, result: dict[str, Any],
               logs: dict[str, Path]) -> str:
    """Store the result (and gzipped logs); returns the path of the first log."""
    if cache_dir is None:
        return ""
    d = cache_dir / key
    d.mkdir(parents=True, exist_ok=True)
    first = ""
    for name, path in logs.items():
        if path.exists():
            target = d / f"{name}.gz"
            atomic_write_bytes(target, gzip.compress(path.read_bytes(), 6))
            first = first or str(target)
    result = dict(result, log=first)
    atomic_write_bytes(d / "result.json", json.dumps(result, indent=1).encode())
    return first


def _tcl_name(name: str) -> str:
    return name if all(c.isalnum() or c in "_$" for c in name) else "\\" + name


def _yosys_script(design_file: str, top: str, device: Device, mode: str,
                  pnr_json: str | None) -> str:
    flag = device.family.flat_flag if mode == "flat" else device.family.hier_flag
    t = _tcl_name(top)
    lines = [f"read_verilog -sv {design_file}",
             f"{device.synth} -top {t} {flag}".strip()]
    if mode == "flat":
        lines += FLATTEN_STAGES.splitlines()
    lines += ["tee -q -o stat.json stat -json", "tee -q -o stat.txt stat"]
    if pnr_json:
        keep = " ".join(f"{t}/w:{p}" for p in KEEP_PORTS)
        lines += [f"select -set data_ports {t}/x:* {keep} %d",
                  "delete -port @data_ports",
                  f"write_json {pnr_json}"]
    return "\n".join(lines) + "\n"


def _label(device: Device, what: str) -> str:
    return f"[{device.name}] {what}: "


def synthesize(design: DesignSource, device: Device, mode: str = "flat",
               cache_dir: Path | None = None, progress: Progress | None = None,
               pnr_netlist: Path | None = None, require_netlist: bool = False
               ) -> SynthResult:
    """Synthesize ``design`` for ``device``; ``mode`` "flat" (fit numbers) or "hier"
    (per-module). With ``pnr_netlist`` (flat only) a run writes the place-and-route netlist
    there; a cache hit writes none, unless ``require_netlist`` (then Yosys runs again)."""
    if mode not in ("flat", "hier"):
        raise ValueError(f"mode must be 'flat' or 'hier', got {mode!r}")
    key = cache_key(design, device, mode)
    hit = _cache_get(cache_dir, key)
    if hit is not None and not (require_netlist and pnr_netlist is not None
                                and not pnr_netlist.exists()):
        res = SynthResult.from_json(hit)
        res.cached = True
        if progress:
            progress(f"{_label(device, 'synth ' + mode)}cached")
        return res
    with tempfile.TemporaryDirectory(prefix="dupnet-synth-") as tmp:
        tmpd = Path(tmp)
        (tmpd / "design.v").write_text(design.verilog)
        script = _yosys_script("design.v", design.top, device, mode,
                               "pnr.json" if pnr_netlist is not None else None)
        (tmpd / "synth.ys").write_text(script)
        log = tmpd / "synth.log"
        run = run_tool("yosys", ["-s", "synth.ys"], cwd=tmpd, log_path=log, progress=progress,
                       label=_label(device, f"synth {mode}"))
        if run.returncode != 0:
            errs = yosys_errors(run.log) or run.log.strip().splitlines()[-5:]
            keep = _keep_failed_log(log, cache_dir, key)
            raise ToolError(f"yosys failed for target {device.name} ({mode}): "
                            f"{'; '.join(errs)} (log: {keep})")
        stat_json = tmpd / "stat.json"
        if stat_json.exists():
            stat = parse_stat_json(stat_json.read_text(), top=design.top)
        else:
            stat = parse_stat_text((tmpd / "stat.txt").read_text(), top=design.top)
        cells = stat.total()
        resources, unknown = resources_of(cells, device)
        modules: dict[str, dict[str, float]] = {}
        instances: dict[str, int] = {}
        if mode == "hier":
            instances = stat.instance_paths()
            for m in instances:
                modules[m], _ = resources_of(stat.modules.get(m, {}), device)
        if pnr_netlist is not None:
            pnr_netlist.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmpd / "pnr.json", pnr_netlist)
        res = SynthResult(device=device.name, mode=mode, cells=cells, resources=resources,
                          unclassified=unknown, modules=modules, module_instances=instances,
                          seconds=round(run.seconds, 2), versions=tool_versions(["yosys"]))
        res.log = _cache_put(cache_dir, key, res.to_json(), {"synth.log": log})
    if progress:
        progress(f"{_label(device, 'synth ' + mode)}done in {res.seconds:.1f} s")
    return res


def _keep_failed_log(log: Path, cache_dir: Path | None, key: str) -> str:
    if cache_dir is None or not log.exists():
        return "not kept"
    d = cache_dir / "failed"
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{key}.log"
    shutil.copyfile(log, target)
    return str(target)


def pnr_cached(design: DesignSource, device: Device, cache_dir: Path | None,
               seed: int = 1) -> bool:
    """Whether :func:`place_and_route` would answer from the cache (then the flat synthesis
    need not write a netlist)."""
    if not device.has_pnr:
        return True
    key = cache_key(design, device, "pnr", extra={"seed": seed, "keep": KEEP_PORTS})
    return _cache_get(cache_dir, key) is not None


def place_and_route(design: DesignSource, device: Device, netlist: Path,
                    cache_dir: Path | None = None, progress: Progress | None = None,
                    seed: int = 1) -> PnrRun:
    """nextpnr on the netlist written by :func:`synthesize`; fmax of the slowest clock."""
    if not device.has_pnr:
        return PnrRun(device=device.name, ok=False, result=None,
                      message="no open place-and-route for this family in this toolset "
                              "(synthesis only, no fmax)")
    key = cache_key(design, device, "pnr", extra={"seed": seed, "keep": KEEP_PORTS})
    hit = _cache_get(cache_dir, key)
    if hit is not None:
        r = PnrRun.from_json(hit)
        r.cached = True
        if progress:
            progress(f"{_label(device, 'pnr')}cached")
        return r
    if not netlist.exists():
        raise ToolError(f"{device.name}: place-and-route netlist {netlist} missing")
    with tempfile.TemporaryDirectory(prefix="dupnet-pnr-") as tmp:
        tmpd = Path(tmp)
        log = tmpd / "pnr.log"
        # the WebAssembly tools see the working directory only: copy the netlist in
        shutil.copyfile(netlist, tmpd / "netlist.json")
        args = [*device.pnr_args, "--json", "netlist.json", "--report", "report.json",
                "--seed", str(seed), "--timing-allow-fail"]
        if device.pnr_freq_mhz:
            args += ["--freq", f"{device.pnr_freq_mhz:g}"]
        run = run_tool(device.pnr, args, cwd=tmpd, log_path=log, progress=progress,
                       label=_label(device, "pnr"))
        report = tmpd / "report.json"
        if run.returncode == 0 and report.exists():
            result = parse_nextpnr_report(report.read_text())
            if result.fmax_mhz is None:        # combinational design: no clock in the report
                result = parse_nextpnr_log(run.log)
            r = PnrRun(device=device.name, ok=True, result=result, seconds=round(run.seconds, 2),
                       seed=seed)
        else:
            errs = [l.strip() for l in run.log.splitlines() if l.startswith("ERROR")]
            r = PnrRun(device=device.name, ok=False, result=parse_nextpnr_log(run.log),
                       message="; ".join(errs[:3]) or f"nextpnr exited with {run.returncode}",
                       seconds=round(run.seconds, 2), seed=seed)
        if r.ok:       # failures are not cached: a rerun (e.g. another seed) may succeed
            r.log = _cache_put(cache_dir, key, r.to_json(), {"pnr.log": log})
        else:
            r.log = _keep_failed_log(log, cache_dir, key)
    if progress:
        state = f"fmax {r.result.fmax_mhz:.1f} MHz" if r.ok and r.result and r.result.fmax_mhz \
            else ("failed: " + r.message if not r.ok else "done")
        progress(f"{_label(device, 'pnr')}{state} in {r.seconds:.1f} s")
    return r

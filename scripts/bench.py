#!/usr/bin/env python
"""`make bench`: every benchmark of the toolkit, one after the other, each printing its figures
beside the baseline measured in the same run (see each script's docstring).

usage: .venv/bin/python scripts/bench.py [--only golden,train,hw,sim,report]

Expect about an hour on 2 cores, most of it in training three networks (bench_train) and
synthesizing the paper-size design (bench_report).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "golden": ["bench_golden.py"],     # golden model frames/s vs PyTorch float eval
    "train": ["bench_train.py"],       # training images/s; AP of demo / ifq / float
    "hw": ["bench_hw.py"],             # elaboration time; LUTs per lane-bit vs FINN's model
    "sim": ["bench_sim.py"],           # Verilator build / frame time; cocotb vs Amaranth sim
    "report": ["bench_report.py"],     # analytic vs measured LUT/BRAM; report time
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown bench {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    failed = []
    for name in names:
        print(f"\n===== bench {name} =====", flush=True)
        t = time.monotonic()
        rc = subprocess.call([sys.executable, str(HERE / BENCHES[name][0]),
                              *BENCHES[name][1:]])
        print(f"===== bench {name}: exit {rc}, {time.monotonic() - t:.0f} s =====", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

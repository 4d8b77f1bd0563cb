#!/usr/bin/env python3
"""Frames/s at the place-and-route fmax: the device-fitted designs, synthesized and placed.

For each design of :data:`DESIGNS` the bench runs the commands a user runs (a random artifact,
seed 1: the hardware does not depend on the weights' values, only on their shapes)::

    dupnet init CONFIG --seed 1 -o A.dupnet
    dupnet rtl A.dupnet --device DEVICE [--fps F] -o RTL
    dupnet report RTL --target DEVICE -o REP --no-per-module

and reads ``REP/report.json``: cycles/frame, LUT / FF / block RAM / SPRAM used, nextpnr's
fmax, frames/s (fmax / cycles per frame), whether it fits, and the critical path. It judges:

* dupnet-tinier-yolo on the ECP5-25F with ``--fps 100``: fits and >= 100 frames/s (issue 12);
* dupnet-demo on the iCE40 UP5K: fits and >= 30 frames/s (issue 11);
* dupnet-demo on the ECP5-25F at its fastest fitting design: fits (its frames/s is printed).

Each figure is printed beside the figure recorded when the target was set
(:data:`RECORDED`, with where it was measured; a recorded figure, not one measured in this
run: the code it came from is gone) and the ratio. Synthesis results are cached
(``--cache-dir``, keyed by the design's hash), so a rerun of unchanged designs takes seconds;
cold, the three designs take about 20-30 minutes on 2 cores (most of it dupnet-tinier-yolo).

usage: .venv/bin/python scripts/bench_fps.py [--only NAME,...] [--work DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import Verdict, Verdicts, check, fmt, verdict  # noqa: E402  (no package)


@dataclass(frozen=True)
class Design:
    """One benchmarked design: a config on a device, ``dupnet rtl`` options, and the target
    frames/s (None: printed, not judged)."""
    name: str
    config: str
    device: str
    rtl_args: tuple[str, ...] = ()
    target_fps: float | None = None


DESIGNS = (
    Design("tinier-yolo@ecp5-25f", "dupnet-tinier-yolo", "ecp5-25f", ("--fps", "100"), 100.0),
    Design("demo@ice40-up5k", "dupnet-demo", "ice40-up5k", (), 30.0),
    Design("demo@ecp5-25f", "dupnet-demo", "ecp5-25f", (), None),
)

#: frames/s (and what else was recorded) when the targets were set, by design name
RECORDED = {
    "tinier-yolo@ecp5-25f": {"fps": 37.1, "lut": 12894, "bram": 55,
                             "where": "issue 12 (session 4): dupnet rtl --device ecp5-25f, "
                                      "1,557,504 cycles/frame at 57.8 MHz"},
    "demo@ice40-up5k": {"fps": 92.6, "lut": 3323, "bram": 25,
                        "where": "session 4: dupnet rtl --device ice40-up5k, 27.3 MHz"},
    "demo@ecp5-25f": {"fps": None, "lut": None, "bram": None,
                      "where": "issue 12: dupnet-demo placed at 57.8 MHz (another folding)"},
}


@dataclass
class Measured:
    """What one design measured (from ``report.json``)."""
    name: str
    cycles_per_frame: int
    lut: float
    ff: float
    bram: float
    spram: float
    fmax_mhz: float | None
    fps: float | None
    fits: bool
    critical_path: str | None
    seconds: float


def run(cmd: list[str], log) -> None:
    """Run one dupnet command; its output goes to ``log``; a failure raises with its tail."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(p.stdout)
    log.flush()
    if p.returncode:
        tail = "\n".join(p.stdout.splitlines()[-8:])
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{tail}")


def measure(d: Design, work: Path, cache: Path, dupnet: str) -> Measured:
    """Build, synthesize and place one design; its figures from ``report.json``."""
    start = time.time()
    base = work / d.name
    base.mkdir(parents=True, exist_ok=True)
    art, rtl, rep = base / "design.dupnet", base / "rtl", base / "rep"
    with open(base / "log.txt", "w") as log:
        if not art.exists():
            run([dupnet, "init", d.config, "--seed", "1", "-o", str(art)], log)
        for old in (rtl, rep):          # this bench's own build products of a previous run
            shutil.rmtree(old, ignore_errors=True)
        run([dupnet, "rtl", str(art), "--device", d.device, *d.rtl_args, "-o", str(rtl)], log)
        run([dupnet, "report", str(rtl), "--target", d.device, "-o", str(rep),
             "--no-per-module", "--cache-dir", str(cache)], log)
    return from_report(d.name, json.loads((rep / "report.json").read_text()),
                       time.time() - start)


def from_report(name: str, report: dict, seconds: float) -> Measured:
    """The figures of a ``dupnet report`` JSON with one target."""
    t = report["targets"][0]
    res = t["synth"]["resources"]
    cp = t.get("critical_path") or {}
    return Measured(name, int(report["pipeline"]["cycles_per_frame"]), res["lut"], res["ff"],
                    res["bram"], res.get("spram", 0.0), t.get("fmax_mhz"), t.get("fps"),
                    bool(t["fit"]["fits"]), cp.get("summary"), seconds)


def judge(d: Design, m: Measured) -> list[Verdict]:
    """The design fits; its frames/s meets the target (where there is one), printed beside
    the recorded figure."""
    rec = RECORDED.get(d.name, {})
    out = [check(f"fps {d.name} fits the device", m.fits,
                 f"LUT {fmt(m.lut)}, BRAM {fmt(m.bram)}, SPRAM {fmt(m.spram)}")]
    if d.target_fps is not None:
        out.append(verdict(f"fps {d.name} frames/s at P&R fmax",
                           m.fps if m.fps is not None else float("nan"), rec.get("fps"),
                           d.target_fps, cmp=">=", unit="frames/s",
                           baseline_name="recorded"))
    return out


def table(rows: list[Measured]) -> str:
    head = ("| design | cycles/frame | LUT | FF | BRAM | SPRAM | fmax MHz | frames/s | "
            "recorded frames/s | fits | critical path |")
    lines = [head, "|" + "---|" * 11]
    for m in rows:
        rec = RECORDED.get(m.name, {}).get("fps")
        lines.append(f"| {m.name} | {m.cycles_per_frame:,} | {fmt(m.lut)} | {fmt(m.ff)} | "
                     f"{fmt(m.bram)} | {fmt(m.spram)} | {fmt(m.fmax_mhz)} | {fmt(m.fps)} | "
                     f"{fmt(rec)} | {m.fits} | {m.critical_path or 'n/a'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="",
                    help=f"comma-separated designs (default all: "
                         f"{', '.join(d.name for d in DESIGNS)})")
    ap.add_argument("--work", default="build/bench-fps", help="where the designs are built")
    ap.add_argument("--cache-dir", default=".cache/report", help="synthesis cache")
    ap.add_argument("--json", default=None, help="write the figures as JSON to FILE")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {d.name for d in DESIGNS})
    if unknown:
        print(f"bench_fps: unknown design(s) {', '.join(unknown)}; known: "
              f"{', '.join(d.name for d in DESIGNS)}", file=sys.stderr)
        return 2
    designs = [d for d in DESIGNS if not names or d.name in names]
    dupnet = str(Path(sys.executable).with_name("dupnet"))
    vs = Verdicts()
    rows = []
    for d in designs:
        print(f"[{d.name}] dupnet rtl --device {d.device} {' '.join(d.rtl_args)}, "
              f"dupnet report (recorded: {RECORDED[d.name]['where']})", flush=True)
        try:
            m = measure(d, Path(args.work), Path(args.cache_dir), dupnet)
        except RuntimeError as e:
            vs.add(check(f"fps {d.name} built, synthesized and placed", False, str(e)))
            continue
        rows.append(m)
        print(f"[{d.name}] {m.cycles_per_frame:,} cycles/frame, {fmt(m.fmax_mhz)} MHz, "
              f"{fmt(m.fps)} frames/s ({m.seconds:.0f} s)", flush=True)
        for v in judge(d, m):
            vs.add(v)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(m) for m in rows], indent=1) + "\n")
    return vs.exit_code()


if __name__ == "__main__":
    sys.exit(main())

"""Capture the real tool outputs the parser tests read (``data/``), from ``data/tiny.v``::

    .venv/bin/python tests/budget/capture_logs.py
"""
from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

from dupnet.hw.budget.devices import load_devices
from dupnet.hw.budget.flow import _yosys_script
from dupnet.hw.budget.tools import run_tool

DATA = Path(__file__).parent / "data"


def main() -> None:
    devices = load_devices()
    for name in ("ice40-up5k", "ecp5-25f", "artix7-35t"):
        d = devices[name]
        fam = d.family.name
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            shutil.copyfile(DATA / "tiny.v", t / "design.v")
            for mode in ("flat", "hier"):
                (t / "s.ys").write_text(_yosys_script("design.v", "dupnet_top", d, mode,
                                                      "pnr.json" if d.pnr and mode == "flat"
                                                      else None))
                r = run_tool("yosys", ["-s", "s.ys"], cwd=t)
                assert r.returncode == 0, r.log[-2000:]
                shutil.copyfile(t / "stat.json", DATA / f"{fam}_{mode}.stat.json")
                shutil.copyfile(t / "stat.txt", DATA / f"{fam}_{mode}.stat.txt")
                if mode == "flat":
                    (DATA / f"{fam}_flat.yosys.log.gz").write_bytes(gzip.compress(r.log.encode()))
            if d.pnr:
                args = [*d.pnr_args, "--json", "pnr.json", "--report", "report.json",
                        "--seed", "1", "--timing-allow-fail", "--freq", f"{d.pnr_freq_mhz:g}"]
                r = run_tool(d.pnr, args, cwd=t)
                assert r.returncode == 0, r.log[-2000:]
                (DATA / f"{fam}.nextpnr.log").write_text(r.log)
                shutil.copyfile(t / "report.json", DATA / f"{fam}.nextpnr.report.json")
        print("captured", name)
    # a failing place-and-route: more block RAMs than the device has (iCE40 UP5K: 30)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "big.v").write_text(_big_rom_design(40))
        d = devices["ice40-up5k"]
        (t / "s.ys").write_text(_yosys_script("big.v", "big", d, "flat", "pnr.json"))
        assert run_tool("yosys", ["-s", "s.ys"], cwd=t).returncode == 0
        r = run_tool(d.pnr, [*d.pnr_args, "--json", "pnr.json", "--timing-allow-fail"], cwd=t)
        assert r.returncode != 0
        (DATA / "ice40.nextpnr.fail.log").write_text(r.log)
    print("captured failing ice40 run")


def _big_rom_design(n: int) -> str:
    mods = []
    for i in range(n):
        mods.append(f"  reg [15:0] m{i} [0:255]; reg [15:0] q{i};\n"
                    f"  always @(posedge clk) begin if (we) m{i}[a] <= d; q{i} <= m{i}[a]; end\n")
    xor = " ^ ".join(f"q{i}" for i in range(n))
    return ("module big(input clk, input we, input [7:0] a, input [15:0] d, output [15:0] y);\n"
            + "".join(mods) + f"  assign y = {xor};\nendmodule\n")


if __name__ == "__main__":
    main()

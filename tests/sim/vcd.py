"""Reading the time range of a wave file (VCD) in tests, its timestamps' unit, and the wave
file a ``dupnet sim`` run printed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest


def printed_waves(out: str) -> Path:
    """The path of ``waves (cycles A..B): PATH``, as ``dupnet sim`` prints it."""
    m = re.search(r"^waves \(cycles [^)]*\): (\S+)$", out, re.M)
    assert m, out
    return Path(m.group(1))


def vcd_times(path: Path) -> tuple[int, int, int]:
    """``(first, last, count)`` of the ``#<time>`` stamps of a VCD file (``pytest.skip`` on an
    FST file: where lz4 is installed the benches write FST, which this helper cannot read)."""
    path = Path(path)
    if path.suffix == ".fst":
        pytest.skip("waves are FST here (lz4 installed); the time check reads VCD")
    first = last = None
    count = 0
    in_body = False
    with open(path, "rb") as f:
        for line in f:
            if not in_body:
                in_body = line.startswith(b"$enddefinitions")
                continue
            if line.startswith(b"#"):
                t = int(line[1:])
                first = t if first is None else first
                last = t
                count += 1
    assert in_body and count, f"{path}: no timestamps after the header"
    return first, last, count


def vcd_timescale_ps(path: Path) -> int:
    """The VCD's ``$timescale`` in picoseconds (``1ps``, ``1ns``, ...)."""
    text = Path(path).read_bytes()[:20_000].decode(errors="replace")
    i = text.index("$timescale") + len("$timescale")
    spec = text[i:text.index("$end", i)].split()
    value = "".join(spec)
    units = {"fs": 1e-3, "ps": 1, "ns": 1e3, "us": 1e6, "ms": 1e9, "s": 1e12}
    for u in sorted(units, key=len, reverse=True):
        if value.endswith(u):
            return int(float(value[:-len(u)]) * units[u])
    raise AssertionError(f"{path}: cannot read $timescale {value!r}")


def rerun_waves(err: str) -> tuple[int, int, int, Path]:
    """What a failing ``dupnet sim`` printed about its re-run with waves: the window's first
    and last cycle, the first mismatch's cycle, and the wave file."""
    m = re.search(r"\(cycles (\d+)\.\.(\d+), around the first mismatch at cycle (\d+)\)", err)
    assert m, err
    start, last, cycle = (int(v) for v in m.groups())
    w = re.search(r"waves of the failing run \(cycles \d+\.\.\d+\): (\S+)", err)
    assert w, err
    return start, last, cycle, Path(w.group(1))

"""Shared fixtures of the RTL benches and the regression summary table.

Each sim test records one row with ``sim_row(...)`` (kept in the test report's
``user_properties``, which pytest-xdist ships to the controller); the terminal summary prints
them as a table at the end of ``make sim`` / ``make test``.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def sim_row(record_property):
    """``sim_row(case=..., result=..., cycles=..., ...)`` adds a row to the summary table."""
    def add(**fields):
        record_property("sim_row", fields)
    return add


COLUMNS = ["case", "result", "words", "cycles/frame", "model", "latency", "model_lat",
           "build_s", "sim_s", "cyc/s"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = []
    for key in ("passed", "failed", "xfailed", "xpassed"):
        for rep in terminalreporter.stats.get(key, []):
            if getattr(rep, "when", "call") != "call":
                continue
            for name, val in getattr(rep, "user_properties", []):
                if name == "sim_row":
                    row = dict(val)
                    row.setdefault("result", key)
                    rows.append(row)
    if not rows:
        return
    rows.sort(key=lambda r: str(r.get("case")))
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    tr = terminalreporter
    tr.write_sep("=", "RTL simulation summary (dupnet.sim)")
    tr.write_line("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    tr.write_line("  ".join("-" * w for w in widths))
    for x in cells:
        tr.write_line("  ".join(v.ljust(w) for v, w in zip(x, widths)))

"""Root conftest of the test suite: the RTL regression's summary table.

The rows are recorded by the ``sim_row`` fixture (``tests/sim/conftest.py``) into each test
report's ``user_properties``, which pytest-xdist ships from the workers to the controller.
The hook that prints them lives here, in the root conftest, because pytest calls
``pytest_terminal_summary`` only from conftests the controller has loaded: with ``-n 2``
(``make sim``, ``make test``) the controller collects nothing, so a conftest below ``tests/``
is never loaded there and its hook never runs.  ``tests/test_sim_summary.py`` checks this.
"""
from __future__ import annotations

SIM_SUMMARY_TITLE = "RTL simulation summary (dupnet.sim)"
COLUMNS = ["case", "result", "words", "cycles/frame", "model", "latency", "model_lat",
           "build_s", "sim_s", "cyc/s"]


def sim_rows(stats: dict) -> list[dict]:
    """The ``sim_row`` rows of the call phase of every test, sorted by case; a row without a
    ``result`` gets the test's outcome."""
    rows = []
    for key in ("passed", "failed", "xfailed", "xpassed"):
        for rep in stats.get(key, []):
            if getattr(rep, "when", "call") != "call":
                continue
            for name, val in getattr(rep, "user_properties", []):
                if name == "sim_row":
                    row = dict(val)
                    row.setdefault("result", key)
                    rows.append(row)
    rows.sort(key=lambda r: str(r.get("case")))
    return rows


def sim_table(rows: list[dict]) -> list[str]:
    """The table's lines: a header, a rule, one line per row; only the columns some row has."""
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths)) for x in cells]
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = sim_rows(terminalreporter.stats)
    if not rows:
        return
    terminalreporter.write_sep("=", SIM_SUMMARY_TITLE)
    for line in sim_table(rows):
        terminalreporter.write_line(line.rstrip())

"""The RTL summary table of ``make sim`` appears, with xdist and without.

A tiny fake sim test suite is laid out like ours (``tests/conftest.py``, ``tests/sim/
conftest.py``: copies of the real files) and run in a subprocess the way ``make sim`` runs
(``-m sim tests``, with ``-n``), and once without xdist. The rows it records (one from a
passing test, one from a failing one) must come out as exactly one table. With the hook in
``tests/sim/conftest.py`` (where it used to be) the xdist run prints no table: the controller
never loads a conftest below the root.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TITLE = "RTL simulation summary (dupnet.sim)"

FAKE_TESTS = '''
import pytest

pytestmark = pytest.mark.sim


def test_row(sim_row):
    sim_row(case="fake unit nostall", result="passed", words=12,
            **{"cycles/frame": 1890, "model": 1890, "sim_s": "0.5"})


def test_failing_row(sim_row):
    sim_row(case="fake broken", words=3, **{"cycles/frame": 41, "model": 40})
    assert False, "planted failure"
'''


def _fake_suite(root: Path) -> Path:
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = tests\naddopts = -p no:cacheprovider\n"
                                     "markers =\n    sim: builds Verilator models\n")
    sim = root / "tests" / "sim"
    sim.mkdir(parents=True)
    for d in (root / "tests", sim):
        (d / "__init__.py").write_text("")
    shutil.copy(TESTS / "conftest.py", root / "tests" / "conftest.py")
    shutil.copy(TESTS / "sim" / "conftest.py", sim / "conftest.py")
    (sim / "test_fake.py").write_text(FAKE_TESTS)
    return root


def _table(out: str) -> list[dict[str, str]]:
    """The rows of the one summary table in ``out``, cut at the columns of its rule line."""
    lines = out.splitlines()
    starts = [n for n, line in enumerate(lines) if TITLE in line]
    assert len(starts) == 1, f"expected one summary table, found {len(starts)}:\n{out}"
    header, rule = lines[starts[0] + 1], lines[starts[0] + 2]
    spans, pos = [], 0
    for dashes in rule.split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    cols = [header[a:b].strip() for a, b in spans]
    rows = []
    for line in lines[starts[0] + 3:]:
        if not line.strip() or line.startswith("="):
            break
        rows.append({c: line[a:b].strip() for c, (a, b) in zip(cols, spans)})
    return rows


@pytest.mark.parametrize("mode", [["-n", "1"], ["-p", "no:xdist"]], ids=["xdist", "no-xdist"])
def test_sim_summary_table_appears(tmp_path, mode):
    root = _fake_suite(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", *mode, "-m", "sim", "tests"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "1 failed, 1 passed" in out, out
    assert _table(out) == [
        {"case": "fake broken", "result": "failed", "words": "3", "cycles/frame": "41",
         "model": "40", "sim_s": ""},
        {"case": "fake unit nostall", "result": "passed", "words": "12",
         "cycles/frame": "1890", "model": "1890", "sim_s": "0.5"},
    ], out

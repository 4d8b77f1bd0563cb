"""Parsers of Yosys / nextpnr output, on real logs captured from the tiny design
(tests/budget/capture_logs.py)."""
import gzip
import re
from pathlib import Path

import pytest

from dupnet.hw.budget.parsers import (ParseError, parse_nextpnr_log, parse_nextpnr_report,
                                      parse_stat_json, parse_stat_text, yosys_errors,
                                      yosys_pass_title)

DATA = Path(__file__).parent / "data"
FAMILIES = ["ice40", "ecp5", "xc7"]


def _text_counts(path: Path) -> dict[str, int]:
    """Independent reading of the text stat: the last '=== top ===' cell lines."""
    counts = {}
    for m in re.finditer(r"^\s+(\d+)\s{3}(\S+)$", path.read_text(), re.M):
        counts[m.group(2)] = int(m.group(1))
    return counts


@pytest.mark.parametrize("fam", FAMILIES)
def test_stat_json_equals_text_flat(fam):
    js = parse_stat_json((DATA / f"{fam}_flat.stat.json").read_text(), top="dupnet_top")
    tx = parse_stat_text((DATA / f"{fam}_flat.stat.txt").read_text(), top="dupnet_top")
    assert js.total() == tx.total() == _text_counts(DATA / f"{fam}_flat.stat.txt")
    assert js.total()  # the flat design has cells


@pytest.mark.parametrize("fam", FAMILIES)
def test_stat_hierarchy(fam):
    js = parse_stat_json((DATA / f"{fam}_hier.stat.json").read_text())
    tx = parse_stat_text((DATA / f"{fam}_hier.stat.txt").read_text())
    assert js.top == tx.top == "dupnet_top"          # found as the root of the hierarchy
    assert set(js.modules) == set(tx.modules)
    subs = {"dupnet_top.conv1_mvtu", "dupnet_top.conv1_window", "dupnet_top.pool1_pool"}
    assert set(js.submodules["dupnet_top"]) == subs
    # the total is the sum of the modules (each instantiated once)
    total = {}
    for m in js.modules:
        for t, n in js.modules[m].items():
            total[t] = total.get(t, 0) + n
    assert js.total() == total == tx.total()
    assert js.instance_paths() == {"dupnet_top": 1, **{s: 1 for s in subs}}


def test_stat_ice40_known_cells():
    cells = parse_stat_json((DATA / "ice40_flat.stat.json").read_text()).total()
    text = (DATA / "ice40_flat.stat.txt").read_text()
    luts = int(re.search(r"(\d+)\s+SB_LUT4", text).group(1))
    brams = int(re.search(r"(\d+)\s+SB_RAM40_4K", text).group(1))
    assert cells["SB_LUT4"] == luts and cells["SB_RAM40_4K"] == brams == 2


def test_stat_errors():
    with pytest.raises(ParseError, match="not JSON"):
        parse_stat_json("{")
    with pytest.raises(ParseError, match="modules"):
        parse_stat_json("{}")
    with pytest.raises(ParseError, match="no '=== module ==='"):
        parse_stat_text("nothing here")
    with pytest.raises(ParseError, match="top module 'nope'"):
        parse_stat_json((DATA / "ice40_flat.stat.json").read_text(), top="nope")


def test_yosys_log_helpers():
    log = gzip.decompress((DATA / "ice40_flat.yosys.log.gz").read_bytes()).decode()
    titles = [t for t in map(yosys_pass_title, log.splitlines()) if t]
    assert any("SYNTH_ICE40" in t for t in titles) and any("ABC9" in t for t in titles)
    assert yosys_errors(log) == []
    assert yosys_errors("x\nERROR: Module `foo' not found!\n") == ["Module `foo' not found!"]


@pytest.mark.parametrize("fam", ["ice40", "ecp5"])
def test_nextpnr_report_matches_log(fam):
    rep = parse_nextpnr_report((DATA / f"{fam}.nextpnr.report.json").read_text())
    log_text = (DATA / f"{fam}.nextpnr.log").read_text()
    log = parse_nextpnr_log(log_text)
    assert log.routed
    # the post-route figure is the last 'Max frequency' line of the log
    last = float(re.findall(r"Max frequency for clock '[^']+': ([0-9.]+) MHz", log_text)[-1])
    assert log.fmax_mhz == pytest.approx(last)
    assert rep.fmax_mhz == pytest.approx(last, abs=0.01)
    assert set(rep.clocks) == set(log.clocks) == {"clk"}
    assert log.clocks["clk"]["target_mhz"] == rep.clocks["clk"]["target_mhz"]
    for bel, (used, avail) in log.utilization.items():
        assert rep.utilization[bel] == (used, avail)
    logic = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[fam]
    m = re.search(rf"{logic}:\s+(\d+)/\s*(\d+)", log_text)
    assert log.utilization[logic] == (int(m.group(1)), int(m.group(2)))


def test_nextpnr_failed_log():
    text = (DATA / "ice40.nextpnr.fail.log").read_text()
    r = parse_nextpnr_log(text)
    assert not r.routed and r.fmax_mhz is None
    used, avail = r.utilization["ICESTORM_RAM"]
    assert avail == 30 and used > avail
    assert "no BELs remaining" in text

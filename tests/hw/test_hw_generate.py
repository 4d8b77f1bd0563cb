"""Verilog generation: ROM bits of the emitted memories, determinism, no host paths, lint,
and the `dupnet rtl` command."""
import json
import os
import re

import pytest

from dupnet.hw.folding import Folding
from dupnet.hw.generate import count_verilog_memory_bits, generate_verilog, write_design
from dupnet.hw.lint import lint_verilog

FOLD = Folding({"conv1": (2, 3), "conv2": (4, 2), "conv3": (2, 8), "conv4": (3, 4)})
FOLD_DESIGNS: dict = {}


@pytest.fixture(scope="module")
def design(small_art):
    return generate_verilog(small_art, FOLD, probes=True)


def test_rom_bits_equal_unique_bits_in_generated_verilog(design, small_art):
    unique = sum(g.unique_weight_bits for g in small_art.geometries)
    assert design.rom_bits_instantiated == unique
    # the memories actually emitted into the Verilog, counted from their declarations
    assert count_verilog_memory_bits(design.verilog) == unique
    assert design.summary["model"]["rom_bits"] == unique


@pytest.mark.parametrize("arith", ["xnor", "gated"])
def test_threshold_and_offset_rom_bits_in_generated_verilog(small_art, arith):
    """t_rom / k_rom declarations of the emitted Verilog == the analytic
    ``threshold_rom_bits`` (``FoldedConv.threshold_rom``), for both datapaths."""
    fold = Folding(dict(FOLD.layers), arith=arith)
    d = FOLD_DESIGNS[arith] = FOLD_DESIGNS.get(arith) or generate_verilog(small_art, fold)
    want = d.summary["model"]["threshold_rom_bits"]
    assert want > 0
    assert count_verilog_memory_bits(d.verilog, r"[tk]_rom") == want
    assert d.summary["design"]["arith"] == d.summary["folding"]["arith"] == arith


def test_ports_and_names(design, small_art):
    v = design.verilog
    head = re.search(r"module dupnet_top\((.*?)\);", v, re.S).group(1)
    ports = {p.strip() for p in head.split(",")}
    for p in ("clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid", "o__ready",
              "o__payload", "probe_conv1__valid", "probe_pool2__payload",
              "probe_conv4__ready"):
        assert p in ports, p
    pe, acc_bits = 3, small_art.geometries[-1].acc_bits
    assert re.search(rf"output \[{pe * acc_bits}:0\] o__payload;", v)
    assert design.summary["design"]["ports"]["o__payload"] == pe * acc_bits + 1
    for sub in ("conv1_window", "conv1_mvtu", "pool1_pool", "conv4_mvtu"):
        assert f"dupnet_top.{sub}" in v
    # a width adapter in front of each layer whose input lanes differ from its upstream's
    adapters = design.summary["design"]["adapters"]
    assert adapters, "the small design's conv1 (PE 3) feeds a pool and a conv of other lanes"
    for name in adapters:
        assert f"dupnet_top.{name}_adapt" in v


def test_no_host_paths_and_deterministic(design, small_art):
    assert "/work" not in design.verilog and "/tmp" not in design.verilog
    assert os.path.expanduser("~") not in design.verilog
    assert not re.search(r"/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/", design.verilog.splitlines()[0])
    again = generate_verilog(small_art, FOLD, probes=True)
    assert again.design_hash == design.design_hash


def test_lint_clean(design):
    r = lint_verilog(design.verilog, top=design.top_name)
    assert r.ok, r.output[-3000:]


def test_write_design(tmp_path, design):
    files = write_design(design, tmp_path / "out")
    assert files["verilog"].read_text() == design.verilog
    summary = json.loads(files["summary"].read_text())
    assert summary["design"]["design_hash"] == design.design_hash
    assert "lint_off -rule" in files["waivers"].read_text()
    assert "[conv1]" in files["folding"].read_text()


def test_cli_rtl(tmp_path, small_art, capsys):
    from dupnet.cli import main
    art_path = small_art.save(tmp_path / "a.dupnet")
    fold = tmp_path / "f.toml"
    fold.write_text(FOLD.to_toml())
    assert main(["rtl", str(art_path), "--folding", str(fold), "-o", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "dupnet_top.v").exists()
    assert main(["rtl", str(art_path), "--target-cycles", "5000", "-o",
                 str(tmp_path / "o2")]) == 0
    s = json.loads((tmp_path / "o2" / "dupnet_top.json").read_text())
    assert s["model"]["cycles_per_frame"] <= 5000
    capsys.readouterr()
    # clear errors, no traceback
    assert main(["rtl", str(tmp_path / "missing.dupnet"), "-o", str(tmp_path / "x")]) == 2
    assert "artifact file not found" in capsys.readouterr().err
    assert main(["rtl", str(art_path), "--target-cycles", "3", "-o", str(tmp_path / "x")]) == 2
    assert "impossible" in capsys.readouterr().err
    assert main(["rtl", str(art_path), "--lut-budget", "5", "-o", str(tmp_path / "x")]) == 2
    assert "impossible" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[conv1]\npe = 3\nsimd = 1\n")
    assert main(["rtl", str(art_path), "--folding", str(bad), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "conv1" in err and "pe" in err and "Traceback" not in err


def _module_sizes(verilog):
    """Lines per module of a Yosys-written Verilog file."""
    sizes, name, start = {}, None, 0
    for n, line in enumerate(verilog.splitlines()):
        if line.startswith("module "):
            name, start = line.split()[1].split("(")[0], n
        elif line.startswith("endmodule"):
            sizes[name] = n - start
    return sizes


def test_probes_are_pure_observation(design, small_art):
    """probes=True adds ports and wires to the top module only: every submodule is the same
    as without probes (dupnet-demo was once 3.3 MB with probes vs 0.37 MB)."""
    plain = _module_sizes(generate_verilog(small_art, FOLD, probes=False).verilog)
    probed = _module_sizes(design.verilog)
    assert plain.keys() == probed.keys()
    assert {k: v for k, v in probed.items() if k != "dupnet_top"} == \
        {k: v for k, v in plain.items() if k != "dupnet_top"}
    n_layers = len(small_art.config.layers)
    assert probed["dupnet_top"] - plain["dupnet_top"] <= 20 * n_layers


@pytest.mark.parametrize("stride", [1, 2])
def test_pool_netlist_grows_linearly_with_channels(stride):
    """The channel-wise max is built once per channel: slicing a Cat-of-Mux expression per
    channel instead copied the whole expression into every slice (quadratic: pool3/pool4 of
    dupnet-demo were ~33k Verilog lines each, 3.3 MB in all, a 686 s Verilator build)."""
    from amaranth.back import rtlil

    from dupnet.hw.folded import FoldedPool
    from dupnet.hw.pool import MaxPool
    small, big = (len(rtlil.convert(MaxPool(FoldedPool.of(4, 4, c, 2, stride)), emit_src=False))
                  for c in (8, 64))
    assert big < 10 * small, (small, big)     # 8x the channels; quadratic would be ~50x

"""End to end: `dupnet flow` on a tiny config and a few training steps produces every artifact
it promises, consistent with each other; it resumes after an interruption and keeps its work
when a step fails."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dupnet.flow import STEPS, FlowError, FlowOptions, run_flow
from dupnet.sw.artifact import Artifact
from dupnet.sw.golden import GoldenModel

from ..tiny_configs import tiny_config_toml

TINY = tiny_config_toml("flow-tiny", size=16, second_pool_stride=1)


def _opts(tmp_path, **kw):
    cfg = tmp_path / "flow-tiny.toml"
    cfg.write_text(TINY)
    base = dict(config=str(cfg), out=str(tmp_path / "run"), epochs=1, n_train=48, n_test=8,
                sim_images=2, targets="artix7-35t", pnr=False, quiet=True, target_fps=20000)
    base.update(kw)
    return FlowOptions(**base)


@pytest.mark.sim                      # the simulate step builds and runs a Verilator model
def test_flow_end_to_end_resume_and_consistency(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # a relative run folder, as `make demo` uses
    opts = _opts(tmp_path, out="run")
    # interrupted after the export: the next invocation resumes from there
    state = run_flow(opts, only_until="export")
    assert [s for s in state["steps"]] == ["train", "evaluate", "export"]
    state = run_flow(opts)
    run = Path(opts.out)
    assert all(state["steps"][name]["status"] == "done" for name, _, _ in STEPS)
    for rel in ["train/checkpoint.pt", "model.dupnet", "rtl/dupnet_top.v", "rtl/folding.toml",
                "sim/summary.log", "sim/rtl_output.npy", "report/report.html",
                "report/report.md", "report/report.json", "index.html",
                "detections/00_golden.png", "detections/00_rtl.png",
                "detections/01_golden.png", "detections/01_rtl.png"]:
        assert (run / rel).is_file(), rel
    s = {k: v["summary"] for k, v in state["steps"].items()}
    assert s["equivalence"]["mismatches"] == 0 and s["equivalence"]["acc_equal"]
    assert s["simulate"]["ok"] and s["simulate"]["frames"] == 2
    assert s["simulate"]["measured_frame_cycles"] >= s["simulate"]["analytic_frame_cycles"]
    assert s["detections"]["identical"]
    # the RTL output words are the golden model's, recomputed here independently
    art = Artifact.load(run / "model.dupnet")
    images = np.load(run / "sim" / "images.npy")
    assert np.array_equal(np.load(run / "sim" / "rtl_output.npy"), GoldenModel(art)(images))
    assert s["rtl"]["rom_bits_instantiated"] == s["export"]["unique_weight_bits"]
    assert s["report"]["targets"][0]["name"] == "artix7-35t"
    page = (run / "index.html").read_text()
    for needle in ["detections/00_rtl.png", "report/report.html", "cycles/frame", "AP@0.5"]:
        assert needle in page
    # a finished flow run again does nothing but skip
    again = subprocess.run([sys.executable, "-m", "dupnet.cli", "flow", opts.config, "-o",
                            opts.out, "--epochs", "1", "--n-train", "48", "--n-test", "8",
                            "--targets", "artix7-35t", "--no-pnr", "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skipped") == len(STEPS)


def test_flow_failed_step_keeps_work_and_says_why(tmp_path):
    bad = tmp_path / "folding.toml"
    bad.write_text("[conv1]\npe = 3\nsimd = 1\n")
    opts = _opts(tmp_path, folding=str(bad))
    with pytest.raises(FlowError) as e:
        run_flow(opts)
    msg = str(e.value)
    assert "step 'rtl' failed" in msg and "conv1" in msg and "kept" in msg
    state = json.loads((Path(opts.out) / "flow.json").read_text())
    assert state["steps"]["rtl"]["status"] == "failed"
    assert state["steps"]["export"]["status"] == "done"
    assert (Path(opts.out) / "model.dupnet").is_file()
    # the CLI prints the message, not a traceback, and exits non-zero
    r = subprocess.run([sys.executable, "-m", "dupnet.cli", "flow", opts.config, "-o", opts.out,
                        "--folding", str(bad), "--quiet", "--epochs", "1", "--n-train", "48",
                        "--n-test", "8"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "conv1" in r.stderr

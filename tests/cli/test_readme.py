"""The README's example commands run as written (so they cannot drift from the code), and the
README's two commands are the Makefile's and CI's."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dupnet.cli import build_parser

from dupnet.sw.datasets import builtin_dataset

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_examples() -> list[str]:
    block = README.split("Examples (each is run by", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    assert re.search(r"^demo:.*\n\t.*dupnet flow", (ROOT / "Makefile").read_text(), re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


# `dupnet report` synthesizes the demo design with yosys and places it with nextpnr (minutes on
# 2 cores, cold): `make test` checks its arguments, the slow run executes it too.
EXPENSIVE = ("report",)


def test_readme_examples_parse():
    cmds = readme_examples()
    assert len(cmds) >= 8 and all(c.startswith("dupnet ") for c in cmds)
    parser = build_parser()
    for cmd in cmds:
        args = parser.parse_args(shlex.split(cmd)[1:])     # SystemExit on any drift
        assert args._run is not None


def _run_examples(tmp_path, skip=()):
    (tmp_path / "build").mkdir()
    img = builtin_dataset("test", n=1, size=(96, 96), channels=1)[0].image[:, :, 0]
    Image.fromarray(img).save(tmp_path / "build" / "face.png")
    for cmd in readme_examples():
        if shlex.split(cmd)[1] in skip:
            continue
        argv = [sys.executable, "-m", "dupnet.cli"] + shlex.split(cmd)[1:]
        r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    assert (tmp_path / "build" / "rtl" / "dupnet_top.v").is_file()
    assert (tmp_path / "build" / "detections" / "face.det.png").is_file()
    assert np.asarray(Image.open(tmp_path / "build" / "detections" / "face.det.png")).ndim == 3


@pytest.mark.sim                      # `dupnet sim` builds and runs a Verilator model
def test_readme_examples_run(tmp_path):
    _run_examples(tmp_path, skip=EXPENSIVE)


@pytest.mark.sim
@pytest.mark.slow
def test_readme_examples_run_all(tmp_path):
    _run_examples(tmp_path)
    assert (tmp_path / "build" / "report" / "report.html").is_file()

"""`dupnet sim`: clear errors, a passing run, and a failing run that names its waves."""
from __future__ import annotations

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.sw.random_artifact import random_artifact

from .cases import config


@pytest.fixture
def art_path(tmp_path):
    p = tmp_path / "dup.dupnet"
    random_artifact(config("dup"), seed=1).save(p)
    return p


def test_sim_errors_are_messages(art_path, tmp_path, capsys):
    assert main(["sim", str(tmp_path / "missing.dupnet")]) == 2
    assert "artifact file not found" in capsys.readouterr().err
    np.save(tmp_path / "img.npy", np.zeros((5, 5, 3), np.uint8))
    assert main(["sim", str(art_path), "--image", str(tmp_path / "img.npy")]) == 2
    err = capsys.readouterr().err
    assert "5x5x3" in err and "6x6x3" in err and "Traceback" not in err
    (tmp_path / "f.toml").write_text("[conv9]\npe = 1\nsimd = 1\n")
    assert main(["sim", str(art_path), "--folding", str(tmp_path / "f.toml")]) == 2
    assert "unknown layer(s) 'conv9'" in capsys.readouterr().err
    assert main(["sim", str(art_path), "--folding", str(tmp_path / "nope.toml")]) == 2
    assert "folding file not found" in capsys.readouterr().err
    assert main(["sim", str(art_path), "--stall", "1.5"]) == 2
    assert "--stall" in capsys.readouterr().err


@pytest.mark.sim
def test_sim_cli_passes_and_reports_cycles(art_path, tmp_path, capsys):
    from tests.sim.cases import folding
    f = tmp_path / "fold.toml"
    f.write_text(folding(config("dup"), "mixed").to_toml())
    rc = main(["sim", str(art_path), "--random", "2", "--frames", "3", "--stall", "0.2",
               "--folding", str(f), "--probes"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PASS: 3 frame(s) bit-exact" in out and "cycles/frame measured" in out
    assert "vs analytic 972" in out

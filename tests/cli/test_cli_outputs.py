"""An output path that cannot be written is a one-line error naming it, before any work: no
``FileExistsError`` traceback from ``mkdir`` after minutes of synthesis."""
from __future__ import annotations

import pytest

from dupnet.cli import main
from dupnet.sw.config import load_config
from dupnet.sw.random_artifact import random_artifact


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    p = tmp_path_factory.mktemp("art") / "demo.dupnet"
    random_artifact(load_config("dupnet-demo"), seed=0).save(p)
    return p


def _fails_clearly(capsys, argv, bad, says):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert f"dupnet {argv[0]}: error:" in err and str(bad) in err and says in err, err
    assert "Traceback" not in err and "FileExistsError" not in err
    assert "wrote" not in captured.out                      # failed before any work


@pytest.mark.parametrize("command", ["rtl", "report", "flow", "detect"])
@pytest.mark.parametrize("below", [False, True])
def test_output_folder_that_is_a_file(command, below, art, tmp_path, capsys):
    """`-o PATH` of the commands writing a folder, PATH a regular file (or below one)."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    bad = afile / "sub" if below else afile
    argv = {"rtl": ["rtl", str(art), "-o", str(bad)],
            "report": ["report", str(art), "--target", "ice40-up5k", "-o", str(bad)],
            "flow": ["flow", "dupnet-demo", "-o", str(bad)],
            "detect": ["detect", str(art), str(tmp_path / "img.png"), "-o", str(bad)]}[command]
    _fails_clearly(capsys, argv, bad, "must be a folder")
    assert afile.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("command", ["init", "export"])
def test_output_file_that_cannot_be_written(command, tmp_path, capsys):
    """`-o ART` of the commands writing one file: a folder, or a path below a regular file."""
    src = ["dupnet-demo"] if command == "init" else [str(tmp_path)]
    (tmp_path / "afile").write_text("keep me")
    _fails_clearly(capsys, [command, *src, "-o", str(tmp_path)], tmp_path,
                   "-o must name a file")
    bad = tmp_path / "afile" / "x.dupnet"
    _fails_clearly(capsys, [command, *src, "-o", str(bad)], bad, "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "keep me"


def test_train_out_that_is_a_file(tmp_path, capsys):
    """`dupnet train --out PATH`, PATH a regular file: refused before any training."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    _fails_clearly(capsys, ["train", "dupnet-demo", "--epochs", "1", "--out", str(afile)],
                   afile, "--out must be a folder")
    assert afile.read_text() == "keep me"


def test_eval_json_below_a_file(art, tmp_path, capsys):
    """`dupnet eval ART --json PATH`, PATH below a regular file: refused before evaluating."""
    (tmp_path / "afile").write_text("keep me")
    bad = tmp_path / "afile" / "metrics.json"
    _fails_clearly(capsys, ["eval", str(art), "--n", "4", "--json", str(bad)], bad,
                   "is a file, not a folder")

"""Files the toolkit writes (``dupnet.files``): atomic, and readable as the user's umask allows.

``tempfile.mkstemp`` creates ``0600`` files; every written file must instead get
``0666 & ~umask`` (what ``open(path, "w")`` gives), so that a web server or another user can
read a run folder's ``index.html`` or the generated Verilog.
"""
from __future__ import annotations

import contextlib
import os
import stat

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.errors import DupnetError
from dupnet.files import (atomic_save_npy, atomic_write_bytes, atomic_write_text,
                          check_output_dir, check_output_file, default_file_mode)

from .tiny_configs import tiny_config_toml


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=oct)
def test_atomic_write_gives_the_umask_mode(tmp_path, mask):
    with umask(mask):
        assert default_file_mode() == 0o666 & ~mask
        a = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"\x00\x01")
        t = atomic_write_text(tmp_path / "t.txt", "h\u00e9")
        n = atomic_save_npy(tmp_path / "n.npy", np.arange(6).reshape(2, 3))
        old = tmp_path / "old.txt"                     # an existing file is replaced
        old.write_text("old")
        os.chmod(old, 0o600)
        atomic_write_text(old, "new")
    assert a.read_bytes() == b"\x00\x01" and t.read_text(encoding="utf-8") == "h\u00e9"
    assert np.array_equal(np.load(n), np.arange(6).reshape(2, 3))
    assert old.read_text() == "new"
    for p in (a, t, n, old):
        assert mode(p) == 0o666 & ~mask, (p, oct(mode(p)))


def test_atomic_write_leaves_no_temp_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "keep.txt"
    target.write_text("intact")
    with pytest.raises(TypeError):                  # fails while writing
        atomic_write_bytes(target, "not bytes")     # type: ignore[arg-type]
    import dupnet.files as files

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(files.os, "replace", boom)  # fails at the rename
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "half")
    monkeypatch.undo()
    assert target.read_text() == "intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_check_output_dir_and_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()          # creates nothing
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(DupnetError, match=f"-o {bad}:.*must be a folder"):
            check_output_dir(bad)
    with pytest.raises(DupnetError, match="--out .*is a file"):
        check_output_dir(tmp_path / "f", option="--out")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DupnetError, match="must be a folder"):
        check_output_dir(tmp_path / "dangling")
    assert check_output_file(tmp_path / "a.dupnet") == tmp_path / "a.dupnet"
    assert check_output_file(tmp_path / "new" / "a.dupnet") == tmp_path / "new" / "a.dupnet"
    with pytest.raises(DupnetError, match="is a folder; -o must name a file"):
        check_output_file(tmp_path)
    with pytest.raises(DupnetError, match=f"{tmp_path / 'f'} is a file, not a folder"):
        check_output_file(tmp_path / "f" / "a.dupnet")


def test_init_and_rtl_write_files_with_the_umask_mode(tmp_path, capsys):
    """End to end through the CLI: the artifact and every file of `dupnet rtl` are 0644 under
    umask 022 (they were 0600 when written through mkstemp without a chmod)."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config_toml("files-tiny", size=16, second_pool_stride=1))
    art, rtl = tmp_path / "tiny.dupnet", tmp_path / "rtl"
    with umask(0o022):
        assert main(["init", str(cfg), "-o", str(art)]) == 0
        assert main(["rtl", str(art), "-o", str(rtl)]) == 0
    written = [art, *sorted(rtl.iterdir())]
    assert {p.name for p in written} >= {"tiny.dupnet", "dupnet_top.v", "dupnet_top.json",
                                         "folding.toml", "lint_waivers.vlt"}
    assert {p.name: oct(mode(p)) for p in written} == {p.name: "0o644" for p in written}
    assert not [p for p in tmp_path.rglob("*.tmp")]

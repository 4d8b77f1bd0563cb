"""Writing files the user keeps: atomically, and with the permissions the user's umask gives.

Every file the toolkit writes (artifacts, checkpoints, Verilog, JSON, HTML, PNG) goes through
:func:`atomic_write_bytes` or :func:`atomic_write_text`: the data lands in a temporary file in
the same folder, is flushed to disk and renamed over the target, so an interrupted write never
leaves a half-written file. ``tempfile.mkstemp`` creates its file ``0600``; the file is given
``0666 & ~umask`` before the rename (what ``open(path, "w")`` would give), so a web server, a
container or another user can read a run folder as the umask allows.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DupnetError

__all__ = ["atomic_write_bytes", "atomic_write_text", "default_file_mode", "atomic_save_npy",
           "check_output_dir", "check_output_file"]


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode a plain ``open(path, "w")`` creates a file with."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and rename: never a half-written file.

    Creates the parent folders. The file gets :func:`default_file_mode`. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    """``numpy.save(path, array)`` through :func:`atomic_write_bytes` (the exact name given)."""
    import io

    import numpy as np
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return atomic_write_bytes(path, buf.getvalue())


def check_output_dir(path: str | os.PathLike, option: str = "-o") -> Path:
    """Fail early when ``path`` cannot become an output folder; create nothing.

    Raises :class:`~dupnet.errors.DupnetError` (naming ``path`` and the ``option`` that gave
    it) when ``path``, or the nearest path above it that exists, is something other than a
    folder (a regular file, a dangling link): ``mkdir`` would fail there with a bare
    ``FileExistsError`` / ``NotADirectoryError`` after the command had done its work.
    """
    path = Path(path)
    blocking = _first_non_folder((path, *path.parents))
    if blocking is not None:
        what = "" if blocking == path else f" {blocking}"
        raise DupnetError(f"{option} {path}:{what} is a file, not a folder; {option} must "
                          f"be a folder (an existing one, or a new one to create)")
    return path


def check_output_file(path: str | os.PathLike, option: str = "-o") -> Path:
    """Fail early when ``path`` cannot be written as a file: it is a folder, or the nearest
    path above it that exists is not a folder. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise DupnetError(f"{option} {path}: is a folder; {option} must name a file")
    blocking = _first_non_folder(path.parents)
    if blocking is not None:
        raise DupnetError(f"{option} {path}: {blocking} is a file, not a folder; {option} must "
                          f"be a file in a folder")
    return path


def _first_non_folder(paths) -> Path | None:
    """Walking ``paths`` (a path, then its parents) up to the first existing folder: the first
    one that exists (or is a dangling link) but is not a folder, where ``mkdir`` would fail;
    None when there is none."""
    for p in paths:
        if p.is_dir():
            return None
        if p.exists() or p.is_symlink():
            return p
    return None

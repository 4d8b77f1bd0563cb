"""Training checkpoints: the ``RUN/checkpoint.pt`` format, atomic saving, loading with clear
errors, and rebuilding the model of a run.

A checkpoint is a ``torch.save``'d dict (see :func:`training_state`) with ``"format"``
(:data:`CHECKPOINT_FORMAT`), ``"config"`` (``NetworkConfig.to_dict()``), ``"model"`` (state
dict of the unwrapped :class:`~dupnet.sw.qat.DupNet`), ``"epoch"`` (completed epochs),
``"options"`` (the run's ``TrainOptions``), ``"optimizer"``, ``"scheduler"``, ``"rng"``
(torch, numpy, python states: :func:`capture_rng_state`), ``"history"`` and, after the last
epoch, possibly ``"bn_recalibrated"`` and ``"metrics"``.  Every entry is a tensor or plain
data, so it loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DupnetError
from ..files import atomic_write_bytes
from .artifact import MAGIC
from .config import NetworkConfig, config_from_dict

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "RunError", "checkpoint_path", "save_checkpoint",
           "load_checkpoint", "model_from_checkpoint", "load_run", "checkpoint_to_resume",
           "training_state",
           "capture_rng_state", "restore_rng_state"]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "dupnet-checkpoint-1"


class RunError(DupnetError):
    """A run directory or checkpoint is missing, malformed, or does not match the request."""


def checkpoint_path(run: str | os.PathLike) -> Path:
    """``RUN/checkpoint.pt`` for a run directory; a ``.pt`` file as is."""
    p = Path(run)
    return p if p.suffix == ".pt" else p / CHECKPOINT


def capture_rng_state() -> dict[str, Any]:
    """The global torch, numpy and python generator states, as tensors and plain data."""
    import torch
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global generators to a state of :func:`capture_rng_state`."""
    import torch
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def training_state(cfg: NetworkConfig, model, epoch: int, opts, optimizer, scheduler,
                   history: list[dict]) -> dict[str, Any]:
    """The checkpoint dict of a run after ``epoch`` completed epochs.

    Parameters
    ----------
    cfg : NetworkConfig
    model : the unwrapped model (its state dict is copied to the CPU)
    epoch : int
        Completed epochs.
    opts : TrainOptions
        The run's options (stored as ``opts.to_dict()``).
    optimizer, scheduler : their state dicts are stored
    history : list of dict
        Per-epoch records.

    Returns
    -------
    dict
        Also holds the current global RNG states (:func:`capture_rng_state`).
    """
    return {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "epoch": epoch, "options": opts.to_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": capture_rng_state(),
            "history": history}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file, then rename: an interrupted write leaves the
    previous checkpoint intact."""
    import torch
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict from a run directory or a ``.pt`` file, with clear errors.

    Returns
    -------
    dict
        The checkpoint, plus ``"_path"``: the file it was read from.

    Raises
    ------
    RunError
        Missing, not a checkpoint, an integer artifact, or lacking a required field.
    """
    import torch
    p = _checkpoint_file(Path(path))
    with open(p, "rb") as f:
        head = f.read(8)
    if head == MAGIC:
        raise RunError(f"{p}: this is an integer artifact, not a training checkpoint "
                       f"(artifacts are evaluated with `dupnet eval`, not resumed)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise RunError(f"{p}: not a readable checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{p}: not a dupnet checkpoint (missing format "
                       f"{CHECKPOINT_FORMAT!r})")
    for key in ("config", "model", "epoch"):
        if key not in state:
            raise RunError(f"{p}: checkpoint lacks field {key!r}")
    state["_path"] = str(p)
    return state


def _checkpoint_file(p: Path) -> Path:
    """The checkpoint file of a run directory or ``.pt`` path, which must exist."""
    if not p.exists():
        raise RunError(f"{p}: no such run directory or checkpoint file")
    if p.is_dir():
        cp = p / CHECKPOINT
        if not cp.is_file():
            raise RunError(f"{p}: no {CHECKPOINT} in this directory (is it a run written by "
                           f"`dupnet train`?)")
        return cp
    return p


def model_from_checkpoint(state: dict[str, Any]):
    """``(cfg, model)`` rebuilt from a checkpoint dict of :func:`load_checkpoint` (eval mode)."""
    from .qat import build_model
    try:
        cfg = config_from_dict(state["config"], source=f"{state['_path']} (embedded config)")
    except DupnetError as e:
        raise RunError(str(e)) from None
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise RunError(f"{state['_path']}: weights do not fit the embedded config "
                       f"{cfg.name!r}: {str(e).splitlines()[0]}") from None
    model.eval()
    return cfg, model


def checkpoint_to_resume(run: Path, cfg: NetworkConfig, resume: bool,
                         overwrite: bool) -> dict[str, Any] | None:
    """The checkpoint a run directory continues from, or ``None`` for a fresh run.

    Parameters
    ----------
    run : Path
        The run directory.
    cfg : NetworkConfig
        The config to train; a resumed checkpoint must have been trained with the same
        (its description aside).
    resume : bool
        Continue ``run``'s checkpoint, which must exist.
    overwrite : bool
        Without ``resume``: allow starting afresh over an existing checkpoint.

    Raises
    ------
    RunError
        Nothing to resume, a config mismatch, or a checkpoint that would be replaced.
    """
    ckpt_file = run / CHECKPOINT
    if not resume:
        if ckpt_file.exists() and not overwrite:
            raise RunError(f"{run} already holds a checkpoint ({CHECKPOINT}); pass --resume "
                           f"to continue it, or --overwrite to start over")
        return None
    if not ckpt_file.is_file():
        raise RunError(f"{run}: --resume given but there is no {CHECKPOINT} to resume "
                       f"from (start a new run without --resume)")
    state = load_checkpoint(ckpt_file)
    if not _same_config(state["config"], cfg.to_dict()):
        raise RunError(f"{ckpt_file}: the checkpoint was trained with config "
                       f"{state['config'].get('name')!r} and different layers/head than "
                       f"{cfg.name!r} ({cfg.source}); resume with the same config")
    return state


def _same_config(a: dict, b: dict) -> bool:
    """Equal config dicts, ignoring the free-text description."""
    a = dict(a)
    b = dict(b)
    a.pop("description", None)
    b.pop("description", None)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def load_run(path: str | os.PathLike):
    """``(cfg, model)`` of a run directory or checkpoint file; the model is in eval mode."""
    return model_from_checkpoint(load_checkpoint(path))

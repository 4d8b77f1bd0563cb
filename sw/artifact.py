"""The integer artifact: unique weight bits, thresholds, geometry and decode constants.

The on-disk format (``docs/artifact.md``) is one file::

    magic      8 bytes   b"DUPNETA\\x00"
    version    u16 LE    FORMAT_VERSION
    hdr_len    u32 LE    length of the JSON header
    header     hdr_len   UTF-8 JSON: {"format", "version", "config", "arrays", "meta"}
    payload    ...       the arrays, each at header["arrays"][name]["offset"] from payload start
    sha256     32 bytes  SHA-256 of every byte before it

Arrays, for the conv layer at layer index ``i`` (``L{i}.``):

* ``L{i}.weights``: uint8, the unique binary weights ``V[o, ky, kx, cu]`` (C_out x k x k x
  C'/w_dup, raster order, channel-minor) packed with ``numpy.packbits(bitorder="little")``;
  a set bit means +1, a clear bit -1.
* ``L{i}.thresholds`` (hidden convs): int32 or int64, ``[C_out, 2^b - 1]``, ascending per row,
  each in ``[-acc_max, acc_max + 1]`` (the ends mean always / never met).
* ``L{i}.scale``, ``L{i}.bias`` (last conv): float32 ``[C_out]``; the host decodes
  ``y = scale * acc + bias``.

Nothing else is needed to run the golden model.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DupnetError
from .config import (ConfigError, ConvGeometry, NetworkConfig, config_from_dict,
                     conv_geometries)

__all__ = ["ArtifactError", "ConvParams", "Artifact", "FORMAT_VERSION", "MAGIC",
           "atomic_write_bytes"]

MAGIC = b"DUPNETA\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sHI")


class ArtifactError(DupnetError):
    """An artifact file or object is malformed. The message names the file and the field."""


@dataclass
class ConvParams:
    """Integer parameters of one conv layer.

    weights:    int8 in {-1, +1}, shape ``[C_out, k, k, C'/w_dup]`` (unique channels only).
    thresholds: int64 ``[C_out, 2^b - 1]`` ascending per row, or None for the last layer.
    scale/bias: float32 ``[C_out]`` decode constants of the last layer, else None.
    """
    weights: np.ndarray
    thresholds: np.ndarray | None = None
    scale: np.ndarray | None = None
    bias: np.ndarray | None = None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@dataclass
class Artifact:
    config: NetworkConfig
    layers: dict[int, ConvParams]            # keyed by layer index in config.layers
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- geometry helpers ----------------------------------------------------------------
    @property
    def geometries(self) -> list[ConvGeometry]:
        return conv_geometries(self.config)

    def params(self, g: ConvGeometry | int) -> ConvParams:
        return self.layers[g if isinstance(g, int) else g.index]

    # -- validation ----------------------------------------------------------------------
    def validate(self, where: str = "artifact") -> None:
        cfg = self.config
        if not cfg.is_binary:
            raise ArtifactError(f"{where}: config {cfg.name!r} has float weights; only binary "
                                f"networks have an integer artifact")
        geoms = conv_geometries(cfg)
        expected = {g.index for g in geoms}
        if set(self.layers) != expected:
            raise ArtifactError(f"{where}: parameters given for layers {sorted(self.layers)}, "
                                f"the config has convs at {sorted(expected)}")
        for g in geoms:
            p = self.layers[g.index]
            lw = f"{where}: layer {g.index} ({g.name})"
            shape = (g.out_channels, g.k, g.k, g.c_unique)
            w = np.asarray(p.weights)
            if w.shape != shape:
                raise ArtifactError(f"{lw}: field 'weights' has shape {w.shape}, expected "
                                    f"{shape} (C_out, k, k, C'/w_dup)")
            if not np.all((w == 1) | (w == -1)):
                raise ArtifactError(f"{lw}: field 'weights' must hold only -1 and +1")
            p.weights = w.astype(np.int8)
            if g.is_last:
                if p.thresholds is not None:
                    raise ArtifactError(f"{lw}: the last layer has no thresholds")
                for name in ("scale", "bias"):
                    v = getattr(p, name)
                    if v is None or np.asarray(v).shape != (g.out_channels,):
                        raise ArtifactError(f"{lw}: field '{name}' must be a float vector of "
                                            f"length {g.out_channels}")
                    v = np.asarray(v, dtype=np.float32)
                    if not np.all(np.isfinite(v)):
                        raise ArtifactError(f"{lw}: field '{name}' has non-finite values")
                    setattr(p, name, v)
            else:
                t = p.thresholds
                tshape = (g.out_channels, g.n_thresholds)
                if t is None or np.asarray(t).shape != tshape:
                    raise ArtifactError(f"{lw}: field 'thresholds' must have shape {tshape} "
                                        f"(C_out, 2^act_bits - 1)")
                t = np.asarray(t)
                if not np.issubdtype(t.dtype, np.integer):
                    raise ArtifactError(f"{lw}: field 'thresholds' must be integers")
                t = t.astype(np.int64)
                if np.any(np.diff(t, axis=1) < 0):
                    o = int(np.argwhere(np.diff(t, axis=1) < 0)[0][0])
                    raise ArtifactError(f"{lw}: field 'thresholds' of channel {o} is not "
                                        f"ascending: {t[o].tolist()}")
                if t.min() < g.threshold_min or t.max() > g.threshold_max:
                    raise ArtifactError(f"{lw}: field 'thresholds' outside "
                                        f"[{g.threshold_min}, {g.threshold_max}] (saturation "
                                        f"bounds of the {g.acc_bits}-bit accumulator)")
                p.thresholds = t
                if p.scale is not None or p.bias is not None:
                    raise ArtifactError(f"{lw}: only the last layer has 'scale'/'bias'")

    # -- (de)serialisation ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        for g in self.geometries:
            p = self.layers[g.index]
            arrays[f"L{g.index}.weights"] = np.packbits(p.weights.reshape(-1) > 0,
                                                        bitorder="little")
            if g.is_last:
                arrays[f"L{g.index}.scale"] = p.scale.astype("<f4")
                arrays[f"L{g.index}.bias"] = p.bias.astype("<f4")
            else:
                dt = "<i4" if g.threshold_bits <= 32 else "<i8"
                arrays[f"L{g.index}.thresholds"] = p.thresholds.astype(dt)
        table, blobs, offset = {}, [], 0
        for name, a in arrays.items():
            raw = np.ascontiguousarray(a).tobytes()
            table[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                           "nbytes": len(raw)}
            blobs.append(raw)
            offset += len(raw)
        header = json.dumps({"format": "dupnet-artifact", "version": FORMAT_VERSION,
                             "config": self.config.to_dict(), "arrays": table,
                             "meta": self.meta}, sort_keys=True).encode()
        body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b"".join(blobs)
        return body + hashlib.sha256(body).digest()

    def save(self, path: str | os.PathLike) -> Path:
        atomic_write_bytes(path, self.to_bytes())
        return Path(path)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "artifact") -> "Artifact":
        if len(data) < _PREFIX.size + 32 or data[:8] != MAGIC:
            raise ArtifactError(f"{where}: not a DupNet artifact (bad magic; expected a file "
                                f"written by `dupnet export` or `dupnet init`)")
        body, digest = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != digest:
            raise ArtifactError(f"{where}: checksum mismatch: the file is corrupted or truncated")
        _, version, hlen = _PREFIX.unpack_from(body)
        if version != FORMAT_VERSION:
            raise ArtifactError(f"{where}: format version {version}, this toolkit reads "
                                f"version {FORMAT_VERSION}")
        try:
            header = json.loads(body[_PREFIX.size:_PREFIX.size + hlen])
            payload = body[_PREFIX.size + hlen:]
            cfg = config_from_dict(header["config"], source=f"{where} (embedded config)")
            arrays = {}
            for name, d in header["arrays"].items():
                raw = payload[d["offset"]:d["offset"] + d["nbytes"]]
                if len(raw) != d["nbytes"]:
                    raise ArtifactError(f"{where}: array {name!r} runs past the payload")
                arrays[name] = np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"])
        except ConfigError as e:
            raise ArtifactError(str(e)) from None
        except (KeyError, ValueError, TypeError) as e:
            if isinstance(e, ArtifactError):
                raise
            raise ArtifactError(f"{where}: malformed header: {e}") from None
        layers: dict[int, ConvParams] = {}
        for g in conv_geometries(cfg):
            def get(field_name: str, required: bool = True) -> np.ndarray | None:
                key = f"L{g.index}.{field_name}"
                if key not in arrays:
                    if required:
                        raise ArtifactError(f"{where}: layer {g.index} ({g.name}): missing "
                                            f"array '{field_name}'")
                    return None
                return arrays[key]
            n = g.unique_weight_bits
            packed = get("weights")
            if packed.size != (n + 7) // 8:
                raise ArtifactError(f"{where}: layer {g.index} ({g.name}): field 'weights' "
                                    f"holds {packed.size} bytes, expected {(n + 7) // 8}")
            bits = np.unpackbits(packed, count=n, bitorder="little")
            weights = (bits.astype(np.int8) * 2 - 1).reshape(g.out_channels, g.k, g.k,
                                                              g.c_unique)
            if g.is_last:
                layers[g.index] = ConvParams(weights, scale=get("scale").copy(),
                                             bias=get("bias").copy())
            else:
                layers[g.index] = ConvParams(weights, thresholds=get("thresholds")
                                             .astype(np.int64))
        try:
            return cls(cfg, layers, meta=header.get("meta", {}))
        except ArtifactError as e:
            raise ArtifactError(str(e).replace("artifact:", f"{where}:", 1)) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Artifact":
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: artifact file not found")
        return cls.from_bytes(path.read_bytes(), where=str(path))

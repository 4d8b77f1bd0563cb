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

Nothing else is needed to run the golden model.  Which layers have parameters, and how they
are validated and stored, is up to their kind (:mod:`dupnet.sw.layers`: ``has_params``,
``validate_params``, ``params_to_arrays``, ``params_from_arrays``); the above is the ``conv``
kind's (``sw/kinds/conv.py``).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DupnetError
from ..files import atomic_write_bytes
from .config import (ConfigError, ConvGeometry, NetworkConfig, config_from_dict,
                     conv_geometries, param_geometries)
from .layers import get_kind

__all__ = ["ArtifactError", "ConvParams", "Artifact", "FORMAT_VERSION", "MAGIC"]

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


@dataclass
class Artifact:
    config: NetworkConfig
    layers: dict[int, Any]    # keyed by layer index in config.layers: ConvParams for a conv
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
        geoms = param_geometries(cfg)
        expected = {g.index for g in geoms}
        if set(self.layers) != expected:
            raise ArtifactError(f"{where}: parameters given for layers {sorted(self.layers)}, "
                                f"the config has convs at {sorted(expected)}")
        for g in geoms:
            get_kind(g.kind).validate_params(g, self.layers[g.index],
                                             f"{where}: layer {g.index} ({g.name})")

    # -- (de)serialisation ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        for g in param_geometries(self.config):
            for name, a in get_kind(g.kind).params_to_arrays(g, self.layers[g.index]).items():
                arrays[f"L{g.index}.{name}"] = a
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
        layers: dict[int, Any] = {}
        for g in param_geometries(cfg):
            def get(field_name: str, required: bool = True) -> np.ndarray | None:
                key = f"L{g.index}.{field_name}"
                if key not in arrays:
                    if required:
                        raise ArtifactError(f"{where}: layer {g.index} ({g.name}): missing "
                                            f"array '{field_name}'")
                    return None
                return arrays[key]
            layers[g.index] = get_kind(g.kind).params_from_arrays(
                g, get, f"{where}: layer {g.index} ({g.name})")
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

"""What the QONNX exporter and importer share: names, the errors, the optional packages, and
running a graph with ``qonnx``'s own executor (docs/interop.md).

The interchange packages (``onnx``, ``onnxruntime``, ``qonnx``) are the ``interop`` extra of
the toolkit: they are imported inside the functions here, never at module import, so that
``import dupnet.sw`` works without them. :func:`require_interop` turns a missing package into
an :class:`InteropError` that says how to install it.

Tensor names of an exported graph (one set per layer, the layer's config name ``L``):

* ``image``: the graph input, NCHW float32 holding the uint8 (``input.bits``) pixel values;
* ``L.acc``: a hidden conv's accumulators (``L.offset_sum`` in the offset form: ``acc + K``);
* ``L.codes``: the output codes of a hidden conv (``MultiThreshold``) or of a max-pool;
* ``accumulators``: the last conv's integer accumulators (graph output);
* ``decoded``: ``scale * accumulators + bias`` (graph output).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DupnetError

__all__ = ["InteropError", "OnnxImportError", "require_interop", "QONNX_DOMAIN", "ONNX_OPSET",
           "INPUT_NAME", "ACC_NAME", "DECODED_NAME", "META_CONFIG", "META_FORMAT",
           "FORMAT_TAG", "codes_name", "acc_name", "int_datatype", "load_model",
           "execute_qonnx", "images_nchw", "qonnx_codes", "config_json"]

#: The ONNX domain of the QONNX custom ops (``MultiThreshold``, ``BipolarQuant``, ``Quant``).
QONNX_DOMAIN = "qonnx.custom_op.general"
#: The opset of the standard ONNX ops in an exported graph (Pad with a ``pads`` input: >= 11).
ONNX_OPSET = 13
INPUT_NAME = "image"
ACC_NAME = "accumulators"
DECODED_NAME = "decoded"
#: ``metadata_props`` keys: the network config as JSON (names, anchors and duplication hints
#: for the importer) and the format tag.
META_CONFIG = "dupnet.config"
META_FORMAT = "dupnet.format"
FORMAT_TAG = "dupnet-qonnx/1"


class InteropError(DupnetError):
    """The QONNX interchange cannot go on: a missing package, an unreadable file, a graph the
    executor refuses. The message names the file (and the node where there is one)."""


class OnnxImportError(InteropError):
    """An ONNX/QONNX graph is outside what the toolkit's hardware supports. The message names
    the file, the node (its name and op type) and why."""


def require_interop() -> tuple[Any, Any]:
    """``(onnx, qonnx)``, imported; an :class:`InteropError` with the install command when the
    ``interop`` extra is missing."""
    try:
        import onnx
        import onnx.numpy_helper
        import qonnx
        import qonnx.core.onnx_exec  # noqa: F401 - needs onnxruntime: fail here, not later
    except ImportError as e:
        raise InteropError(f"the QONNX interchange needs the 'interop' extra "
                           f"(onnx, onnxruntime, qonnx): {e}; install it with "
                           f"pip install -e '.[interop]' (make install does)") from None
    return onnx, qonnx


def codes_name(layer: str) -> str:
    """Tensor name of the output codes of layer ``layer`` (a hidden conv or a max-pool)."""
    return f"{layer}.codes"


def acc_name(layer: str, offset_form: bool = False) -> str:
    """Tensor name of a hidden conv's accumulators (``acc + K`` in the offset form)."""
    return f"{layer}.offset_sum" if offset_form else f"{layer}.acc"


def int_datatype(lo: int, hi: int) -> str:
    """The QONNX ``DataType`` name of the smallest integer type holding ``[lo, hi]``:
    ``BINARY`` for {0, 1}, ``UINTn`` when ``lo >= 0``, else ``INTn``."""
    if lo >= 0:
        bits = max(1, int(hi).bit_length())
        return "BINARY" if bits == 1 else f"UINT{bits}"
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return f"INT{bits}"


def load_model(path: str | Path):
    """An ``onnx.ModelProto`` read from ``path``, or an :class:`InteropError` naming it."""
    onnx, _ = require_interop()
    path = Path(path)
    if not path.is_file():
        raise InteropError(f"{path}: ONNX file not found")
    try:
        return onnx.load_model_from_string(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds of errors
        raise InteropError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})"
                           ) from None


def images_nchw(images: np.ndarray) -> np.ndarray:
    """NHWC integer images (one ``[H, W, C]`` or a batch) as the graph input: NCHW float32."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)).astype(np.float32)


def execute_qonnx(model, images: np.ndarray, where: str = "model") -> dict[str, np.ndarray]:
    """Every tensor of ``model`` (an ``onnx.ModelProto``) executed by ``qonnx``'s
    ``execute_onnx`` on NHWC ``images``, one image at a time (the graph's batch is fixed at
    export): a dict name -> array with the images stacked along axis 0.

    Raises
    ------
    InteropError
        When the executor refuses the graph or the input shape (naming ``where``).
    """
    require_interop()
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    mw = ModelWrapper(model)
    inp = mw.graph.input[0].name
    want = tuple(d.dim_value for d in mw.graph.input[0].type.tensor_type.shape.dim)
    x = images_nchw(images)
    batch = want[0] if want and want[0] > 0 else 1
    if len(x) % batch:
        raise InteropError(f"{where}: {len(x)} image(s) do not fill batches of {batch}")
    runs = []
    for i in range(0, len(x), batch):
        try:
            runs.append(execute_onnx(mw, {inp: x[i:i + batch]}, return_full_exec_context=True))
        except Exception as e:  # noqa: BLE001 - the executor raises bare Exceptions
            raise InteropError(f"{where}: qonnx execute_onnx failed: {type(e).__name__}: "
                               f"{e}") from None
    constants = {t.name for t in mw.graph.initializer}
    return {k: np.asarray(runs[0][k]) if k in constants or np.ndim(runs[0][k]) == 0
            else np.concatenate([np.asarray(r[k]) for r in runs]) for k in runs[0]}


def qonnx_codes(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    """An NCHW float tensor of integer values from :func:`execute_qonnx` as NHWC int64 (the
    golden model's layout); values that are not integers raise :class:`InteropError`."""
    t = np.asarray(tensors[name], dtype=np.float64)
    r = np.rint(t)
    if not np.array_equal(r, t):
        raise InteropError(f"tensor {name!r} holds non-integer values (max deviation "
                           f"{np.abs(r - t).max():.3g})")
    return r.astype(np.int64).transpose(0, 2, 3, 1)


def config_json(cfg) -> str:
    """The config as stored in an exported graph's ``metadata_props`` (:data:`META_CONFIG`)."""
    return json.dumps(cfg.to_dict(), sort_keys=True)

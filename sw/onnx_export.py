"""The integer artifact as a QONNX graph, checked by ``qonnx``'s own executor (docs/interop.md).

:func:`export_onnx` writes the network of an :class:`~dupnet.sw.artifact.Artifact` with the
ops a FINN or hls4ml user knows, layer by layer (``L`` the layer's config name)::

    image (NCHW float32, the uint8 pixel values)
    conv L:   [Concat x_dup copies]  ->  Conv(W = BipolarQuant(+-1), same padding, no bias)
              -> MultiThreshold(T)                              hidden conv: codes L.codes
              -> accumulators, Mul(scale), Add(bias) -> decoded  last conv
    pool L:   MaxPool 2x2 stride 2, or Pad(edge, bottom/right 1) + MaxPool 2x2 stride 1

The weight duplication ``w_dup`` is expanded into the conv weights (``W[o, c'] =
V[o, c' // w_dup]``), or, with ``shared_weights``, kept as the unique tensor ``V`` and
expanded in the graph (Reshape, Expand, Reshape) so the stored bits are the artifact's. The
offset form (``offset_form``) writes the hardware's ``"xnor"`` datapath without pre-add: the
conv gets the bias ``K[o] = (2^b_in - 1) * #(-1 weights of o)`` (its sum is ``acc + K``,
never negative) and the thresholds are ``clip(T + K, 0, acc_max + 1)``; the codes are the same.

Every value is an integer exact in float32 (``acc_max < 2^24`` is checked), so
:func:`compare_with_golden` can demand equality of every code and accumulator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..files import atomic_write_bytes
from .artifact import Artifact, ConvParams
from .config import ConvGeometry, PoolGeometry, network_geometry
from .golden import GoldenModel
from .onnx_common import (ACC_NAME, DECODED_NAME, FORMAT_TAG, INPUT_NAME, META_CONFIG,
                          META_FORMAT, ONNX_OPSET, QONNX_DOMAIN, InteropError, acc_name,
                          codes_name, config_json, execute_qonnx, int_datatype, qonnx_codes,
                          require_interop)

__all__ = ["export_onnx", "save_onnx", "offset_constants", "expanded_weights",
           "LayerCheck", "compare_with_golden", "describe_checks"]

#: float32 holds every integer below 2^24 exactly; each partial sum of a conv is bounded by
#: ``acc_max`` (the offset form's by ``acc_max`` too), so the graph's convs are exact below it.
FLOAT32_EXACT = 1 << 24


def expanded_weights(g: ConvGeometry, p: ConvParams) -> np.ndarray:
    """The conv weights ``W[o, c', ky, kx]`` (ONNX layout, float32 +-1) with the weight
    duplication expanded: ``W[o, c'] = V[o, c' // w_dup]``, over ``C' = x_dup * C_in``."""
    v = np.repeat(np.asarray(p.weights, dtype=np.float32), g.w_dup, axis=3)
    return np.ascontiguousarray(v.transpose(0, 3, 1, 2))


def offset_constants(g: ConvGeometry, p: ConvParams) -> np.ndarray:
    """``K[o] = (2^b_in - 1) * (number of -1 weights neuron o applies over C')``: the offset
    of the ``"xnor"`` datapath without pre-add (docs/hardware.md, section 5), int64."""
    neg = (expanded_weights(g, p) < 0).reshape(g.out_channels, -1).sum(axis=1)
    return neg.astype(np.int64) * ((1 << g.in_bits) - 1)


class _Graph:
    """Nodes, initializers, value infos and datatype annotations of the graph being built."""

    def __init__(self, batch: int):
        self.onnx, _ = require_interop()
        self.batch = batch
        self.nodes, self.inits, self.infos = [], [], []
        self.datatypes: dict[str, str] = {}

    def const(self, name: str, value: np.ndarray, datatype: str | None = None) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        if datatype:
            self.datatypes[name] = datatype
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, doc: str,
             domain: str = "", **attrs) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name,
                                                     doc_string=doc, domain=domain, **attrs))
        return output

    def info(self, name: str, shape: tuple[int, ...], datatype: str | None = None) -> str:
        self.infos.append(self.onnx.helper.make_tensor_value_info(
            name, self.onnx.TensorProto.FLOAT, list(shape)))
        if datatype:
            self.datatypes[name] = datatype
        return name

    def fmap(self, name: str, c: int, h: int, w: int, datatype: str | None = None) -> str:
        """A value info of an NCHW feature map of the graph's batch."""
        return self.info(name, (self.batch, c, h, w), datatype)


def _weights(gr: _Graph, g: ConvGeometry, p: ConvParams, shared: bool) -> str:
    """The conv's weight tensor: BipolarQuant of +-1 values, expanded or shared."""
    k, L = g.k, g.name
    v = np.ascontiguousarray(np.asarray(p.weights, dtype=np.float32).transpose(0, 3, 1, 2))
    src = v if shared else expanded_weights(g, p)
    gr.const(f"{L}.weight", src)
    gr.const(f"{L}.weight_scale", np.float32(1.0))
    wq = gr.node("BipolarQuant", [f"{L}.weight", f"{L}.weight_scale"], f"{L}.weight_q",
                 f"{L}.weight_quant", "binary weights: +1 / -1 (scale 1)", domain=QONNX_DOMAIN)
    gr.info(wq, src.shape, "BIPOLAR")
    if not shared or g.w_dup == 1:
        return wq
    o, cu = g.out_channels, g.c_unique
    doc = (f"weight duplication w_dup = {g.w_dup}: W[o, c'] = V[o, c' // w_dup], the "
           f"{g.unique_weight_bits} unique bits kept as one shared tensor")
    gr.const(f"{L}.w_dup_shape5", np.array([o, cu, 1, k, k], dtype=np.int64))
    gr.const(f"{L}.w_dup_expand", np.array([o, cu, g.w_dup, k, k], dtype=np.int64))
    gr.const(f"{L}.w_dup_shape4", np.array([o, g.c_dup, k, k], dtype=np.int64))
    a = gr.node("Reshape", [wq, f"{L}.w_dup_shape5"], f"{L}.weight_5d", f"{L}.w_dup_split", doc)
    gr.info(a, (o, cu, 1, k, k), "BIPOLAR")
    b = gr.node("Expand", [a, f"{L}.w_dup_expand"], f"{L}.weight_rep", f"{L}.w_dup_repeat", doc)
    gr.info(b, (o, cu, g.w_dup, k, k), "BIPOLAR")
    c = gr.node("Reshape", [b, f"{L}.w_dup_shape4"], f"{L}.weight_dup", f"{L}.w_dup_merge", doc)
    return gr.info(c, (o, g.c_dup, k, k), "BIPOLAR")


def _input_dup(gr: _Graph, g: ConvGeometry, x: str) -> str:
    """``X' = concat([X] * x_dup)`` along channels (the input duplication)."""
    if g.x_dup == 1:
        return x
    y = gr.node("Concat", [x] * g.x_dup, f"{g.name}.x_dup", f"{g.name}.x_dup",
                f"input duplication x_dup = {g.x_dup}: the {g.in_channels} input channels, "
                f"{g.x_dup} times", axis=1)
    return gr.fmap(y, g.c_dup, g.height, g.width, int_datatype(0, (1 << g.in_bits) - 1))


def _conv(gr: _Graph, g: ConvGeometry, p: ConvParams, x: str, shared: bool,
          offset_form: bool) -> str:
    """The nodes of one conv layer; returns the name of its output (codes or accumulators)."""
    L, pad = g.name, g.k // 2
    inputs = [_input_dup(gr, g, x), _weights(gr, g, p, shared)]
    offset = offset_form and not g.is_last
    if offset:
        inputs.append(gr.const(f"{L}.offset", offset_constants(g, p).astype(np.float32)))
    out = ACC_NAME if g.is_last else acc_name(L, offset)
    doc = (f"{g.k}x{g.k} binary conv, stride 1, zero 'same' padding; integer sums of "
           f"{g.in_bits}-bit codes" + ("; bias K: the offset form's acc + K" if offset else ""))
    gr.node("Conv", inputs, out, L, doc, kernel_shape=[g.k, g.k], pads=[pad] * 4,
            strides=[1, 1], dilations=[1, 1], group=1)
    rng = (0, g.acc_max) if offset else (-g.acc_max, g.acc_max)
    gr.fmap(out, g.out_channels, g.height, g.width, int_datatype(*rng))
    if g.is_last:
        return out
    t = np.asarray(p.thresholds, dtype=np.int64)
    if offset:
        t = np.clip(t + offset_constants(g, p)[:, None], 0, g.acc_max + 1)
    lo, hi = (0, g.acc_max + 1) if offset else (g.threshold_min, g.threshold_max)
    gr.const(f"{L}.thresholds", t.astype(np.float32), int_datatype(lo, hi))
    codes = gr.node("MultiThreshold", [out, f"{L}.thresholds"], codes_name(L),
                    f"{L}.threshold", f"{g.act_bits}-bit codes: q = #{{t : acc >= T[o, t]}}",
                    domain=QONNX_DOMAIN, out_dtype=int_datatype(0, g.n_thresholds),
                    data_layout="NCHW")
    return gr.fmap(codes, g.out_channels, g.height, g.width, int_datatype(0, g.n_thresholds))


def _pool(gr: _Graph, g: PoolGeometry, x: str) -> str:
    """A 2x2 max-pool: stride 2, or stride 1 after an explicit bottom/right edge pad."""
    L, dt = g.name, int_datatype(0, (1 << g.bits) - 1)
    if g.stride == 1:
        gr.const(f"{L}.pads", np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64))
        x = gr.node("Pad", [x, f"{L}.pads"], f"{L}.padded", f"{L}.pad",
                    "stride-1 pool: the bottom row and right column replicated", mode="edge")
        gr.fmap(x, g.channels, g.height + 1, g.width + 1, dt)
    y = gr.node("MaxPool", [x], codes_name(L), L, f"2x2 max-pool, stride {g.stride}",
                kernel_shape=[2, 2], strides=[g.stride] * 2, pads=[0, 0, 0, 0])
    return gr.fmap(y, g.channels, g.out_height, g.out_width, dt)


def _decode(gr: _Graph, g: ConvGeometry, p: ConvParams) -> str:
    """``decoded = scale * accumulators + bias`` (float32, per output channel)."""
    L, shape = g.name, (1, g.out_channels, 1, 1)
    gr.const(f"{L}.scale", np.asarray(p.scale, dtype=np.float32).reshape(shape))
    gr.const(f"{L}.bias", np.asarray(p.bias, dtype=np.float32).reshape(shape))
    y = gr.node("Mul", [ACC_NAME, f"{L}.scale"], f"{L}.scaled", f"{L}.decode_scale",
                "host decode: scale * acc (float32)")
    gr.fmap(y, g.out_channels, g.height, g.width)
    return gr.node("Add", [y, f"{L}.bias"], DECODED_NAME, f"{L}.decode_bias",
                   "host decode: + bias (float32): the YOLO head's inputs")


def _check_exact(art: Artifact) -> None:
    for g in art.geometries:
        if g.acc_max >= FLOAT32_EXACT:
            raise InteropError(f"layer {g.index} ({g.name}): accumulator bound {g.acc_max} "
                               f">= 2^24 is not exact in float32; an ONNX float Conv cannot "
                               f"carry this network's integer semantics")


def export_onnx(art: Artifact, batch: int = 1, shared_weights: bool = False,
                offset_form: bool = False):
    """The artifact as a QONNX ``onnx.ModelProto`` (see the module docstring).

    Parameters
    ----------
    art : Artifact
        The integer network.
    batch : int
        The fixed batch size of the graph input ``image [batch, C, H, W]``.
    shared_weights : bool
        Keep each ``w_dup > 1`` layer's unique weights as one tensor, expanded in the graph.
    offset_form : bool
        Hidden convs in the offset form (conv bias ``K``, thresholds ``T + K``).

    Raises
    ------
    InteropError
        The ``interop`` extra is missing, or an accumulator bound is not exact in float32.
    """
    if batch < 1:
        raise InteropError(f"batch must be >= 1, got {batch}")
    _check_exact(art)
    gr = _Graph(batch)
    onnx = gr.onnx
    cfg = art.config
    x = gr.fmap(INPUT_NAME, cfg.input_channels, cfg.input_height, cfg.input_width,
                int_datatype(0, (1 << cfg.input_bits) - 1))
    image = gr.infos.pop()
    geoms = network_geometry(cfg)
    for g in geoms:
        if isinstance(g, ConvGeometry):
            x = _conv(gr, g, art.layers[g.index], x, shared_weights, offset_form)
        else:
            x = _pool(gr, g, x)
    last = geoms[-1]
    decoded = _decode(gr, last, art.layers[last.index])
    outs = [i for i in gr.infos if i.name == ACC_NAME]
    gr.infos = [i for i in gr.infos if i.name != ACC_NAME]
    outs.append(onnx.helper.make_tensor_value_info(
        decoded, onnx.TensorProto.FLOAT, [batch, last.out_channels, last.height, last.width]))
    graph = onnx.helper.make_graph(gr.nodes, cfg.name, [image], outs, initializer=gr.inits,
                                   value_info=gr.infos,
                                   doc_string=f"DupNet integer network {cfg.name!r}")
    model = onnx.helper.make_model(
        graph, producer_name="dupnet", producer_version=__version__,
        opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET),
                       onnx.helper.make_opsetid(QONNX_DOMAIN, 1)])
    onnx.helper.set_model_props(model, {META_CONFIG: config_json(cfg), META_FORMAT: FORMAT_TAG,
                                        "dupnet.offset_form": str(bool(offset_form)).lower()})
    return _annotate(model, gr.datatypes)


def _annotate(model, datatypes: dict[str, str]):
    """Set the QONNX datatype annotations (``finn_datatype``) of the integer tensors."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    mw = ModelWrapper(model)
    for name, dt in datatypes.items():
        mw.set_tensor_datatype(name, DataType[dt])
    return mw.model


def save_onnx(model, path) -> None:
    """Write ``model`` to ``path`` atomically (``dupnet.files.atomic_write_bytes``)."""
    atomic_write_bytes(path, model.SerializeToString())


@dataclass
class LayerCheck:
    """One tensor of :func:`compare_with_golden`: every element compared."""
    layer: str
    tensor: str
    compared: int
    mismatches: int
    first: str = ""

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


def _check(layer: str, tensor: str, got: np.ndarray, want: np.ndarray) -> LayerCheck:
    if got.shape != want.shape:
        return LayerCheck(layer, tensor, 0, max(got.size, want.size, 1),
                          f"shape {got.shape}, golden {want.shape}")
    if np.array_equal(got, want):
        return LayerCheck(layer, tensor, want.size, 0)
    d = np.argwhere(got != want)
    n, y, x, c = (int(v) for v in d[0])
    return LayerCheck(layer, tensor, want.size, len(d),
                      f"frame {n}, pixel (y={y}, x={x}), channel {c}: golden "
                      f"{want[n, y, x, c]}, qonnx {got[n, y, x, c]}")


def compare_with_golden(art: Artifact, model, images: np.ndarray) -> list[LayerCheck]:
    """Execute ``model`` with ``qonnx`` on NHWC ``images`` and compare EVERY activation code of
    every layer, every last-layer accumulator and every decoded value with the golden model of
    ``art`` (exact equality). One :class:`LayerCheck` per layer, then one for ``decoded``."""
    tensors = execute_qonnx(model, images, where=f"QONNX graph of {art.config.name!r}")
    golden = GoldenModel(art)
    want = golden.forward(images)
    checks = []
    for g, w in zip(golden.geometry, want):
        name = ACC_NAME if g.is_last else codes_name(g.name)
        if name not in tensors:
            checks.append(LayerCheck(g.name, name, 0, 1, "tensor missing from the graph"))
            continue
        checks.append(_check(g.name, name, qonnx_codes(tensors, name), w))
    dec = np.asarray(tensors[DECODED_NAME], dtype=np.float32).transpose(0, 2, 3, 1)
    checks.append(_check(golden.geometry[-1].name, DECODED_NAME, dec,
                         golden.decode_inputs(want[-1])))
    return checks


def describe_checks(checks: list[LayerCheck]) -> str:
    """One line per checked tensor."""
    return "\n".join(f"  {c.layer:<10} {c.tensor:<16} {'ok' if c.ok else 'MISMATCH':<8} "
                     f"{c.compared:>10} values" + (f"; {c.mismatches} differ, first at "
                                                   f"{c.first}" if not c.ok else "")
                     for c in checks)

"""A QONNX network (binary weights, threshold activations) as a config and integer artifact.

:func:`import_onnx` walks the graph once, in node order, and keeps for every tensor what it is
in the integer network: the image, the codes of a layer, or a conv's integer accumulators,
each as a per-channel affine view ``value = a * integer + b`` of the integer tensor
(docs/interop.md has the node-by-node mapping). Constant sub-graphs (``BipolarQuant`` of the
weights, a shared weight tensor's Reshape/Expand) are evaluated first, with ``qonnx``'s own op
implementations and the ONNX reference evaluator.

* ``Concat`` of one tensor ``n`` times along channels is input duplication ``x_dup = n``.
* ``Conv`` (k = 1 or 3, stride 1, same padding, no groups or dilation) on codes with one
  positive-or-negative scale and no offset, with weights ``+-s[o]`` per output channel: a
  binary conv; adjacent input channels whose weights are equal everywhere become ``w_dup``.
* Per-channel affine ops on the accumulators (``Mul``, ``Div``, ``Add``, ``Sub``,
  ``BatchNormalization``, a conv bias, ``Relu`` in front of a quantizer) fold into the
  thresholds of the next ``MultiThreshold`` or unsigned ``Quant`` (the activation), which
  become the layer's integer thresholds (:func:`integer_thresholds`: a negative slope negates
  the channel's weights, as the toolkit's own export does).
* ``MaxPool`` 2x2 stride 2, or stride 1 with the bottom/right edge replicated (a ``Pad`` of
  mode ``edge``, a zero ``Pad`` of non-negative codes, or the pool's own end padding).
* The last conv's accumulators, through any per-channel affine ops, are the graph output: the
  affine map is the decode ``scale``/``bias``.

Anything else is refused with an :class:`~dupnet.sw.onnx_common.OnnxImportError` that names the
file, the node and why. Thresholds computed from float parameters (BatchNorm, scales) decide
the real-valued comparisons in float64: a float32 executor can differ only where a real
boundary lies within rounding of an integer accumulator (a *tie*, counted in
:attr:`ImportResult.ties`); an integer graph (``dupnet export-onnx``, FINN's streamlined form
with integer thresholds) imports exactly.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .artifact import Artifact, ConvParams
from .config import ConfigError, NetworkConfig, parse_config
from .onnx_common import META_CONFIG, OnnxImportError, load_model, require_interop

__all__ = ["import_onnx", "ImportResult", "integer_thresholds", "config_toml",
           "SUPPORTED_OPS"]

#: The ops the importer maps (custom ops in the ``qonnx.custom_op.general`` domain; also
#: accepted under ``finn.custom_op.general`` and ``onnx.brevitas``).
SUPPORTED_OPS = ("Conv", "MultiThreshold", "Quant", "BipolarQuant", "MaxPool", "Pad", "Concat",
                 "Mul", "Div", "Add", "Sub", "BatchNormalization", "Relu", "Identity",
                 "Constant")
_CUSTOM_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
_AFFINE = ("Mul", "Div", "Add", "Sub")
#: relative distance of a real threshold to an integer accumulator counted as a tie
TIE_RTOL = 1e-6


@dataclass
class _Val:
    """A tensor of the graph as the integer network sees it: ``a * integer + b`` per channel.

    kind: ``codes`` (the image or a layer's output codes), ``acc`` (conv sums), ``dup`` (an
    input-duplication concat of ``src``), ``padded`` (``src`` padded for a stride-1 pool).
    layer: index of the layer it derives from (-1: the image).
    """
    kind: str
    layer: int
    a: np.ndarray
    b: np.ndarray
    height: int
    width: int
    bits: int = 0
    src: str = ""
    x_dup: int = 1
    relu: bool = False

    @property
    def channels(self) -> int:
        return len(self.a)


@dataclass
class _Layer:
    """A layer found in the graph, before it becomes a config layer."""
    kind: str                           # "conv" | "maxpool"
    node: str                           # the ONNX node, for messages
    name: str | None                    # the node's name when it is a usable layer name
    height: int = 0
    width: int = 0
    in_channels: int = 0
    in_bits: int = 0
    k: int = 1
    x_dup: int = 1
    signs: np.ndarray | None = None     # int8 [C_out, C', k, k] (ONNX layout)
    act_bits: int | None = None
    thresholds: np.ndarray | None = None
    stride: int = 2
    quantizer: str = ""

    @property
    def out_channels(self) -> int:
        return 0 if self.signs is None else self.signs.shape[0]

    @property
    def acc_max(self) -> int:
        return self.k * self.k * self.x_dup * self.in_channels * ((1 << self.in_bits) - 1)


@dataclass
class ImportResult:
    """What :func:`import_onnx` made: the artifact, one line per layer, the tie count."""
    artifact: Artifact
    notes: list[str] = field(default_factory=list)
    ties: int = 0

    @property
    def config(self) -> NetworkConfig:
        return self.artifact.config


def integer_thresholds(a: np.ndarray, c: np.ndarray, r: np.ndarray, strict: np.ndarray,
                       acc_max: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer thresholds of the real comparisons ``a*acc + c >= r`` (``>`` where ``strict``).

    Parameters
    ----------
    a, c : float64 ``[C]``
        The affine map from the integer accumulator to the value the activation compares.
    r : float64 ``[C, n]``
        The real thresholds (``+-inf`` allowed: never / always met).
    strict : bool ``[C, n]``
        The comparison is ``>`` instead of ``>=``.
    acc_max : int
        ``|acc| <= acc_max``: thresholds are clipped into ``[-acc_max, acc_max + 1]``.

    Returns
    -------
    thresholds : int64 ``[C, n]``
        ``T`` with ``acc' >= T  <=>  the comparison`` where ``acc' = -acc`` on the negated
        channels, else ``acc``.
    negate : bool ``[C]``
        Channels with ``a < 0``, whose weights must be negated (docs/quantization.md).
    ties : int
        Finite boundaries within :data:`TIE_RTOL` of an integer accumulator in range.
    """
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    r, strict = np.asarray(r, np.float64), np.broadcast_to(strict, np.shape(r))
    lo, hi = -acc_max, acc_max + 1
    negate = a < 0
    absa = np.abs(a)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bound = (r - c[:, None]) / absa                   # a != 0: acc' (>=|>) bound
        t = np.where(strict, np.floor(bound) + 1, np.ceil(bound))
        met = np.where(strict, c[:, None] > r, c[:, None] >= r)
    t = np.clip(np.nan_to_num(t, nan=hi, posinf=hi, neginf=lo), lo, hi)
    t = np.where(absa == 0, np.where(met, lo, hi), t)       # a constant channel
    # exact: an integer map (a = +-1, integer c and r) compares integers, which float32
    # holds exactly; elsewhere a boundary at an integer accumulator is a tie
    exact = ((absa == 1) & (c == np.rint(c))[:, None]
             & ((r == np.rint(r)) | ~np.isfinite(r)))
    near = (absa != 0) & np.isfinite(bound) & (np.abs(bound) <= acc_max + 1) & ~exact
    with np.errstate(invalid="ignore"):
        gap = np.abs(bound - np.rint(bound)) * absa
        ties = int(np.sum(near & (gap <= TIE_RTOL * np.maximum(1.0, np.abs(r)))))
    return t.astype(np.int64), negate, ties


def _quant_boundaries(mode: str, levels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(boundary, strict)`` of each code ``t = 1..levels`` of an unsigned quantizer:
    ``rounding(v) >= t  <=>  v (>|>=) boundary[t-1]``; None for an unknown rounding mode."""
    t = np.arange(1, levels + 1, dtype=np.float64)
    mode = mode.upper()
    if mode in ("ROUND", "HALF_EVEN"):
        return t - 0.5, (t % 2 == 1)          # a tie rounds to the even code
    if mode == "HALF_UP":
        return t - 0.5, np.zeros(levels, bool)
    if mode == "HALF_DOWN":
        return t - 0.5, np.ones(levels, bool)
    if mode in ("FLOOR", "DOWN"):
        return t, np.zeros(levels, bool)
    if mode in ("CEIL", "UP"):
        return t - 1.0, np.ones(levels, bool)
    return None


def _per_channel(v: np.ndarray, channels: int, vector: bool = False) -> np.ndarray | None:
    """A constant that broadcasts per channel over NCHW (a scalar, ``[C, 1, 1]`` or
    ``[1, C, 1, 1]``; with ``vector`` also ``[C]``, as BatchNormalization's parameters) as a
    float64 ``[C]``; None when it does not (it varies in space, or along another axis)."""
    v = np.asarray(v, np.float64)
    if v.size == 1 and v.ndim <= 4:
        return np.full(channels, float(v.reshape(-1)[0]))
    if vector and v.shape == (channels,):
        return v.copy()
    full = (1,) * (4 - v.ndim) + v.shape if v.ndim in (3, 4) else None
    if full is None or full != (1, channels, 1, 1):
        return None
    return v.reshape(channels)


class _Importer:
    """One pass over the graph (see the module docstring)."""

    def __init__(self, model, where: str):
        self.onnx, _ = require_interop()
        self.model, self.graph, self.where = model, model.graph, where
        self.consts: dict[str, np.ndarray] = {
            t.name: self.onnx.numpy_helper.to_array(t) for t in self.graph.initializer}
        self.vals: dict[str, _Val] = {}
        self.layers: list[_Layer] = []
        self.ties = 0
        self.input_bits = 8
        self.node_index = 0

    # -- messages ------------------------------------------------------------------------
    def desc(self, node) -> str:
        return (f"node {node.name!r} ({node.op_type})" if node.name
                else f"node #{self.node_index} ({node.op_type})")

    def fail(self, node, why: str):
        raise OnnxImportError(f"{self.where}: {self.desc(node)}: {why}")

    def attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                v = self.onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def const(self, node, i: int, what: str) -> np.ndarray:
        if i >= len(node.input) or not node.input[i]:
            self.fail(node, f"input {i} ({what}) is missing")
        if node.input[i] not in self.consts:
            self.fail(node, f"input {i} ({what}, tensor {node.input[i]!r}) must be a constant")
        return self.consts[node.input[i]]

    def val(self, node, i: int = 0) -> _Val:
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.vals:
            self.fail(node, f"input {i} (tensor {name!r}) is neither a constant nor computed "
                            f"from the image by a supported node")
        return self.vals[name]

    def out(self, node, v: _Val) -> None:
        outs = [o for o in node.output if o]
        if len(outs) != 1:
            self.fail(node, f"{len(outs)} outputs; the mapped ops have exactly one")
        self.vals[outs[0]] = v

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> None:
        self._graph_input()
        for self.node_index, node in enumerate(self.graph.node):
            if self._fold(node):
                continue
            op = node.op_type
            if node.domain and node.domain not in _CUSTOM_DOMAINS + ("ai.onnx",):
                self.fail(node, f"op domain {node.domain!r} is not supported (supported: the "
                                f"standard ONNX ops and {', '.join(_CUSTOM_DOMAINS)})")
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                self.fail(node, self._unsupported(op))
            handler(node)

    @staticmethod
    def _unsupported(op: str) -> str:
        why = {"Im2Col": "a lowered convolution (FINN's LowerConvsToMatMul); import the "
                         "graph before lowering",
               "MatMul": "a matrix product (fully connected or lowered conv): the hardware "
                         "has 1x1/3x3 convs only",
               "Gemm": "a fully connected layer: the hardware has 1x1/3x3 convs only",
               "Transpose": "a layout change: the importer reads NCHW graphs",
               "AveragePool": "average pooling: the hardware has 2x2 max-pools only"}
        return (why.get(op, f"op {op!r} has no counterpart in the hardware")
                + f" (supported ops: {', '.join(SUPPORTED_OPS)})")

    def _graph_input(self) -> None:
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise OnnxImportError(f"{self.where}: the graph has {len(inputs)} data inputs "
                                  f"({', '.join(i.name for i in inputs)}); the network reads "
                                  f"one image")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else 0
                for d in inp.type.tensor_type.shape.dim]
        if len(dims) != 4 or min(dims[1:]) < 1:
            raise OnnxImportError(f"{self.where}: graph input {inp.name!r} has shape {dims}; "
                                  f"expected NCHW [N, C, H, W] with fixed C, H, W")
        self.input_name, (_, c, h, w) = inp.name, dims
        self.input_bits = self._annotated_bits(inp.name) or 8
        self.vals[inp.name] = _Val("codes", -1, np.ones(c), np.zeros(c), h, w, self.input_bits)

    def _annotated_bits(self, name: str) -> int | None:
        """Bits of an unsigned integer QONNX datatype annotation of ``name``, if any."""
        for ann in self.graph.quantization_annotation:
            if ann.tensor_name == name:
                for kv in ann.quant_parameter_tensor_names:
                    if kv.key == "finn_datatype":
                        v = kv.value.upper()
                        if v == "BINARY":
                            return 1
                        if v.startswith("UINT") and v[4:].isdigit():
                            return int(v[4:])
        return None

    # -- constant folding ----------------------------------------------------------------
    def _fold(self, node) -> bool:
        """Evaluate a node whose inputs are all constants; False when it is not one."""
        if node.op_type == "Constant":
            value = next((a for a in node.attribute), None)
            if value is None or value.name != "value":
                self.fail(node, "only Constant nodes with a tensor 'value' are supported")
            self.consts[node.output[0]] = self.onnx.numpy_helper.to_array(value.t)
            return True
        ins = [i for i in node.input if i]
        if not ins or not all(i in self.consts for i in ins):
            return False
        try:
            if node.domain in _CUSTOM_DOMAINS:
                results = self._eval_custom(node)
            else:
                results = self._eval_standard(node)
        except OnnxImportError:
            raise
        except Exception as e:  # noqa: BLE001 - the evaluators raise anything
            self.fail(node, f"cannot evaluate this constant node: {type(e).__name__}: {e}")
        for name, value in zip([o for o in node.output if o], results):
            self.consts[name] = np.asarray(value)
        return True

    def _eval_custom(self, node) -> list[np.ndarray]:
        from qonnx.custom_op.registry import getCustomOp
        node = self._qonnx_node(node)
        ctx = {i: self.consts[i] for i in node.input if i}
        ctx.update({o: None for o in node.output})
        getCustomOp(node).execute_node(ctx, self.graph)
        return [ctx[o] for o in node.output if o]

    def _qonnx_node(self, node):
        """``node`` with its domain mapped to qonnx's (FINN and Brevitas spell it otherwise)."""
        if node.domain == "qonnx.custom_op.general":
            return node
        copy = self.onnx.NodeProto()
        copy.CopyFrom(node)
        copy.domain = "qonnx.custom_op.general"
        return copy

    def _eval_standard(self, node) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator
        h = self.onnx.helper
        ins = [i for i in node.input if i]
        vis = [h.make_tensor_value_info(i, h.np_dtype_to_tensor_dtype(self.consts[i].dtype),
                                        self.consts[i].shape) for i in ins]
        outs = [h.make_empty_tensor_value_info(o) for o in node.output if o]
        m = h.make_model(h.make_graph([node], "fold", vis, outs),
                         opset_imports=list(self.model.opset_import))
        return ReferenceEvaluator(m).run(None, {i: self.consts[i] for i in ins})

    # -- ops -----------------------------------------------------------------------------
    def _op_Identity(self, node) -> None:
        self.out(node, self.val(node))

    def _op_Concat(self, node) -> None:
        v = self.val(node)
        axis = self.attr(node, "axis", 1)
        if axis not in (1, -3) or len(set(node.input)) != 1:
            self.fail(node, "only input duplication is supported: the same tensor repeated "
                            "along channels (axis 1)")
        if v.kind != "codes" or v.relu:
            self.fail(node, "input duplication must repeat codes (the image or a layer's "
                            "activations)")
        n = len(node.input)
        self.out(node, replace(v, kind="dup", src=node.input[0], x_dup=n,
                               a=np.tile(v.a, n), b=np.tile(v.b, n)))

    def _latest(self, node, v: _Val) -> None:
        """``v`` must derive from the newest layer: the network is a chain."""
        if v.layer != len(self.layers) - 1:
            newest = self.layers[-1]
            self.fail(node, f"the network must be a chain: this node reads a tensor of "
                            f"{'the image' if v.layer < 0 else self.layers[v.layer].node}, "
                            f"which {newest.node} already follows")

    def _conv_input(self, node) -> tuple[_Val, int]:
        """The codes a conv reads (through an input duplication) and its ``x_dup``."""
        v = self.val(node)
        x_dup = 1
        if v.kind == "dup":
            x_dup, v = v.x_dup, self.vals[v.src]
        if v.kind == "acc":
            self.fail(node, "its input is another conv's accumulators: a hidden conv needs a "
                            "threshold activation (MultiThreshold or unsigned Quant)")
        if v.kind != "codes" or v.relu:
            self.fail(node, f"its input must be codes (the image or a layer's activations), "
                            f"got a {v.kind} tensor")
        self._latest(node, v)
        if np.any(v.b != 0):
            self.fail(node, "its input codes have an offset (a bias after the activation); "
                            "a zero-padded conv of offset codes is not a conv of the codes")
        if np.any(v.a != v.a[0]) or v.a[0] == 0:
            self.fail(node, "its input codes need one non-zero scale for all channels, got "
                            f"{np.unique(v.a)[:4].tolist()}")
        return v, x_dup

    def _conv_attrs(self, node, k: int) -> None:
        bad = []
        if self.attr(node, "group", 1) != 1:
            bad.append(f"group {self.attr(node, 'group')} (depthwise/grouped)")
        if any(d != 1 for d in self.attr(node, "dilations", [1, 1])):
            bad.append(f"dilations {self.attr(node, 'dilations')}")
        if any(s != 1 for s in self.attr(node, "strides", [1, 1])):
            bad.append(f"strides {self.attr(node, 'strides')} (the hardware's convs are "
                       f"stride 1)")
        if k not in (1, 3):
            bad.append(f"kernel {k}x{k} (1x1 or 3x3 only)")
        auto = self.attr(node, "auto_pad", "NOTSET")
        pads = list(self.attr(node, "pads", [0, 0, 0, 0]))
        same = (auto in ("SAME_UPPER", "SAME_LOWER") or (auto == "VALID" and k == 1)
                or (auto in ("NOTSET", "") and pads == [k // 2] * 4))
        if not same:
            bad.append(f"padding {auto if auto not in ('NOTSET', '') else pads} (zero 'same' "
                       f"padding {[k // 2] * 4} only)")
        if bad:
            self.fail(node, "unsupported conv: " + "; ".join(bad))

    def _binary_weights(self, node, v: _Val, x_dup: int) -> tuple[np.ndarray, np.ndarray]:
        """``(signs int8 [O, C', k, k], scale float64 [O])`` of a binary weight tensor."""
        w = np.asarray(self.const(node, 1, "weights"), np.float64)
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            self.fail(node, f"weights of shape {list(w.shape)}; expected [C_out, C_in, k, k]")
        if w.shape[1] != v.channels * x_dup:
            self.fail(node, f"weights for {w.shape[1]} input channels, the input has "
                            f"{v.channels * x_dup}")
        s = np.abs(w).reshape(len(w), -1).max(axis=1)
        mags = np.abs(w).reshape(len(w), -1)
        bad = np.flatnonzero((s == 0) | np.any(mags != s[:, None], axis=1))
        if len(bad):
            o = int(bad[0])
            vals = np.unique(w[o])[:6].tolist()
            self.fail(node, f"weights are not binary: output channel {o} holds {vals} "
                            f"(expected +s and -s, e.g. a BipolarQuant)")
        return np.where(w >= 0, 1, -1).astype(np.int8), s

    def _op_Conv(self, node) -> None:
        v, x_dup = self._conv_input(node)
        signs, s = self._binary_weights(node, v, x_dup)
        k = signs.shape[2]
        self._conv_attrs(node, k)
        o = len(signs)
        bias = (np.asarray(self.const(node, 2, "bias"), np.float64).reshape(-1)
                if len(node.input) > 2 and node.input[2] else np.zeros(o))
        if bias.shape != (o,):
            self.fail(node, f"bias of {bias.size} values for {o} outputs")
        self.layers.append(_Layer("conv", self.desc(node), self._name(node), v.height, v.width,
                                  v.channels, v.bits, k, x_dup, signs))
        self.out(node, _Val("acc", len(self.layers) - 1, v.a[0] * s, bias, v.height, v.width))

    def _name(self, node) -> str | None:
        n = node.name
        return n if n.isidentifier() and n not in {x.name for x in self.layers} else None

    def _affine_input(self, node, i: int = 0) -> _Val:
        v = self.val(node, i)
        if v.kind not in ("acc", "codes"):
            self.fail(node, f"a per-channel affine op on a {v.kind} tensor is not supported")
        if v.relu:
            self.fail(node, "a Relu must feed a quantizer (Quant / MultiThreshold) directly")
        return v

    def _channel_const(self, node, i: int, v: _Val, what: str, vector: bool = False
                       ) -> np.ndarray:
        c = _per_channel(self.const(node, i, what), v.channels, vector)
        if c is None:
            self.fail(node, f"{what} of shape {list(self.consts[node.input[i]].shape)} does "
                            f"not broadcast per channel ({v.channels} channels, NCHW)")
        return c

    def _affine_op(self, node) -> None:
        """``Mul``, ``Div``, ``Add``, ``Sub`` of one computed tensor and one constant."""
        dyn = [i for i, n in enumerate(node.input[:2]) if n in self.vals]
        if len(dyn) != 1:
            self.fail(node, "one operand must be a constant and the other the tensor")
        i = dyn[0]
        v = self._affine_input(node, i)
        c = self._channel_const(node, 1 - i, v, "the constant operand")
        op = node.op_type
        if op == "Div" and i == 1:
            self.fail(node, "dividing a constant by the tensor is not affine")
        if op == "Div" and np.any(c == 0):
            self.fail(node, "division by zero")
        a, b = {"Mul": (v.a * c, v.b * c), "Div": (v.a / c, v.b / c),
                "Add": (v.a, v.b + c),
                "Sub": ((v.a, v.b - c) if i == 0 else (-v.a, c - v.b))}[op]
        self.out(node, replace(v, a=a, b=b))

    _op_Mul = _op_Div = _op_Add = _op_Sub = _affine_op

    def _op_BatchNormalization(self, node) -> None:
        v = self._affine_input(node)
        if self.attr(node, "training_mode", 0):
            self.fail(node, "training_mode = 1: export the network in eval mode")
        gamma, beta, mean, var = (self._channel_const(node, i, v, what, vector=True)
                                  for i, what in ((1, "scale"), (2, "B"), (3, "mean"),
                                                  (4, "var")))
        inv = gamma / np.sqrt(var + float(self.attr(node, "epsilon", 1e-5)))
        self.out(node, replace(v, a=v.a * inv, b=(v.b - mean) * inv + beta))

    def _op_Relu(self, node) -> None:
        v = self._affine_input(node)
        if v.kind != "acc":
            self.fail(node, "a Relu is supported only in front of a quantizer")
        self.out(node, replace(v, relu=True))

    # -- activations ---------------------------------------------------------------------
    def _open_conv(self, node, v: _Val) -> _Layer:
        """The conv layer whose accumulators an activation thresholds."""
        if v.kind != "acc":
            self.fail(node, f"a threshold activation must follow a conv (got a {v.kind} "
                            f"tensor)")
        self._latest(node, v)
        return self.layers[v.layer]

    def _set_thresholds(self, node, v: _Val, r: np.ndarray, strict: np.ndarray, levels: int,
                        what: str) -> int:
        """Thresholds of the layer under ``v`` from real thresholds ``r [C, levels]``; returns
        the code width."""
        layer = self._open_conv(node, v)
        if not 1 <= levels <= 255:
            self.fail(node, f"{levels} threshold levels; the hardware has 1..8-bit codes "
                            f"(1..255 thresholds)")
        bits = max(1, math.ceil(math.log2(levels + 1)))
        if v.relu:      # relu(y) >= r  <=>  y >= r for r > 0; always met for r <= 0
            r = np.where((r < 0) | ((r == 0) & ~strict), -np.inf, r)
        t, negate, ties = integer_thresholds(v.a, v.b, r, strict, layer.acc_max)
        pad = np.full((len(t), (1 << bits) - 1 - levels), layer.acc_max + 1, np.int64)
        layer.thresholds = np.sort(np.concatenate([t, pad], axis=1), axis=1)
        layer.signs[negate] *= -1
        layer.act_bits, layer.quantizer = bits, what
        self.ties += ties
        return bits

    def _op_MultiThreshold(self, node) -> None:
        v = self.val(node)
        thr = np.asarray(self.const(node, 1, "thresholds"), np.float64)
        layout = self.attr(node, "data_layout", "NCHW") or "NCHW"
        if layout != "NCHW":
            self.fail(node, f"data_layout {layout!r}: the importer reads NCHW graphs")
        if thr.ndim != 2 or thr.shape[0] not in (1, v.channels):
            self.fail(node, f"thresholds of shape {list(thr.shape)}; expected [C, n] or [1, n]")
        r = np.sort(np.broadcast_to(thr, (v.channels, thr.shape[1])), axis=1)
        bits = self._set_thresholds(node, v, r, np.zeros(r.shape, bool), r.shape[1],
                                    self.desc(node))
        scale = float(self.attr(node, "out_scale", 1.0))
        bias = float(self.attr(node, "out_bias", 0.0))
        self.out(node, _Val("codes", v.layer, np.full(v.channels, scale),
                            np.full(v.channels, bias), v.height, v.width, bits))

    def _op_Quant(self, node) -> None:
        v = self.val(node)
        scale = self._channel_const(node, 1, v, "scale")
        zero = self.const(node, 2, "zero point")
        bitwidth = np.asarray(self.const(node, 3, "bit width")).reshape(-1)
        bw = float(bitwidth[0]) if bitwidth.size == 1 else -1.0
        signed, narrow = self.attr(node, "signed", 1), self.attr(node, "narrow", 0)
        if signed:
            self.fail(node, "signed activations: the hardware's codes are unsigned (use an "
                            "unsigned quantizer, e.g. Brevitas QuantReLU)")
        if np.any(np.asarray(zero) != 0) or np.any(scale <= 0):
            self.fail(node, "only zero point 0 and positive scales are supported")
        if bw != int(bw) or not 1 <= bw <= 8:
            self.fail(node, f"bit width {bitwidth.tolist()}: codes of 1..8 bits only")
        levels = (1 << int(bw)) - 1 - (1 if narrow else 0)
        if v.layer < 0 and v.kind == "codes":
            if narrow:
                self.fail(node, "a narrow-range quantizer on the image clips the top pixel "
                                "value; the hardware reads the pixels as they are")
            return self._input_quant(node, v, scale, levels)
        mode = self.attr(node, "rounding_mode", "ROUND")
        rule = _quant_boundaries(mode, levels)
        if rule is None:
            self.fail(node, f"rounding_mode {mode!r} is not supported")
        bound, strict = rule
        r = bound[None, :] * scale[:, None]               # y/s (>|>=) bound  <=>  y (>|>=) s*bound
        bits = self._set_thresholds(node, v, r, np.broadcast_to(strict, r.shape), levels,
                                    f"{self.desc(node)} ({int(bw)}-bit, {mode})")
        self.out(node, _Val("codes", v.layer, scale, np.zeros(v.channels), v.height, v.width,
                            bits))

    def _input_quant(self, node, v: _Val, scale: np.ndarray, levels: int) -> None:
        """A quantizer on the image: identity on integer pixels when its scale is 1."""
        if np.any(scale != 1) or np.any(v.a != 1):
            self.fail(node, "a quantizer on the image must have scale 1 (the hardware reads "
                            "the integer pixel values)")
        self.input_bits = int(levels).bit_length()
        self.out(node, replace(v, bits=self.input_bits))

    # -- pools ---------------------------------------------------------------------------
    def _op_Pad(self, node) -> None:
        v = self.val(node)
        pads = (self.const(node, 1, "pads") if len(node.input) > 1 and node.input[1]
                else self.attr(node, "pads"))
        pads = [int(p) for p in np.asarray(pads).reshape(-1)] if pads is not None else []
        mode = self.attr(node, "mode", "constant")
        if len(node.input) > 3 and node.input[3]:
            self.fail(node, "Pad with 'axes' is not supported")
        if pads != [0, 0, 0, 0, 0, 0, 1, 1]:
            self.fail(node, f"pads {pads}: only the bottom row and right column of a stride-1 "
                            f"pool ([0, 0, 0, 0, 0, 0, 1, 1]) are supported")
        if v.kind != "codes" or np.any(v.a <= 0):
            self.fail(node, "the padded tensor must be codes with positive scales")
        if mode == "constant":
            fill = (float(np.asarray(self.const(node, 2, "constant_value")).reshape(-1)[0])
                    if len(node.input) > 2 and node.input[2] else
                    float(self.attr(node, "value", 0.0)))
            if np.any(fill > v.b):
                self.fail(node, f"constant padding {fill} exceeds the smallest code value: "
                                f"the pool would not replicate the edge")
        elif mode != "edge":
            self.fail(node, f"pad mode {mode!r}: 'edge' (or a constant no larger than every "
                            f"code) only")
        self.out(node, replace(v, kind="padded", src=node.input[0]))

    def _op_MaxPool(self, node) -> None:
        v = self.val(node)
        padded = v.kind == "padded"
        if padded:
            v = self.vals[v.src]
        if v.kind != "codes" or np.any(v.a <= 0) or v.relu:
            self.fail(node, "a max-pool must read codes with positive scales (after a "
                            "threshold activation)")
        self._latest(node, v)
        stride = self._pool_stride(node, padded)
        if stride == 2 and (v.height % 2 or v.width % 2):
            self.fail(node, f"stride-2 pool of an odd {v.height}x{v.width} map")
        if len([o for o in node.output if o]) > 1:
            self.fail(node, "the Indices output is not supported")
        self.layers.append(_Layer("maxpool", self.desc(node), self._name(node), v.height,
                                  v.width, v.channels, v.bits, stride=stride))
        h, w = (v.height // 2, v.width // 2) if stride == 2 else (v.height, v.width)
        self.out(node, replace(v, layer=len(self.layers) - 1, height=h, width=w))

    def _pool_stride(self, node, padded: bool) -> int:
        kernel = list(self.attr(node, "kernel_shape", []))
        strides = list(self.attr(node, "strides", [1, 1]))
        pads = list(self.attr(node, "pads", [0, 0, 0, 0]))
        auto = self.attr(node, "auto_pad", "NOTSET")
        bad = []
        if kernel != [2, 2]:
            bad.append(f"kernel {kernel}")
        if self.attr(node, "ceil_mode", 0) or any(d != 1 for d in self.attr(node, "dilations",
                                                                             [1, 1])):
            bad.append("ceil_mode/dilations")
        if strides == [2, 2] and not padded and pads == [0, 0, 0, 0] and auto in ("NOTSET", "",
                                                                                  "VALID"):
            stride = 2
        elif strides == [1, 1] and ((padded and pads == [0, 0, 0, 0] and auto in ("NOTSET", ""))
                                    or (not padded and (pads == [0, 0, 1, 1]
                                                        or auto == "SAME_UPPER"))):
            stride = 1
        else:
            bad.append(f"strides {strides} with pads {pads}{' after a Pad' if padded else ''}")
        if bad:
            self.fail(node, "unsupported max-pool: " + "; ".join(bad) + " (2x2 stride 2, or "
                            "2x2 stride 1 with the bottom/right edge replicated, only)")
        return stride

    # -- the end -------------------------------------------------------------------------
    def decode(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, bias)`` float32 of the last conv from the graph outputs."""
        if not self.layers or self.layers[-1].kind != "conv" or self.layers[-1].act_bits:
            raise OnnxImportError(f"{self.where}: the network must end with a conv whose "
                                  f"accumulators (optionally scaled) are the graph output")
        maps = []
        for out in self.graph.output:
            v = self.vals.get(out.name)
            if v is None or v.kind != "acc" or v.layer != len(self.layers) - 1 or v.relu:
                raise OnnxImportError(
                    f"{self.where}: graph output {out.name!r} is not the last conv's "
                    f"accumulators through per-channel affine ops (the last conv is "
                    f"{self.layers[-1].node})")
            maps.append((v.a, v.b))
        scaled = [m for m in maps if np.any(m[0] != 1) or np.any(m[1] != 0)] or maps[:1]
        if any(not (np.array_equal(m[0], scaled[0][0]) and np.array_equal(m[1], scaled[0][1]))
               for m in scaled):
            raise OnnxImportError(f"{self.where}: the graph outputs decode the accumulators "
                                  f"differently; keep one output (or the raw accumulators)")
        return scaled[0][0].astype(np.float32), scaled[0][1].astype(np.float32)


def _w_dup(signs: np.ndarray, x_dup: int, hint: int | None, detect: bool) -> int:
    """The weight duplication of ONNX weights ``[O, C', k, k]``: ``hint`` when the weights
    share bits that way, else (``detect``) the largest ``d | C'`` whose groups of ``d``
    adjacent input channels hold equal weights everywhere, else 1."""
    c = signs.shape[1]

    def shares(d: int) -> bool:
        g = signs.reshape(signs.shape[0], c // d, d, *signs.shape[2:])
        return bool(np.all(g == g[:, :, :1]))
    if x_dup > 1:
        return 1
    if hint and c % hint == 0 and shares(hint):
        return hint
    if not detect:
        return 1
    return max(d for d in range(1, c + 1) if c % d == 0 and shares(d))


def _hints(model) -> dict | None:
    """The config an exported graph carries in its ``metadata_props``, if any."""
    for p in model.metadata_props:
        if p.key == META_CONFIG:
            try:
                return json.loads(p.value)
            except ValueError:
                return None
    return None


def _head(out_channels: int, hints: dict | None, classes: int | None,
          anchors: list | None, where: str) -> dict:
    """``[head]`` of the config: the options, else the graph's hint, else 1 class and
    ``C_out / 6`` anchors (or one anchor and ``C_out - 5`` classes)."""
    if anchors is None and classes is None and hints:
        head = hints.get("head", {})
        if len(head.get("anchors", [])) * (5 + head.get("classes", 1)) == out_channels:
            return head
    if classes is None:
        classes = 1 if out_channels % 6 == 0 or anchors else max(1, out_channels - 5)
    n = out_channels // (5 + classes) if anchors is None else len(anchors)
    if n < 1 or n * (5 + classes) != out_channels:
        raise OnnxImportError(f"{where}: the last conv has {out_channels} outputs, not "
                              f"anchors*(5+classes) of the YOLO head for {classes} class(es); "
                              f"pass --classes / --anchors")
    anchors = anchors or [[float(i + 1), float(i + 1)] for i in range(n)]
    return {"classes": classes, "anchors": [list(map(float, a)) for a in anchors]}


def _config_layers(imp: _Importer, hints: dict | None, detect: bool) -> tuple[list, dict]:
    """The ``[[layers]]`` tables and the unique weights ``V [O, k, k, C_u]`` per conv index."""
    hinted = hints.get("layers", []) if hints else []
    if len(hinted) != len(imp.layers) or any(h.get("kind") != lay.kind
                                             for h, lay in zip(hinted, imp.layers)):
        hinted = [{}] * len(imp.layers)
    tables, weights, used = [], {}, set()
    for i, (lay, hint) in enumerate(zip(imp.layers, hinted)):
        name = lay.name or f"{'conv' if lay.kind == 'conv' else 'pool'}{i}"
        while name in used:
            name += "_"
        used.add(name)
        if lay.kind == "maxpool":
            tables.append({"kind": "maxpool", "name": name, "stride": lay.stride})
            continue
        w_dup = _w_dup(lay.signs, lay.x_dup, hint.get("w_dup"), detect)
        t = {"kind": "conv", "name": name, "k": lay.k, "out_channels": lay.out_channels,
             "w_dup": w_dup, "x_dup": lay.x_dup}
        if lay.act_bits:
            t["act_bits"] = lay.act_bits
        tables.append(t)
        weights[i] = np.ascontiguousarray(lay.signs[:, ::w_dup].transpose(0, 2, 3, 1))
    return tables, weights


def import_onnx(model_or_path, name: str | None = None, classes: int | None = None,
                anchors: list | None = None, detect_w_dup: bool = True,
                where: str | None = None) -> ImportResult:
    """A QONNX network as an :class:`ImportResult` (config + integer artifact).

    Parameters
    ----------
    model_or_path : onnx.ModelProto or path
        The graph (binary weights, threshold or unsigned-Quant activations).
    name : str, optional
        The config name (default: the graph's, or the file's stem).
    classes, anchors : optional
        The YOLO head (default: the graph's ``dupnet.config`` hint, else 1 class).
    detect_w_dup : bool
        Find weight duplication in the weights (adjacent input channels sharing bits).
    where : str, optional
        The file name used in messages.

    Raises
    ------
    OnnxImportError
        A node outside what the hardware supports, naming the file, the node and why.
    """
    if isinstance(model_or_path, (str, Path)):
        where = where or str(model_or_path)
        model = load_model(model_or_path)
    else:
        model, where = model_or_path, where or "model"
    imp = _Importer(model, where)
    imp.run()
    scale, bias = imp.decode()
    hints = _hints(model)
    tables, weights = _config_layers(imp, hints, detect_w_dup)
    inp = imp.vals[imp.input_name]
    stem = Path(where).stem if isinstance(model_or_path, (str, Path)) else ""
    cfg_name = name or (hints or {}).get("name") or stem or model.graph.name or "imported"
    desc = (hints["description"] if hints and isinstance(hints.get("description"), str)
            else f"imported from {Path(where).name}")
    data = {"name": cfg_name, "description": desc,
            "weights": "binary",
            "input": {"height": inp.height, "width": inp.width, "channels": inp.channels,
                      "bits": imp.input_bits},
            "head": _head(imp.layers[-1].out_channels, hints, classes, anchors, where),
            "layers": tables}
    try:
        cfg = parse_config(data, source=f"{where} (imported)")
    except ConfigError as e:
        raise OnnxImportError(f"{where}: the graph maps to an invalid network: {e}") from None
    params = {i: ConvParams(weights[i], thresholds=lay.thresholds)
              for i, lay in enumerate(imp.layers) if lay.kind == "conv" and lay.act_bits}
    last = len(imp.layers) - 1
    params[last] = ConvParams(weights[last], scale=scale, bias=bias)
    digest = hashlib.sha256(model.SerializeToString()).hexdigest()
    art = Artifact(cfg, params, meta={"source": "onnx", "file": str(where), "sha256": digest,
                                      "ties": imp.ties})
    return ImportResult(art, _notes(imp, cfg), imp.ties)


def _notes(imp: _Importer, cfg: NetworkConfig) -> list[str]:
    """One line per layer: what it is and which node it came from."""
    notes = []
    for spec, lay in zip(cfg.layers, imp.layers):
        if lay.kind == "maxpool":
            notes.append(f"{spec.name:<10} maxpool stride {spec.stride} <- {lay.node}")
            continue
        act = (f"; {spec.act_bits}-bit codes <- {lay.quantizer}" if spec.act_bits
               else "; accumulators: the output")
        notes.append(f"{spec.name:<10} conv k{spec.k} {lay.in_channels}->{spec.out_channels} "
                     f"x_dup {spec.x_dup} w_dup {spec.w_dup} <- {lay.node}{act}")
    return notes


def config_toml(cfg: NetworkConfig) -> str:
    """The config as a TOML file that :func:`~dupnet.sw.config.load_config` reads back."""
    d = cfg.to_dict()

    def val(v) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)
    lines = [f"name = {val(d['name'])}", f"description = {val(d['description'])}",
             f"weights = {val(d['weights'])}", "", "[input]"]
    lines += [f"{k} = {val(v)}" for k, v in d["input"].items()]
    lines += ["", "[head]"] + [f"{k} = {val(v)}" for k, v in d["head"].items()]
    for layer in d["layers"]:
        lines += ["", "[[layers]]"] + [f"{k} = {val(v)}" for k, v in layer.items()]
    return "\n".join(lines) + "\n"

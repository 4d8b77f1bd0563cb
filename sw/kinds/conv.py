"""The ``conv`` layer kind: a k x k binary convolution (stride 1, zero "same" padding) with
input (``x_dup``) and weight-channel (``w_dup``) duplication, thresholded to ``act_bits`` codes,
or emitting signed accumulators when it is the last conv.

Records: :class:`~dupnet.sw.config.ConvSpec`, :class:`~dupnet.sw.config.ConvGeometry`.
Integer semantics: :func:`~dupnet.sw.golden.conv_acc`, :func:`~dupnet.sw.golden.threshold`,
:func:`~dupnet.sw.golden.fold_weights`. QAT modules: :class:`~dupnet.sw.qat.QuantConvBlock`
(hidden), :class:`~dupnet.sw.qat.HeadConv` (last), :class:`~dupnet.sw.qat.FloatConvBlock`
(float networks). Artifact parameters: :class:`~dupnet.sw.artifact.ConvParams`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..artifact import ArtifactError, ConvParams
from ..config import (MAX_ACT_BITS, ConfigError, ConvGeometry, ConvSpec, NetworkConfig,
                      int_field)
from ..export import ExportError, fold_thresholds
from ..golden import blas_dtype, conv_acc, fold_weights, threshold
from ..layers import LayerContext, LayerKind

__all__ = ["ConvKind", "KIND", "bn_affine"]


def _planes(x: np.ndarray, g: ConvGeometry, dt) -> np.ndarray:
    """Input planes ``[C_k, N, H, W]``: pre-added for ``w_dup > 1``, else the codes as they are."""
    if g.w_dup == 1:
        return x
    c, n, h, w = x.shape
    return x.reshape(c // g.w_dup, g.w_dup, n, h, w).sum(axis=1, dtype=dt)


def _cols(p: np.ndarray, k: int, dt) -> np.ndarray:
    """im2col ``[k*k*C, N*H*W]`` of planes ``p [C, N, H, W]`` with zero "same" padding."""
    c, n, h, w = p.shape
    if k == 1:
        return p.reshape(c, n * h * w).astype(dt, copy=False)
    r = k // 2
    cols = np.zeros((k, k, c, n, h, w), dtype=dt)
    for ky in range(k):
        dy = ky - r
        ys, yd = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h - max(0, dy))
        for kx in range(k):
            dx = kx - r
            xs, xd = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w - max(0, dx))
            cols[ky, kx, :, :, yd, xd] = p[:, :, ys, xs]
    return cols.reshape(k * k * c, n * h * w)


def _unique_weights_nhwc(v) -> np.ndarray:
    """Torch ``V[o, cu, ky, kx]`` (+-1) -> artifact layout ``[o, ky, kx, cu]`` int8."""
    return np.ascontiguousarray(v.detach().cpu().numpy().transpose(0, 2, 3, 1)).astype(np.int8)


def bn_affine(block, s_in: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``(a, c, s)`` of a :class:`~dupnet.sw.qat.QuantConvBlock` in eval mode (float64):
    ``y = a * acc + c`` is its pre-activation for input codes of step ``s_in``, ``s`` its
    output step. Computed independently of the exporter (the equivalence check uses it)."""
    bn = block.bn
    inv = 1 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    gamma = bn.weight.detach().double().numpy()
    alpha = block.conv.quant.alpha().detach().double().numpy()
    a = gamma * alpha * s_in * inv
    c = bn.bias.detach().double().numpy() - gamma * bn.running_mean.double().numpy() * inv
    return a, c, float(block.act.scale().detach())


class ConvKind(LayerKind):
    """``kind = "conv"``: fields ``k`` (1 or 3), ``out_channels``, ``w_dup``, ``x_dup``,
    ``act_bits`` (hidden convs of binary networks only)."""

    name = "conv"
    fields = frozenset({"kind", "name", "k", "out_channels", "w_dup", "x_dup", "act_bits"})
    default_name = "conv"
    head_capable = True
    has_params = True

    # -- config ----------------------------------------------------------------------------
    def parse(self, raw: dict[str, Any], ctx: LayerContext) -> ConvSpec:
        where = ctx.where
        if "k" not in raw or "out_channels" not in raw:
            raise ConfigError(f"{where}: a conv needs fields 'k' and 'out_channels'")
        k = int_field(where, "k", raw["k"], choices=(1, 3))
        c_out = int_field(where, "out_channels", raw["out_channels"], lo=1)
        w_dup = int_field(where, "w_dup", raw.get("w_dup", 1), lo=1)
        x_dup = int_field(where, "x_dup", raw.get("x_dup", 1), lo=1)
        if w_dup > 1 and x_dup > 1:
            raise ConfigError(f"{where}: 'w_dup' ({w_dup}) and 'x_dup' ({x_dup}) are both "
                              f"> 1; a layer may duplicate weights or inputs, not both")
        if ctx.weights == "float" and (w_dup > 1 or x_dup > 1):
            raise ConfigError(f"{where}: 'w_dup'/'x_dup' need weights = \"binary\"")
        return ConvSpec(name=ctx.name, k=k, out_channels=c_out, w_dup=w_dup, x_dup=x_dup,
                        act_bits=self._act_bits(raw, ctx))

    @staticmethod
    def _act_bits(raw: dict[str, Any], ctx: LayerContext) -> int | None:
        where = ctx.where
        if ctx.is_last:
            if "act_bits" in raw:
                raise ConfigError(f"{where}: the last conv emits accumulators; remove "
                                  f"field 'act_bits'")
            return None
        if ctx.weights == "float":
            if "act_bits" in raw:
                raise ConfigError(f"{where}: a float network has float activations; remove "
                                  f"field 'act_bits'")
            return None
        if "act_bits" not in raw:
            raise ConfigError(f"{where}: a hidden conv needs field 'act_bits' "
                              f"(1..{MAX_ACT_BITS})")
        return int_field(where, "act_bits", raw["act_bits"], lo=1, hi=MAX_ACT_BITS)

    def geometry(self, spec: ConvSpec, index: int, height: int, width: int, channels: int,
                 bits: int, is_last: bool) -> ConvGeometry:
        return ConvGeometry(index=index, name=spec.name, k=spec.k, height=height, width=width,
                            in_channels=channels, out_channels=spec.out_channels,
                            w_dup=spec.w_dup, x_dup=spec.x_dup, in_bits=bits,
                            act_bits=spec.act_bits, is_last=is_last)

    def check(self, g: ConvGeometry, where: str) -> None:
        if g.c_dup % g.w_dup:
            raise ConfigError(f"{where}: field 'w_dup' ({g.w_dup}) must divide the layer's "
                              f"input channels C' = x_dup*C_in = {g.c_dup}")

    def to_dict(self, spec: ConvSpec) -> dict[str, Any]:
        d = dataclasses.asdict(spec)
        if spec.act_bits is None:
            del d["act_bits"]
        return d

    # -- golden model ----------------------------------------------------------------------
    def reference(self, g: ConvGeometry, params: ConvParams, x: np.ndarray) -> np.ndarray:
        acc = conv_acc(x, params.weights, g)
        return acc if g.is_last else threshold(acc, params.thresholds)

    def prepare(self, g: ConvGeometry, params: ConvParams):
        dt = blas_dtype(g.acc_max)
        t = None if g.is_last else params.thresholds.astype(dt)[:, :, None]
        return dt, fold_weights(params.weights, g).astype(dt), t

    def forward(self, g: ConvGeometry, prepared, x: np.ndarray) -> np.ndarray:
        dt, wm, t = prepared
        n, h, w = x.shape[1:]
        acc = wm @ _cols(_planes(x, g, dt), g.k, dt)        # [C_out, N*H*W]
        if g.is_last:
            return np.rint(acc).astype(np.int64).reshape(g.out_channels, n, h, w)
        q = np.zeros(acc.shape, dtype=np.uint8)
        for j in range(t.shape[1]):
            q += acc >= t[:, j]
        return q.reshape(g.out_channels, n, h, w)

    # -- QAT model -------------------------------------------------------------------------
    def qat_module(self, g: ConvGeometry, cfg: NetworkConfig):
        from ..qat import FloatConvBlock, HeadConv, QuantConvBlock
        if not cfg.is_binary:
            return FloatConvBlock(g)
        if g.acc_max >= (1 << 24):
            raise ConfigError(f"{cfg.source} layer {g.index} ({g.name}): accumulator "
                              f"bound {g.acc_max} >= 2^24 is not exact in float32; the QAT "
                              f"model cannot reproduce its integer semantics")
        return HeadConv(g) if g.is_last else QuantConvBlock(g)

    def qat_forward(self, g: ConvGeometry, module, x, scale, record: bool):
        if scale is None:                       # float network
            y = module(x)
            return y, (y if record else None)
        if g.is_last:
            y = module(x, scale)
            return y, (y if record else None)
        pre = module.preact(x, scale)
        return module.act(pre), (module.act.codes(pre) if record else None)

    def qat_out_scale(self, g: ConvGeometry, module, scale):
        return scale if g.is_last else module.act.scale()

    def qat_acc_probe(self, g: ConvGeometry, module):
        return module.conv.acc_probe

    def qat_ties(self, g: ConvGeometry, module, params: ConvParams, x: np.ndarray,
                 scale: float):
        if g.is_last:
            return None
        a, c, s = bn_affine(module, scale)
        acc = conv_acc(x, params.weights, g)        # weights possibly negated by export
        acc = np.where(a < 0, -acc, acc)            # back to the model's acc
        y = a * acc + c
        t = np.clip(np.round(y / s - 0.5), 0, (1 << g.act_bits) - 2)
        return np.abs(y - (t + 0.5) * s) <= 1e-6 * np.maximum(1.0, np.abs(y))

    # -- artifact --------------------------------------------------------------------------
    def export_params(self, g: ConvGeometry, module, scale: float) -> ConvParams:
        """Fold (``docs/quantization.md``, :mod:`dupnet.sw.export`): the last conv exports
        ``scale = alpha * s_in`` and ``bias``; a hidden conv its BatchNorm and quantizer as
        integer thresholds, negating the weights of channels with a negative slope."""
        import torch

        from ..qat import HeadConv, QuantConvBlock
        conv = module.conv
        v = conv.quant.signs()
        alpha = conv.quant.alpha().double().cpu().numpy()
        if g.is_last:
            assert isinstance(module, HeadConv)
            # the same float32 product the eval path uses: (alpha * in_scale)
            out_scale = (conv.quant.alpha() * torch.tensor(scale, dtype=torch.float32)
                         ).cpu().numpy().astype(np.float32)
            bias = conv.bias.detach().cpu().numpy().astype(np.float32)
            return ConvParams(_unique_weights_nhwc(v), scale=out_scale, bias=bias)
        assert isinstance(module, QuantConvBlock)
        bn = module.bn
        if bn.running_mean is None or bn.running_var is None:
            raise ExportError(f"layer {g.index} ({g.name}): BatchNorm has no running "
                              f"statistics")
        mu = bn.running_mean.double().cpu().numpy()
        var = bn.running_var.double().cpu().numpy()
        gamma = bn.weight.double().cpu().numpy() if bn.weight is not None else np.ones_like(mu)
        beta = bn.bias.double().cpu().numpy() if bn.bias is not None else np.zeros_like(mu)
        inv = 1.0 / np.sqrt(var + bn.eps)
        a = gamma * alpha * scale * inv
        c = beta - gamma * mu * inv
        s = float(module.act.scale())
        if not all(np.all(np.isfinite(x)) for x in (a, c, np.array([s]))):
            raise ExportError(f"layer {g.index} ({g.name}): non-finite BatchNorm/scale "
                              f"parameters")
        t, negate = fold_thresholds(a, c, s, g.act_bits, g)
        w = _unique_weights_nhwc(v)
        w[negate] *= -1
        return ConvParams(w, thresholds=t)

    def random_params(self, g: ConvGeometry, x: np.ndarray, rng: np.random.Generator,
                      saturate_fraction: float) -> tuple[ConvParams, np.ndarray]:
        """Uniform +-1 weights; thresholds at quantiles of the accumulators of ``x`` (jittered),
        a fraction of the channels saturated (always / never met); the last conv a random
        decode scale and bias."""
        w = rng.choice(np.array([-1, 1], dtype=np.int8),
                       size=(g.out_channels, g.k, g.k, g.c_unique))
        acc = conv_acc(x, w, g)
        if g.is_last:
            scale = rng.uniform(0.5, 1.5, g.out_channels).astype(np.float32) / max(
                1.0, float(np.abs(acc).max()))
            bias = rng.normal(0, 0.1, g.out_channels).astype(np.float32)
            return ConvParams(w, scale=scale, bias=bias), acc
        flat = acc.reshape(-1, g.out_channels)
        qs = (np.arange(1, g.n_thresholds + 1) / (g.n_thresholds + 1))
        t = np.quantile(flat, qs, axis=0).T                      # [C_out, n_t]
        t = np.ceil(t + rng.uniform(-0.5, 0.5, size=t.shape)).astype(np.int64)
        t = np.sort(np.clip(t, g.threshold_min, g.threshold_max), axis=1)
        for o in np.flatnonzero(rng.random(g.out_channels) < saturate_fraction):
            n_low = int(rng.integers(0, g.n_thresholds + 1))     # this many always met
            t[o, :n_low] = g.threshold_min
            t[o, n_low:] = g.threshold_max
        return ConvParams(w, thresholds=t), threshold(acc, t)

    def validate_params(self, g: ConvGeometry, p: ConvParams, where: str) -> None:
        shape = (g.out_channels, g.k, g.k, g.c_unique)
        w = np.asarray(p.weights)
        if w.shape != shape:
            raise ArtifactError(f"{where}: field 'weights' has shape {w.shape}, expected "
                                f"{shape} (C_out, k, k, C'/w_dup)")
        if not np.all((w == 1) | (w == -1)):
            raise ArtifactError(f"{where}: field 'weights' must hold only -1 and +1")
        p.weights = w.astype(np.int8)
        if g.is_last:
            self._validate_decode(g, p, where)
        else:
            self._validate_thresholds(g, p, where)

    @staticmethod
    def _validate_decode(g: ConvGeometry, p: ConvParams, where: str) -> None:
        if p.thresholds is not None:
            raise ArtifactError(f"{where}: the last layer has no thresholds")
        for name in ("scale", "bias"):
            v = getattr(p, name)
            if v is None or np.asarray(v).shape != (g.out_channels,):
                raise ArtifactError(f"{where}: field '{name}' must be a float vector of "
                                    f"length {g.out_channels}")
            v = np.asarray(v, dtype=np.float32)
            if not np.all(np.isfinite(v)):
                raise ArtifactError(f"{where}: field '{name}' has non-finite values")
            setattr(p, name, v)

    @staticmethod
    def _validate_thresholds(g: ConvGeometry, p: ConvParams, where: str) -> None:
        t = p.thresholds
        tshape = (g.out_channels, g.n_thresholds)
        if t is None or np.asarray(t).shape != tshape:
            raise ArtifactError(f"{where}: field 'thresholds' must have shape {tshape} "
                                f"(C_out, 2^act_bits - 1)")
        t = np.asarray(t)
        if not np.issubdtype(t.dtype, np.integer):
            raise ArtifactError(f"{where}: field 'thresholds' must be integers")
        t = t.astype(np.int64)
        if np.any(np.diff(t, axis=1) < 0):
            o = int(np.argwhere(np.diff(t, axis=1) < 0)[0][0])
            raise ArtifactError(f"{where}: field 'thresholds' of channel {o} is not "
                                f"ascending: {t[o].tolist()}")
        if t.min() < g.threshold_min or t.max() > g.threshold_max:
            raise ArtifactError(f"{where}: field 'thresholds' outside "
                                f"[{g.threshold_min}, {g.threshold_max}] (saturation "
                                f"bounds of the {g.acc_bits}-bit accumulator)")
        p.thresholds = t
        if p.scale is not None or p.bias is not None:
            raise ArtifactError(f"{where}: only the last layer has 'scale'/'bias'")

    def params_to_arrays(self, g: ConvGeometry, p: ConvParams) -> dict[str, np.ndarray]:
        arrays = {"weights": np.packbits(p.weights.reshape(-1) > 0, bitorder="little")}
        if g.is_last:
            arrays["scale"] = p.scale.astype("<f4")
            arrays["bias"] = p.bias.astype("<f4")
        else:
            arrays["thresholds"] = p.thresholds.astype("<i4" if g.threshold_bits <= 32
                                                       else "<i8")
        return arrays

    def params_from_arrays(self, g: ConvGeometry, get, where: str) -> ConvParams:
        n = g.unique_weight_bits
        packed = get("weights")
        if packed.size != (n + 7) // 8:
            raise ArtifactError(f"{where}: field 'weights' holds {packed.size} bytes, "
                                f"expected {(n + 7) // 8}")
        bits = np.unpackbits(packed, count=n, bitorder="little")
        weights = (bits.astype(np.int8) * 2 - 1).reshape(g.out_channels, g.k, g.k, g.c_unique)
        if g.is_last:
            return ConvParams(weights, scale=get("scale").copy(), bias=get("bias").copy())
        return ConvParams(weights, thresholds=get("thresholds").astype(np.int64))

    def describe_params(self, g: ConvGeometry, p: ConvParams) -> str:
        if g.is_last:
            extra = (f"last: scale [{p.scale.min():.3g}, {p.scale.max():.3g}], "
                     f"bias [{p.bias.min():.3g}, {p.bias.max():.3g}]")
        else:
            t = p.thresholds
            sat_lo = int((t == g.threshold_min).sum())
            sat_hi = int((t == g.threshold_max).sum())
            extra = (f"{g.n_thresholds} thr/ch x {g.threshold_bits} b, range "
                     f"[{t.min()}, {t.max()}], saturated {sat_lo} low / {sat_hi} high")
        return (f"L{g.index:<2} {g.name:<8} k{g.k} {g.c_dup:>4}->{g.out_channels:<4} "
                f"w_dup {g.w_dup:<2} x_dup {g.x_dup}  unique bits {g.unique_weight_bits:>7}"
                f"  {extra}")


KIND = ConvKind()

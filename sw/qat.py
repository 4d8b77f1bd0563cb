"""Quantization-aware training model of a DupNet (PyTorch), Brevitas style.

An STE is a small :class:`torch.autograd.Function`; a quantizer is a module.  The model in
eval mode computes exactly what :mod:`dupnet.sw.golden` computes from the exported artifact
(``docs/quantization.md`` gives the derivation):

* :class:`BinarySign` — forward ``sign(w)`` with ``sign(0) = +1``; backward the clipped STE
  ``grad * [|w| <= 1]``.
* :class:`BinaryWeightQuantizer` — latent ``L[C_out, C'/w_dup, k, k]`` (only the unique
  channels are parameters) to ``V = BinarySign(L)``, duplicated
  ``W = V.repeat_interleave(w_dup, dim=1)`` (``W[o, c'] = V[o, c' // w_dup]``), per-output
  scale ``alpha[o] = mean |L[o]|``.
* :class:`ActQuantizer` — n-bit unsigned, learned clip (PACT): ``s = clip / (2^b - 1)``,
  ``q = clamp(floor(y/s + 1/2), 0, 2^b - 1)``, output ``q*s``.  Gradients: STE for ``y``
  inside ``[0, clip]`` (zero outside), PACT ``[y >= clip]`` for ``clip``.
* :class:`DupConv2d` — input duplication ``X' = cat([x] * x_dup, dim=1)``, then the k x k
  convolution (stride 1, zero "same" padding) with ``alpha * W``.
* :class:`DupNet` — the network of a :class:`~dupnet.sw.config.NetworkConfig`:
  hidden conv = DupConv2d -> BatchNorm2d -> ActQuantizer; max-pool on the quantized output
  (monotone, so codes pool exactly); last conv = ``alpha * s_in * acc + bias`` (no BN, no
  quantizer).  Float configs: Conv2d -> BatchNorm2d -> LeakyReLU(0.1), last conv with bias.

Images enter as float ``[N, C, H, W]`` holding raw uint8 values; the model divides by 255,
so the first layer's input scale is ``s_in = 1/255``.

Exactness in eval mode: a binary conv knows the scale ``s_in`` of its input (the previous
quantizer's ``s``, or 1/255).  In eval mode it recovers the integer codes
``round(x / s_in)`` and computes ``acc = conv(X'_codes, W_sign)`` — integers, exact in float32
below 2^24 (checked against ``acc_max``) — then ``alpha * s_in * acc``.  In training mode it
computes ``conv(X', W_sign) * alpha`` directly; both are the same function of ``x``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import ConvGeometry, NetworkConfig, network_geometry
from .layers import get_kind

__all__ = ["BinarySign", "BinaryWeightQuantizer", "ActQuantizer", "PACTQuant", "DupConv2d",
           "MaxPool", "QuantConvBlock", "HeadConv", "FloatConvBlock", "DupNet", "build_model",
           "INPUT_SCALE", "DEFAULT_CLIP", "BN_EPS"]

INPUT_SCALE = 1.0 / 255.0
DEFAULT_CLIP = 3.0      # initial PACT clip: BN output ~ N(beta, gamma^2) lands inside
BN_EPS = 1e-5
_CLIP_MIN = 1e-3        # the effective clip never drops below this (keeps s > 0)


# ---------------------------------------------------------------------------------------------
# Straight-through estimators


class BinarySign(torch.autograd.Function):
    """``V = sign(w)`` with ``sign(0) = +1``.

    Forward: ``V = +1 if w >= 0 else -1``.
    Backward (clipped STE, BinaryConnect/XNOR-Net): ``dL/dw = dL/dV * [|w| <= 1]``.
    """

    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


class PACTQuant(torch.autograd.Function):
    """Unsigned uniform quantizer with learned clip (PACT), returning ``q * s``.

    Forward: ``s = clip / n`` with ``n = 2^b - 1``; ``q = clamp(floor(y/s + 1/2), 0, n)``;
    output ``q * s``.
    Backward: ``dL/dy = dL/dout * [0 <= y <= clip]`` (STE inside the range);
    ``dL/dclip = sum dL/dout * [y > clip]`` (PACT: above the clip the output *is* the clip).
    """

    @staticmethod
    def forward(ctx, y: Tensor, clip: Tensor, levels: int) -> Tensor:
        s = clip / levels
        q = torch.clamp(torch.floor(y / s + 0.5), 0, levels)
        ctx.save_for_backward(y, clip)
        return q * s

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, clip = ctx.saved_tensors
        inside = ((y >= 0) & (y <= clip)).to(grad.dtype)
        above = (y > clip).to(grad.dtype)
        grad_clip = (grad * above).sum().reshape(clip.shape)
        return grad * inside, grad_clip, None


# ---------------------------------------------------------------------------------------------
# Quantizer modules


class BinaryWeightQuantizer(nn.Module):
    """Binary weights with weight-channel duplication.

    Holds the latent ``L[C_out, C'/w_dup, k, k]`` (the unique channels only: one parameter per
    stored weight bit).  ``forward()`` returns ``(W, alpha)``:
    ``V = BinarySign(L)``, ``W = V.repeat_interleave(w_dup, dim=1)`` of shape
    ``[C_out, C', k, k]`` (``W[o, c'] = V[o, c' // w_dup]``), ``alpha[o] = mean |L[o]|``
    (differentiable, XNOR-Net).
    """

    def __init__(self, out_channels: int, c_dup: int, k: int, w_dup: int = 1):
        super().__init__()
        if c_dup % w_dup:
            raise ValueError(f"w_dup {w_dup} does not divide C' = {c_dup}")
        self.w_dup = w_dup
        self.weight = nn.Parameter(torch.empty(out_channels, c_dup // w_dup, k, k))
        bound = 1.0 / math.sqrt(c_dup * k * k)
        nn.init.uniform_(self.weight, -bound, bound)

    def signs(self) -> Tensor:
        """The unique binary weights ``V`` (+-1), with the STE gradient."""
        return BinarySign.apply(self.weight)

    def alpha(self) -> Tensor:
        """Per-output scale ``mean |L[o]|``, shape ``[C_out]``."""
        return self.weight.abs().mean(dim=(1, 2, 3))

    def forward(self) -> tuple[Tensor, Tensor]:
        v = self.signs()
        w = v.repeat_interleave(self.w_dup, dim=1) if self.w_dup > 1 else v
        return w, self.alpha()


class ActQuantizer(nn.Module):
    """n-bit unsigned activation quantizer with a learned clip (PACT).

    ``s = clip / (2^b - 1)``, ``q = clamp(floor(y/s + 1/2), 0, 2^b - 1)``, output ``q * s``.
    The effective clip is ``max(|clip|, 1e-3)``; :meth:`scale` returns the ``s`` in use, which
    export reads.  Gradients: see :class:`PACTQuant`.
    """

    def __init__(self, bits: int, clip: float = DEFAULT_CLIP):
        super().__init__()
        if not 1 <= bits <= 16:
            raise ValueError(f"activation bits must be 1..16, got {bits}")
        self.bits = bits
        self.levels = (1 << bits) - 1
        self.clip = nn.Parameter(torch.tensor(float(clip)))

    def clip_value(self) -> Tensor:
        return self.clip.abs().clamp(min=_CLIP_MIN)

    def scale(self) -> Tensor:
        """The quantization step ``s`` (0-dim tensor)."""
        return self.clip_value() / self.levels

    def codes(self, y: Tensor) -> Tensor:
        """The integer codes ``q`` (float tensor of integers, no gradient path)."""
        s = self.scale().detach()
        return torch.clamp(torch.floor(y / s + 0.5), 0, self.levels)

    def forward(self, y: Tensor) -> Tensor:
        return PACTQuant.apply(y, self.clip_value(), self.levels)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class DupConv2d(nn.Module):
    """Binary conv with input and weight-channel duplication; stride 1, zero "same" padding.

    Forward: ``X' = cat([x] * x_dup, dim=1)``; ``out = alpha[o] * conv(X', W)[o]`` (+ ``bias``
    when ``bias=True``), with ``(W, alpha)`` from :class:`BinaryWeightQuantizer`.

    ``in_scale`` (the step of the input codes) enables the exact eval path: the accumulator
    ``acc = conv(round(X'/in_scale), W)`` is computed on integers and passed through
    ``self.acc_probe`` (an ``nn.Identity``: hook it to read the integer accumulators), then
    ``out = (alpha * in_scale) * acc (+ bias)``.
    """

    def __init__(self, in_channels: int, out_channels: int, k: int, x_dup: int = 1,
                 w_dup: int = 1, bias: bool = False):
        super().__init__()
        if k not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {k}")
        self.in_channels, self.out_channels, self.k = in_channels, out_channels, k
        self.x_dup, self.w_dup = x_dup, w_dup
        self.quant = BinaryWeightQuantizer(out_channels, in_channels * x_dup, k, w_dup)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.acc_probe = nn.Identity()

    def duplicate(self, x: Tensor) -> Tensor:
        return torch.cat([x] * self.x_dup, dim=1) if self.x_dup > 1 else x

    def forward(self, x: Tensor, in_scale: Tensor | float | None = None) -> Tensor:
        w, alpha = self.quant()
        pad = self.k // 2
        if in_scale is not None and not self.training:
            codes = torch.round(x / in_scale)
            acc = self.acc_probe(F.conv2d(self.duplicate(codes), w, padding=pad))
            out = acc * (alpha * in_scale).view(1, -1, 1, 1)
        else:
            out = F.conv2d(self.duplicate(x), w, padding=pad) * alpha.view(1, -1, 1, 1)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}x{self.x_dup} -> {self.out_channels}, k={self.k}, "
                f"w_dup={self.w_dup}, bias={self.bias is not None}")


# ---------------------------------------------------------------------------------------------
# Layer blocks


class MaxPool(nn.Module):
    """2x2 max-pool; stride 2, or stride 1 with the bottom row / right column replicated."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return F.max_pool2d(x, 2, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class QuantConvBlock(nn.Module):
    """Hidden binary conv: ``y = BN(alpha * conv(X', W))``, output ``ActQuantizer(y)``."""

    def __init__(self, g: ConvGeometry):
        super().__init__()
        self.conv = DupConv2d(g.in_channels, g.out_channels, g.k, g.x_dup, g.w_dup)
        self.bn = nn.BatchNorm2d(g.out_channels, eps=BN_EPS)
        self.act = ActQuantizer(g.act_bits)

    def preact(self, x: Tensor, in_scale) -> Tensor:
        return self.bn(self.conv(x, in_scale))

    def forward(self, x: Tensor, in_scale=None) -> Tensor:
        return self.act(self.preact(x, in_scale))


class HeadConv(nn.Module):
    """Last binary conv: ``head = alpha * s_in * acc + bias`` (no BN, no quantizer)."""

    def __init__(self, g: ConvGeometry):
        super().__init__()
        self.conv = DupConv2d(g.in_channels, g.out_channels, g.k, g.x_dup, g.w_dup, bias=True)

    def forward(self, x: Tensor, in_scale=None) -> Tensor:
        return self.conv(x, in_scale)


class FloatConvBlock(nn.Module):
    """Float reference conv: Conv2d (bias-free) -> BN -> LeakyReLU(0.1); the last has a bias."""

    def __init__(self, g: ConvGeometry):
        super().__init__()
        self.conv = nn.Conv2d(g.in_channels, g.out_channels, g.k, padding=g.k // 2,
                              bias=g.is_last)
        self.is_last = g.is_last
        if not g.is_last:
            self.bn = nn.BatchNorm2d(g.out_channels, eps=BN_EPS)
            self.act = nn.LeakyReLU(0.1)

    def forward(self, x: Tensor, in_scale=None) -> Tensor:
        x = self.conv(x)
        return x if self.is_last else self.act(self.bn(x))


# ---------------------------------------------------------------------------------------------
# The network


class DupNet(nn.Module):
    """The QAT (or float reference) network of a config.

    ``self.layers[i]`` is the module of ``cfg.layers[i]``, made by its kind
    (:meth:`~dupnet.sw.layers.LayerKind.qat_module`): for ``conv`` :class:`QuantConvBlock`,
    :class:`HeadConv` (binary) or :class:`FloatConvBlock` (float), for ``maxpool``
    :class:`MaxPool`.  ``self.geometry`` is :func:`~dupnet.sw.config.network_geometry` of the
    config; each layer is stepped by its kind's ``qat_forward`` and ``qat_out_scale``.
    """

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.geometry = network_geometry(cfg)
        self.kinds = [get_kind(g.kind) for g in self.geometry]
        self.layers = nn.ModuleList([kind.qat_module(g, cfg)
                                     for g, kind in zip(self.geometry, self.kinds)])

    @property
    def is_binary(self) -> bool:
        return self.cfg.is_binary

    def _run(self, images: Tensor, record: bool) -> tuple[Tensor, list[Tensor]]:
        if images.dim() != 4 or images.shape[1] != self.cfg.input_channels:
            raise ValueError(f"images must be [N, {self.cfg.input_channels}, H, W], got "
                             f"{tuple(images.shape)}")
        x = images.float() * INPUT_SCALE if self.is_binary else images.float() / 255.0
        scale = torch.tensor(INPUT_SCALE) if self.is_binary else None   # step of x's codes
        outs: list[Tensor] = []
        for g, kind, mod in zip(self.geometry, self.kinds, self.layers):
            x, recorded = kind.qat_forward(g, mod, x, scale, record)
            if scale is not None:
                scale = kind.qat_out_scale(g, mod, scale)
            if record:
                outs.append(recorded)
        return x, outs

    def forward(self, images: Tensor) -> Tensor:
        """Head output ``[N, A*(5+classes), H', W']`` from raw 0..255 images ``[N, C, H, W]``."""
        return self._run(images, record=False)[0]

    def forward_layers(self, images: Tensor) -> list[Tensor]:
        """Every layer's output in config layer order.

        Binary networks: hidden convs and pools as integer codes ``q`` (float tensors of
        integers, NCHW), the last layer as the real head output.  Float networks: the real
        outputs.
        """
        return self._run(images, record=True)[1]

    def weight_quantizers(self) -> list[BinaryWeightQuantizer]:
        return [m for m in self.modules() if isinstance(m, BinaryWeightQuantizer)]

    @torch.no_grad()
    def clip_latent_(self, bound: float = 1.0) -> None:
        """Clamp every latent binary weight into ``[-bound, bound]`` (call after a step)."""
        for q in self.weight_quantizers():
            q.weight.clamp_(-bound, bound)


def build_model(cfg: NetworkConfig) -> DupNet:
    """The :class:`DupNet` of ``cfg`` (binary QAT or float reference)."""
    return DupNet(cfg)


# ---------------------------------------------------------------------------------------------
# Starting one network from another's weights (``TrainOptions.init_from``)


def _conv_of(mod: nn.Module):
    """``(conv, bn)`` of a conv layer module (QAT or float), ``None`` for other modules."""
    if isinstance(mod, (QuantConvBlock, FloatConvBlock)):
        return mod.conv, getattr(mod, "bn", None)
    if isinstance(mod, HeadConv):
        return mod.conv, None
    return None


@torch.no_grad()
def effective_weight(conv: nn.Module) -> Tensor:
    """The real weight ``[C_out, C_in, k, k]`` a conv applies to its (un-duplicated) input.

    Float ``Conv2d``: its weight.  :class:`DupConv2d`: ``alpha[o] * sum_j W[o, c + j*C_in]``
    over the ``x_dup`` copies of input channel ``c`` (``W`` the duplicated signs).
    """
    if isinstance(conv, DupConv2d):
        w, alpha = conv.quant()
        w = w.view(conv.out_channels, conv.x_dup, conv.in_channels, conv.k, conv.k).sum(1)
        return w * alpha.view(-1, 1, 1, 1)
    return conv.weight.detach().clone()


@torch.no_grad()
def binary_latent_from(wf: Tensor, conv: DupConv2d, spread: float = 0.7) -> Tensor:
    """Latent binary weights for ``conv`` that approximate the real weight ``wf``
    ``[C_out, C_in, k, k]``.

    * input duplication (``x_dup = n``): copy ``j`` of channel ``c`` gets
      ``wf[o, c] + spread * m[o] * (1 - 2j/(n-1))`` (``m[o] = mean |wf[o]|``), so the sum of the
      copies' signs is ``wf`` quantized to ``n + 1`` levels (for ``n = 2``: ternary, threshold
      ``0.7 * mean |w|``, as in ternary weight networks);
    * weight duplication (``w_dup``): each stored channel is the mean of the ``w_dup`` channels
      it stands for (the sign of their sum);
    * scale: per output channel, ``alpha = mean |L[o]|`` is set to the least-squares scale
      ``<wf, E> / <E, E>`` of the resulting effective sign pattern ``E``, so the binary layer
      computes about what ``wf`` computes; clamped into ``[-1, 1]`` (the STE's window).
    """
    c_out, c_in, k = conv.out_channels, conv.in_channels, conv.k
    if tuple(wf.shape) != (c_out, c_in, k, k):
        raise ValueError(f"weight {tuple(wf.shape)} does not fit {conv.extra_repr()}")
    n = conv.x_dup
    m = wf.abs().mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    if n > 1:
        offs = [spread * (1 - 2 * j / (n - 1)) for j in range(n)]
        lat = torch.cat([wf + o * m for o in offs], dim=1)       # [C_out, n*C_in, k, k]
    else:
        lat = wf.clone()
    if conv.w_dup > 1:
        lat = lat.view(c_out, -1, conv.w_dup, k, k).mean(2)
    signs = torch.where(lat >= 0, 1.0, -1.0)
    e = signs.repeat_interleave(conv.w_dup, dim=1).view(c_out, n, c_in, k, k).sum(1)
    num = (wf * e).sum(dim=(1, 2, 3))
    den = (e * e).sum(dim=(1, 2, 3)).clamp(min=1.0)
    alpha = (num / den).clamp(min=1e-6)                          # wanted mean |L[o]|
    mean_abs = lat.abs().mean(dim=(1, 2, 3)).clamp(min=1e-12)
    lat = lat * (alpha / mean_abs).view(-1, 1, 1, 1)
    lat = torch.where(lat == 0, torch.full_like(lat, 1e-6), lat)  # keep sign(0) = +1 explicit
    return lat.clamp(-1.0, 1.0)


@torch.no_grad()
def init_from_model(dst: "DupNet", src: "DupNet") -> str:
    """Start ``dst`` from the weights of ``src`` (another network of the same layer widths).

    Same config: the state dict is copied.  Otherwise layer by layer (same kinds, channels and
    kernels required): a binary conv gets :func:`binary_latent_from` the source's
    :func:`effective_weight`, a float conv the effective weight itself; BatchNorm (affine
    parameters and running statistics) and the head bias are copied; activation clips keep
    their initial value.  Returns a one-line description; raises ``ValueError`` naming the
    first layer that does not fit.
    """
    if dst.cfg.to_dict() | {"description": ""} == src.cfg.to_dict() | {"description": ""}:
        dst.load_state_dict(src.state_dict())
        return f"all weights copied from {src.cfg.name} (same config)"
    if len(dst.geometry) != len(src.geometry):
        raise ValueError(f"{src.cfg.name} has {len(src.geometry)} layers, {dst.cfg.name} "
                         f"{len(dst.geometry)}")
    done = []
    for gd, gs, md, ms in zip(dst.geometry, src.geometry, dst.layers, src.layers):
        name = f"layer {gd.name!r}"
        if gd.kind != gs.kind:
            raise ValueError(f"{name}: kind {gd.kind} here, {gs.kind} in {src.cfg.name}")
        cd, cs = _conv_of(md), _conv_of(ms)
        if cd is None or cs is None:
            sd, ss = md.state_dict(), ms.state_dict()
            if sd.keys() != ss.keys() or any(sd[k].shape != ss[k].shape for k in sd):
                raise ValueError(f"{name}: parameters do not match {src.cfg.name}'s")
            md.load_state_dict(ss)
            continue
        (conv_d, bn_d), (conv_s, bn_s) = cd, cs
        shape_d = (gd.out_channels, gd.in_channels, gd.k)
        shape_s = (gs.out_channels, gs.in_channels, gs.k)
        if shape_d != shape_s:
            raise ValueError(f"{name}: (out, in, k) {shape_d} here, {shape_s} in "
                             f"{src.cfg.name}")
        wf = effective_weight(conv_s).float()
        if isinstance(conv_d, DupConv2d):
            conv_d.quant.weight.copy_(binary_latent_from(wf, conv_d))
        else:
            conv_d.weight.copy_(wf)
        if getattr(conv_d, "bias", None) is not None and getattr(conv_s, "bias", None) is not None:
            conv_d.bias.copy_(conv_s.bias)
        if bn_d is not None and bn_s is not None:
            bn_d.load_state_dict(bn_s.state_dict())
        done.append(gd.name)
    return (f"{', '.join(done)} started from {src.cfg.name}'s weights"
            f"{' (binarized)' if dst.is_binary and not src.is_binary else ''}")

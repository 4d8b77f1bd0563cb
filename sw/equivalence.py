"""PyTorch eval of a QAT model vs the golden model of its export, on every activation code.

Used by the export tests and by ``dupnet flow``'s equivalence step.
"""
from __future__ import annotations

import numpy as np
import torch

from .config import ConvGeometry
from .golden import GoldenModel, conv_acc
from .qat import INPUT_SCALE, HeadConv, QuantConvBlock

__all__ = ["compare_with_golden", "affine_params", "equivalence_ok"]


def _to_torch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def affine_params(model):
    """Per hidden conv (float64): a, c of y = a*acc + c, and the step s (independent of export)."""
    out, s_in = {}, float(np.float32(INPUT_SCALE))
    for g, m in zip(model.geometry, model.layers):
        if isinstance(m, QuantConvBlock):
            bn = m.bn
            inv = 1 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
            gamma = bn.weight.detach().double().numpy()
            alpha = m.conv.quant.alpha().detach().double().numpy()
            a = gamma * alpha * s_in * inv
            c = bn.bias.detach().double().numpy() - gamma * bn.running_mean.double().numpy() * inv
            s = float(m.act.scale().detach())
            out[g.index] = (a, c, s)
            s_in = s
    return out


def compare_with_golden(model, art, images: np.ndarray) -> dict:
    """Compare PyTorch eval of ``model`` with the golden model of ``art`` on every layer output
    for NHWC uint8 ``images``; returns a report dict (asserts nothing itself): ``codes``
    compared, ``mismatches``, ``ties`` (pre-activations exactly on a code boundary), 
    ``mismatches_at_ties``, ``per_layer`` (name, codes, mismatches), ``acc_equal`` (last-layer
    integer accumulators), ``head_err`` (golden decode vs torch head, max abs).
    """
    model.eval()
    golden = GoldenModel(art)
    gouts = golden.forward(images)
    accs = []
    last = [m for m in model.layers if isinstance(m, HeadConv)][0]
    h = last.conv.acc_probe.register_forward_hook(lambda m, i, o: accs.append(o.detach()))
    with torch.no_grad():
        touts = model.forward_layers(_to_torch(images))
        head = model(_to_torch(images))
    h.remove()
    aff = affine_params(model)
    rep = {"codes": 0, "mismatches": 0, "ties": 0, "mismatches_at_ties": 0, "per_layer": [],
           "levels": []}
    x = images.astype(np.int64)
    for geo, go, to in zip(model.geometry, gouts, touts):
        if isinstance(geo, ConvGeometry) and geo.is_last:
            tacc = accs[0].permute(0, 2, 3, 1).numpy()
            rep["acc_equal"] = bool(np.array_equal(tacc, go))
            rep["acc_compared"] = go.size
            rep["head_err"] = float(np.abs(golden.decode_inputs(go)
                                           - to.permute(0, 2, 3, 1).numpy()).max())
            rep["head_forward_err"] = float((head - to).abs().max())
            rep["head_scale"] = float(np.abs(to.numpy()).max())
            continue
        tq = to.permute(0, 2, 3, 1).numpy().astype(np.int64)
        bad = tq != go
        nbad = int(bad.sum())
        rep["codes"] += go.size
        rep["mismatches"] += nbad
        rep["per_layer"].append((geo.name, go.size, nbad))
        rep["levels"].append(len(np.unique(go)))
        if isinstance(geo, ConvGeometry):
            # ties: y = a*acc + c on a code boundary (t - 1/2)*s, over ALL the data
            a, c, s = aff[geo.index]
            acc = conv_acc(x, art.layers[geo.index].weights, geo)   # weights possibly negated
            acc = np.where(a < 0, -acc, acc)                        # back to the model's acc
            y = a * acc + c
            t = np.clip(np.round(y / s - 0.5), 0, (1 << geo.act_bits) - 2)
            tie = np.abs(y - (t + 0.5) * s) <= 1e-6 * np.maximum(1.0, np.abs(y))
            rep["ties"] += int(tie.sum())
            rep["mismatches_at_ties"] += int((bad & tie).sum())
        x = go
    return rep


def equivalence_ok(rep: dict) -> bool:
    """Every code equal, no tie, last-layer accumulators equal, head within float rounding."""
    return (rep["mismatches"] == 0 and rep["ties"] == 0 and rep["acc_equal"]
            and rep["head_err"] <= 1e-5 * max(1.0, rep["head_scale"]))

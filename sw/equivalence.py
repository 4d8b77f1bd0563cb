"""PyTorch eval of a QAT model vs the golden model of its export, on every activation code.

Used by the export tests and by ``dupnet flow``'s equivalence step.
"""
from __future__ import annotations

import numpy as np
import torch

from .golden import GoldenModel
from .kinds.conv import bn_affine
from .layers import get_kind
from .qat import INPUT_SCALE, QuantConvBlock

__all__ = ["compare_with_golden", "affine_params", "equivalence_ok"]


def _to_torch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def _input_scales(model) -> list[float]:
    """The step of each layer's input codes (float), threaded through the kinds."""
    out, s_in = [], float(np.float32(INPUT_SCALE))
    with torch.no_grad():
        for g, m in zip(model.geometry, model.layers):
            out.append(s_in)
            s_in = float(get_kind(g.kind).qat_out_scale(g, m, s_in))
    return out


def affine_params(model):
    """Per hidden conv (float64): a, c of y = a*acc + c, and the step s (independent of export)."""
    return {g.index: bn_affine(m, s_in)
            for g, m, s_in in zip(model.geometry, model.layers, _input_scales(model))
            if isinstance(m, QuantConvBlock)}


def compare_with_golden(model, art, images: np.ndarray) -> dict:
    """Compare PyTorch eval of ``model`` with the golden model of ``art`` on every layer output
    for NHWC uint8 ``images``; returns a report dict (asserts nothing itself): ``codes``
    compared, ``mismatches``, ``ties`` (pre-activations exactly on a code boundary, from the
    kinds' ``qat_ties``), ``mismatches_at_ties``, ``per_layer`` (name, codes, mismatches),
    ``acc_equal`` (last-layer integer accumulators), ``head_err`` (golden decode vs torch head,
    max abs).
    """
    model.eval()
    golden = GoldenModel(art)
    gouts = golden.forward(images)
    accs = []
    kinds = [get_kind(g.kind) for g in model.geometry]
    last = next(i for i, g in enumerate(model.geometry) if g.is_last)
    probe = kinds[last].qat_acc_probe(model.geometry[last], model.layers[last])
    h = probe.register_forward_hook(lambda m, i, o: accs.append(o.detach()))
    with torch.no_grad():
        touts = model.forward_layers(_to_torch(images))
        head = model(_to_torch(images))
    h.remove()
    rep = {"codes": 0, "mismatches": 0, "ties": 0, "mismatches_at_ties": 0, "per_layer": [],
           "levels": []}
    x = images.astype(np.int64)
    for geo, kind, mod, s_in, go, to in zip(model.geometry, kinds, model.layers,
                                            _input_scales(model), gouts, touts):
        if geo.is_last:
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
        # ties: the pre-activation on a code boundary, over ALL the data
        with torch.no_grad():
            tie = kind.qat_ties(geo, mod, art.layers.get(geo.index), x, s_in)
        if tie is not None:
            rep["ties"] += int(tie.sum())
            rep["mismatches_at_ties"] += int((bad & tie).sum())
        x = go
    return rep


def equivalence_ok(rep: dict) -> bool:
    """Every code equal, no tie, last-layer accumulators equal, head within float rounding."""
    return (rep["mismatches"] == 0 and rep["ties"] == 0 and rep["acc_equal"]
            and rep["head_err"] <= 1e-5 * max(1.0, rep["head_scale"]))

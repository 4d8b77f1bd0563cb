"""The regression matrix of the whole-network benches: small configs and foldings that cover
w_dup > 1, x_dup > 1, k = 1 and k = 3, stride-1 and stride-2 pools, odd image sizes,
non-power-of-two channel counts, PE = SIMD = 1 and wide (fully parallel) foldings, the
``gated`` datapath and ``preadd = false``.

``feat`` is the smallest design (4x4 images), for what ``make test`` runs on Verilator beside
the two CI cases, where the build time is the cost: the folding options, and the tool paths
(C++ driver, failure path, wave windows) at the folding of :data:`FEAT_FOLDING`."""
from __future__ import annotations

from dupnet.sw.config import conv_geometries, parse_config


def _conv(name, k, c, act=2, w_dup=1, x_dup=1):
    d = {"kind": "conv", "name": name, "k": k, "out_channels": c, "w_dup": w_dup,
         "x_dup": x_dup}
    if act is not None:
        d["act_bits"] = act
    return d


def _pool(name, stride):
    return {"kind": "maxpool", "name": name, "stride": stride}


CONFIGS = {
    # x_dup on first and last, w_dup in the middle, both pool kinds, 6 channels (not 2^n)
    "dup": {"name": "sim-dup", "input": {"height": 6, "width": 6, "channels": 3},
            "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
            "layers": [_conv("conv1", 3, 6, x_dup=2), _pool("pool1", 2),
                       _conv("conv2", 3, 8, w_dup=2), _pool("pool2", 1),
                       _conv("conv3", 1, 6, act=None, x_dup=2)]},
    # odd image (5x7), grayscale, 1-bit and 3-bit codes, k=1 hidden layer, w_dup = 3
    "odd": {"name": "sim-odd", "input": {"height": 5, "width": 7, "channels": 1},
            "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
            "layers": [_conv("conv1", 3, 3, act=1), _pool("pool1", 1),
                       _conv("conv2", 1, 6, act=3, w_dup=3),
                       _conv("conv3", 3, 6, act=None)]},
    # 4x4x2: w_dup = 2 on conv1 (pre-add applies to its thresholds), a stride-2 pool, w_dup = 2
    # on the last layer; small enough that a build costs seconds
    "feat": {"name": "sim-feat", "input": {"height": 4, "width": 4, "channels": 2},
             "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
             "layers": [_conv("conv1", 3, 4, w_dup=2), _pool("pool1", 2),
                        _conv("conv2", 1, 6, act=None, w_dup=2)]},
}


def config(name):
    return parse_config(CONFIGS[name], source=f"tests/sim/cases.py:{name}")


def folding(cfg, kind, arith="xnor", preadd=True, weights="rom", kernel_rows=False):
    """``min``: PE = SIMD = 1; ``wide``: PE = C_out, SIMD = C'; ``mixed``: in between; with
    the MVTU datapath ``arith``, ``preadd`` and the weight source ``weights``;
    ``kernel_rows``: a row of the window per beat (``kp = k``) in every k = 3 conv."""
    from dupnet.hw.folded import FoldedConv
    from dupnet.hw.folding import Folding
    layers = {}
    for g in conv_geometries(cfg):
        cands = FoldedConv.candidates(g)
        if kind == "min":
            layers[g.name] = (1, 1)
        elif kind == "wide":
            layers[g.name] = (g.out_channels, g.c_dup)
        else:
            # the middle candidate by lane count: some PE > 1 and SIMD > 1 where possible
            cands = sorted(cands, key=lambda ps: (ps[0] * ps[1], ps))
            mid = [c for c in cands if c[0] > 1 and c[1] > 1] or cands
            layers[g.name] = mid[len(mid) // 2]
    kp = {g.name: g.k for g in conv_geometries(cfg) if kernel_rows and g.k > 1}
    return Folding(layers, preadd=preadd, arith=arith, weights=weights, kp=kp)


def case_folding(cfg, spec):
    """The folding of a case's ``KIND[+gated][+nopreadd][+load][+kp]``: :func:`folding`'s
    ``KIND``, with ``arith = "gated"``, ``preadd = false``, ``weights = "load"`` and/or
    ``kp = k`` (a row of the window per beat)."""
    kind, *opts = spec.split("+")
    unknown = set(opts) - {"gated", "nopreadd", "load", "kp"}
    assert not unknown, f"unknown folding option(s) {unknown} in {spec!r}"
    return folding(cfg, kind, arith="gated" if "gated" in opts else "xnor",
                   preadd="nopreadd" not in opts, weights="load" if "load" in opts else "rom",
                   kernel_rows="kp" in opts)


#: The design of the tool-path tests (C++ driver, failure path, wave windows): the CI case
#: ``feat-wide+gated-ppb2`` of tests/sim/test_network.py, whose cocotb model that case builds.
FEAT_FOLDING = "wide+gated"
FEAT_PPB = 2


def saved_case(folder, name="feat", spec=FEAT_FOLDING, seed=1):
    """``(artifact path, artifact, folding file, folding)``: the random artifact of config
    ``name`` (``seed``) and the folding ``spec``, saved in ``folder`` for the CLI."""
    from pathlib import Path

    from dupnet.sw.random_artifact import random_artifact
    cfg = config(name)
    art = random_artifact(cfg, seed=seed)
    p = Path(folder) / f"{name}-{seed}.dupnet"
    art.save(p)
    fold = case_folding(cfg, spec)
    f = Path(folder) / f"{name}-{spec.replace('+', '-')}.toml"
    f.write_text(fold.to_toml())
    return p, art, f, fold

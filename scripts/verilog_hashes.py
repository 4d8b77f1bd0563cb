#!/usr/bin/env python
"""SHA-256 of the generated Verilog and of the analytic summary for the shipped binary configs.

A refactoring of the generator that claims to keep behaviour prints the same lines before and
after (``diff`` the two outputs). Each design uses a random artifact (seed 0) and covers the
default folding and the datapath variants: every arithmetic, pre-add off, several input pixels
per beat with probes, and the most folded point (PE = SIMD = 1).

usage: .venv/bin/python scripts/verilog_hashes.py [--configs a,b] [--quick]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from dupnet.hw.autofold import choose_folding
from dupnet.hw.folded import FoldedConv
from dupnet.hw.folding import Folding
from dupnet.hw.generate import generate_verilog
from dupnet.sw.config import builtin_config_names, conv_geometries, load_config
from dupnet.sw.random_artifact import random_artifact


def variants(cfg, quick: bool):
    base, _ = choose_folding(cfg)
    yield "default", base, 1, False
    if quick:
        return
    for arith in ("gated", "addsub"):
        yield f"arith={arith}", Folding(dict(base.layers), preadd=True, arith=arith), 1, False
    yield "preadd=false", Folding(dict(base.layers), preadd=False, arith=base.arith), 1, False
    ppb = 4 if (cfg.input_height * cfg.input_width) % 4 == 0 else 1
    yield f"ppb={ppb}+probes", base, ppb, True
    folded = {g.name: (1, 1) for g in conv_geometries(cfg)}
    yield "pe=simd=1", Folding(folded, preadd=True, arith=base.arith), 1, False
    # a mid folding: the largest legal SIMD below C' and PE 2 where legal (chunk muxes)
    mid = {}
    for g in conv_geometries(cfg):
        cands = FoldedConv.candidates(g)
        simd = max((s for _, s in cands if s < g.c_dup), default=g.c_dup)
        pe = 2 if g.out_channels % 2 == 0 else 1
        mid[g.name] = (pe, simd)
    yield "mid", Folding(mid, preadd=True, arith=base.arith), 1, False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="", help="comma-separated configs (default: all "
                    "shipped binary configs but the ones too large to elaborate in minutes)")
    ap.add_argument("--quick", action="store_true", help="default folding only")
    args = ap.parse_args()
    names = [n for n in args.configs.split(",") if n] or [
        n for n in builtin_config_names() if load_config(n).is_binary]
    for name in names:
        cfg = load_config(name)
        art = random_artifact(cfg, seed=0)
        for tag, folding, ppb, probes in variants(cfg, args.quick):
            t = time.monotonic()
            d = generate_verilog(art, folding, pixels_per_beat=ppb, probes=probes)
            summary = hashlib.sha256(json.dumps(d.summary, sort_keys=True).encode()).hexdigest()
            print(f"{name:20s} {tag:16s} verilog {d.design_hash[:16]} summary {summary[:16]}",
                  flush=True)
            print(f"  ({time.monotonic() - t:.1f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

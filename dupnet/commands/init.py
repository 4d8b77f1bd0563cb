HELP = "write an artifact with random weights and valid thresholds (hardware bring-up)"
DESCRIPTION = """Write an integer artifact for CONFIG with random +-1 weights and thresholds
calibrated on a random image (codes use every level; a few channels saturate), so hardware can
be generated and verified without training.

example:
  dupnet init dupnet-demo -o build/demo-random.dupnet --seed 3
"""


def add_arguments(p):
    p.add_argument("config", metavar="CONFIG", help="config name or TOML path")
    p.add_argument("-o", "--output", required=True, metavar="ART", help="artifact file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args):
    from dupnet.files import check_output_file
    from dupnet.sw.config import load_config, total_on_chip_bits
    from dupnet.sw.random_artifact import random_artifact
    check_output_file(args.output)
    cfg = load_config(args.config)
    art = random_artifact(cfg, seed=args.seed)
    path = art.save(args.output)
    print(f"wrote {path}: {cfg.name}, random (seed {args.seed}), "
          f"{total_on_chip_bits(cfg) / 8 / 1024:.2f} KiB on chip")
    return 0

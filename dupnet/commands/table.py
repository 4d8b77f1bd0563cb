HELP = "print the paper-style size/compute comparison table of configs"
DESCRIPTION = """Compute parameters, on-chip bytes, binary and float ops per frame of each config,
with ratios against the float config (Tiny-YOLO) and the binary config without duplication
(IFQ) among them, printed beside the paper's figures.

example:
  dupnet table                                    # the three paper-size configs
  dupnet table dupnet-demo configs/my-net.toml
"""

DEFAULT = ["tiny-yolo", "ifq-tinier-yolo", "dupnet-tinier-yolo"]


def add_arguments(p):
    p.add_argument("configs", nargs="*", metavar="CONFIG",
                   help=f"config names or TOML paths (default: {' '.join(DEFAULT)})")


def run(args):
    from dupnet.sw.config import load_config
    from dupnet.sw.table import comparison_table
    print(comparison_table([load_config(c) for c in (args.configs or DEFAULT)]))
    return 0

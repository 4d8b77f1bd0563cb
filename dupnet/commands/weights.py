HELP = "write the load image of an artifact for a design whose weights are loaded at run time"
DESCRIPTION = """Write the words a design generated with `weights = "load"` (dupnet rtl --weights
load) takes on its `load` stream after reset: every weight and threshold memory, layer by
layer, as 32-bit words. Another artifact of the same config, loaded into the same Verilog,
runs that artifact: new weights without re-synthesis.

The folding must be the design's (its folding.toml; the memory shapes depend on it). Writes
DIR/weights.bin (little-endian 32-bit words, for an SPI flash or a host), DIR/weights.hex
($readmemh, one word per line) and DIR/weights.json (the memories in load order with their
first word). docs/artifact.md, "Load image", has the format.

examples:
  dupnet rtl build/demo.dupnet --weights load -o build/rtl
  dupnet weights build/other.dupnet --folding build/rtl/folding.toml -o build/other-weights
"""


from dupnet.commands._design import add_device_arguments


def add_arguments(p):
    p.add_argument("artifact", metavar="ART", help="integer artifact (dupnet export / init)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--folding", metavar="FILE",
                   help="the design's folding file (default: the automatic folding that "
                        "`dupnet rtl` chooses with the same options)")
    g.add_argument("--target-cycles", type=int, metavar="N",
                   help="auto folding: at most N cycles per frame in every layer")
    g.add_argument("--lut-budget", type=int, metavar="N",
                   help="auto folding: the fastest design whose LUT estimate fits N")
    add_device_arguments(p)


def run(args):
    from dupnet.files import check_output_dir
    check_output_dir(args.output)

    from dupnet.commands._design import folding_for
    from dupnet.hw.loader import write_load_image
    from dupnet.sw.artifact import Artifact

    art = Artifact.load(args.artifact)
    folding, how = folding_for(art.config, args)
    files = write_load_image(art, folding, args.output)
    import json
    meta = json.loads(files["json"].read_text())
    print(f"{art.config.name}: {how}")
    print(f"wrote {files['bin']} ({meta['words']} words of {meta['word_bits']} bits, "
          f"{len(meta['segments'])} memories), {files['hex']} and {files['json']}")
    return 0

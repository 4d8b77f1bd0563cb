HELP = "fold a trained QAT run into the integer artifact (weights bits + thresholds)"
DESCRIPTION = """Load a training run (RUN/checkpoint.pt, or a .pt file directly), fold each hidden
layer's weight scale, BatchNorm (running statistics) and activation quantizer into integer
thresholds, negate the weights of channels with a negative slope, and write the artifact
atomically. The golden model (and the hardware) runs from the artifact alone; see
docs/artifact.md for the format and docs/quantization.md for the folding.

example:
  dupnet export runs/demo -o build/demo.dupnet
"""


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="training run directory (holding checkpoint.pt) "
                                              "or a checkpoint .pt file")
    p.add_argument("-o", "--output", required=True, metavar="ART", help="artifact file to write")


def run(args):
    from dupnet.files import check_output_file
    from dupnet.sw.export import export_checkpoint, export_summary
    check_output_file(args.output)
    art = export_checkpoint(args.run)
    path = art.save(args.output)
    epoch = art.meta.get("epoch")
    print(f"wrote {path} from {art.meta.get('run')}"
          + (f" (epoch {epoch})" if epoch is not None else ""))
    print(export_summary(art))
    return 0

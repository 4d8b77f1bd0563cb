HELP = "write an integer artifact as a QONNX graph, checked by qonnx's own executor"
DESCRIPTION = """Write the integer network of an artifact as a QONNX (ONNX) graph that FINN and
hls4ml users know: bipolar weights (BipolarQuant) with the weight duplication expanded (or kept
as one shared tensor with --shared-weights), input duplication as a channel Concat,
MultiThreshold nodes for the thresholds (--offset-form: the hardware's "xnor" form, conv bias
K and thresholds T + K), 2x2 max-pools (stride 1 after an explicit edge Pad), and the last
conv's accumulators with the float decode (outputs `accumulators` and `decoded`). The graph
input `image` is NCHW float32 holding the uint8 pixel values.

After writing, qonnx's execute_onnx runs the file on --check N random images (default 1; 0
skips) and every activation code, accumulator and decoded value is compared with the golden
model; any difference fails the command. docs/interop.md has the node-by-node mapping.
Needs the `interop` extra (onnx, onnxruntime, qonnx; installed by make install).

examples:
  dupnet export-onnx build/demo-random.dupnet -o build/demo.onnx
  dupnet export-onnx build/demo-random.dupnet -o build/demo-offset.onnx --offset-form --check 3
"""


def add_arguments(p):
    p.add_argument("artifact", metavar="ART", help="integer artifact (dupnet export / init)")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="ONNX file to write")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="fixed batch size of the graph input (default 1)")
    p.add_argument("--shared-weights", action="store_true",
                   help="keep each w_dup layer's unique weights as one tensor, expanded in the "
                        "graph (Reshape/Expand/Reshape)")
    p.add_argument("--offset-form", action="store_true",
                   help="hidden convs in the offset form: conv bias K, thresholds T + K")
    p.add_argument("--check", type=int, default=1, metavar="N",
                   help="random images qonnx executes and the golden model checks (default 1, "
                        "0: no check)")
    p.add_argument("--seed", type=int, default=0, help="seed of the check's images (default 0)")


def run(args):
    import sys

    from dupnet.errors import DupnetError
    from dupnet.files import check_output_file
    from dupnet.sw.artifact import Artifact
    from dupnet.sw.onnx_export import compare_with_golden, describe_checks, export_onnx, save_onnx

    if args.check < 0:
        raise DupnetError(f"--check must be >= 0, got {args.check}")
    check_output_file(args.output)
    art = Artifact.load(args.artifact)
    model = export_onnx(art, batch=args.batch, shared_weights=args.shared_weights,
                        offset_form=args.offset_form)
    save_onnx(model, args.output)
    print(f"wrote {args.output}: {art.config.name}, {len(model.graph.node)} nodes, "
          f"batch {args.batch}" + (", offset form" if args.offset_form else "")
          + (", shared weights" if args.shared_weights else ""))
    if not args.check:
        return 0
    from dupnet.sim.images import random_images
    n = args.check + (-args.check % args.batch)
    checks = compare_with_golden(art, model, random_images(art.config, n, args.seed))
    print(f"qonnx execute_onnx vs the golden model on {n} random image(s), seed {args.seed}:")
    print(describe_checks(checks))
    if not all(c.ok for c in checks):
        print("FAIL: the QONNX graph differs from the golden model", file=sys.stderr)
        return 1
    print(f"PASS: {sum(c.compared for c in checks)} values bit-exact")
    return 0

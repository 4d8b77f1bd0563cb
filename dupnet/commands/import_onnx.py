HELP = "turn a QONNX network (binary weights, thresholds) into a config and integer artifact"
DESCRIPTION = """Read a QONNX/ONNX graph with binary weights and threshold activations (a
Brevitas QONNX export with BipolarQuant weights and unsigned Quant activations, a FINN-style
graph with MultiThreshold nodes, or a graph written by `dupnet export-onnx`) and write the
integer artifact (and, with --config-out, its config as TOML), ready for `dupnet rtl`, `sim`
and `report`. The kinds the hardware supports: 3x3/1x1 stride-1 zero-same-padded convs,
input duplication (a Concat of one tensor), 2x2 max-pools (stride 2, or stride 1 with the
bottom/right edge replicated) and a final conv whose accumulators, through per-channel affine
ops, are the output. BatchNorm, scales and biases fold into the integer thresholds; a
negative slope negates the channel's weights. Weight duplication is found in the weights
(adjacent input channels sharing every bit; --no-w-dup keeps w_dup = 1). Anything else is
refused with a message naming the node and why. docs/interop.md has the mapping.

--streamlined-out writes the imported network back as a threshold-only QONNX graph (what
`dupnet export-onnx` writes), which qonnx executes with the integer semantics of the artifact.

examples:
  dupnet import-onnx model.onnx -o build/imported.dupnet --config-out build/imported.toml
  dupnet import-onnx brevitas.onnx -o build/b.dupnet --streamlined-out build/b-thr.onnx
"""


def add_arguments(p):
    p.add_argument("model", metavar="ONNX", help="QONNX / ONNX file")
    p.add_argument("-o", "--output", required=True, metavar="ART", help="artifact file to write")
    p.add_argument("--config-out", metavar="TOML", help="also write the network's config")
    p.add_argument("--streamlined-out", metavar="ONNX",
                   help="also write the imported network as a threshold QONNX graph")
    p.add_argument("--name", help="config name (default: the graph's name or the file's stem)")
    p.add_argument("--classes", type=int, metavar="N",
                   help="YOLO classes of the head (default: the graph's hint, else 1)")
    p.add_argument("--anchors", metavar="ANCHORS",
                   help='anchors of the head in grid cells, e.g. "1,1 2,2"')
    p.add_argument("--no-w-dup", action="store_true",
                   help="do not look for weight duplication in the weights (w_dup = 1)")


def _anchors(text):
    from dupnet.errors import DupnetError
    if text is None:
        return None
    try:
        anchors = [[float(v) for v in a.split(",")] for a in text.split()]
    except ValueError:
        anchors = []
    if not anchors or any(len(a) != 2 or min(a) <= 0 for a in anchors):
        raise DupnetError(f'--anchors {text!r}: expected "W,H W,H ..." with W, H > 0')
    return anchors


def run(args):
    from dupnet.errors import DupnetError
    from dupnet.files import atomic_write_text, check_output_file
    from dupnet.sw.config import total_on_chip_bits
    from dupnet.sw.onnx_import import config_toml, import_onnx

    if args.classes is not None and args.classes < 1:
        raise DupnetError(f"--classes must be >= 1, got {args.classes}")
    anchors = _anchors(args.anchors)
    check_output_file(args.output)
    for opt, path in (("--config-out", args.config_out),
                      ("--streamlined-out", args.streamlined_out)):
        if path:
            check_output_file(path, opt)
    res = import_onnx(args.model, name=args.name, classes=args.classes, anchors=anchors,
                      detect_w_dup=not args.no_w_dup)
    cfg = res.config
    print(f"{args.model}: {cfg.name}, {cfg.input_height}x{cfg.input_width}x"
          f"{cfg.input_channels} ({cfg.input_bits}-bit) image, {len(cfg.layers)} layers")
    for line in res.notes:
        print(f"  {line}")
    if res.ties:
        print(f"note: {res.ties} threshold(s) within float rounding of an integer "
              f"accumulator (ties): a float32 executor may decide those comparisons "
              f"either way")
    res.artifact.save(args.output)
    print(f"wrote {args.output} ({total_on_chip_bits(cfg) / 8 / 1024:.2f} KiB on chip)")
    if args.config_out:
        atomic_write_text(args.config_out, config_toml(cfg))
        print(f"wrote {args.config_out}")
    if args.streamlined_out:
        from dupnet.sw.onnx_export import export_onnx, save_onnx
        save_onnx(export_onnx(res.artifact), args.streamlined_out)
        print(f"wrote {args.streamlined_out} (threshold form)")
    return 0

HELP = "run the golden integer model of an artifact on images and draw the detected faces"
DESCRIPTION = """Run the bit-exact golden model (the hardware's arithmetic) of an artifact on each
image: the image (PNG/JPEG/any format PIL reads) is converted to the network's channel count,
letterboxed to its input size, run through the integer network, the last layer's accumulators
decoded (scale * acc + bias, YOLOv2 boxes, NMS) and the boxes drawn on a copy of the image.
Prints one line per box: x0 y0 x1 y1 in the original image's pixels and the score.

example:
  dupnet detect build/demo.dupnet photo.jpg                 # writes photo.det.png beside it
  dupnet detect build/demo.dupnet a.png b.jpg -o out/ --conf 0.3
"""


def add_arguments(p):
    p.add_argument("artifact", metavar="ART", help="artifact file (dupnet export / dupnet init)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("-o", "--output", metavar="OUT", default=None,
                   help="directory for the annotated PNGs (default: beside each input, "
                        "<name>.det.png)")
    p.add_argument("--conf", type=float, default=0.5,
                   help="score threshold (default 0.5)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")


def run(args):
    import io
    from pathlib import Path

    from dupnet.errors import DupnetError
    from dupnet.files import atomic_write_bytes, check_output_dir
    from dupnet.sw.artifact import Artifact
    from dupnet.sw.detect import detect_image, draw_boxes, read_image
    from dupnet.sw.golden import GoldenModel

    if not 0.0 <= args.conf <= 1.0:
        raise DupnetError(f"--conf must be in [0, 1], got {args.conf}")
    if not 0.0 <= args.iou <= 1.0:
        raise DupnetError(f"--iou must be in [0, 1], got {args.iou}")
    model = GoldenModel(Artifact.load(args.artifact))
    cfg = model.config
    outdir = check_output_dir(args.output) if args.output else None
    images = [(Path(p), read_image(p, cfg.input_channels)) for p in args.images]
    for path, (image, rgb) in images:
        boxes, scores = detect_image(model, image, args.conf, args.iou)
        dest = (outdir or path.parent) / f"{path.stem}.det.png"
        buf = io.BytesIO()
        draw_boxes(rgb, boxes, scores).save(buf, format="PNG")
        atomic_write_bytes(dest, buf.getvalue())
        print(f"{path}: {len(boxes)} face(s) -> {dest}")
        for (x0, y0, x1, y1), s in zip(boxes, scores):
            print(f"  {x0:7.1f} {y0:7.1f} {x1:7.1f} {y1:7.1f}  score {s:.3f}")
    return 0

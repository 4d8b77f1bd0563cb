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


def _read_image(path, channels):
    """``(network input [h, w] or [h, w, 3] uint8 in the config's channels, RGB for drawing)``."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from dupnet.errors import DupnetError
    try:
        with Image.open(path) as im:
            net = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
            return net.copy(), np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DupnetError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DupnetError(f"{path}: not a readable image ({e})") from None


def detect_image(model, image, conf=0.5, iou=0.45):
    """Golden-model detections of one uint8 image ``[h, w]`` or ``[h, w, C]``.

    Returns ``(boxes [N, 4] in the image's pixels, scores [N])``, best first.
    """
    import numpy as np

    from dupnet.sw.datasets import letterbox
    from dupnet.sw.yolo import decode_predictions, nms

    cfg = model.config
    h, w = image.shape[:2]
    size = (cfg.input_height, cfg.input_width)
    # letterbox the image and a probe box covering it: the probe gives the exact mapping
    net_in, probe = letterbox(image, np.array([[0, 0, w, h]], np.float32), size)
    if net_in.ndim == 2:
        net_in = net_in[:, :, None]
    acc = model(net_in[None])
    head = model.decode_inputs(acc)[0]
    boxes, scores = decode_predictions(head, cfg.anchors, size, conf)
    keep = nms(boxes, scores, iou)
    boxes, scores = boxes[keep], scores[keep]
    x0, y0, x1, y1 = (float(v) for v in probe[0])
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    out = np.empty_like(boxes)
    out[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - x0) / sx, 0, w)
    out[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - y0) / sy, 0, h)
    return out, scores


def draw_boxes(image, boxes, scores):
    """An RGB PIL image of ``image`` with the boxes and scores drawn."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = image if image.ndim == 3 else image[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    pil = Image.fromarray(np.ascontiguousarray(img), "RGB")
    d = ImageDraw.Draw(pil)
    width = max(1, round(min(pil.size) / 128))
    for (x0, y0, x1, y1), s in zip(boxes, scores):
        d.rectangle([x0, y0, x1, y1], outline=(255, 32, 32), width=width)
        d.text((x0 + 2, y0 + 1), f"{s:.2f}", fill=(255, 255, 0))
    return pil


def run(args):
    import io
    from pathlib import Path

    from dupnet.errors import DupnetError
    from dupnet.sw.artifact import Artifact, atomic_write_bytes
    from dupnet.sw.golden import GoldenModel

    if not 0.0 <= args.conf <= 1.0:
        raise DupnetError(f"--conf must be in [0, 1], got {args.conf}")
    if not 0.0 <= args.iou <= 1.0:
        raise DupnetError(f"--iou must be in [0, 1], got {args.iou}")
    model = GoldenModel(Artifact.load(args.artifact))
    cfg = model.config
    outdir = Path(args.output) if args.output else None
    if outdir is not None and outdir.exists() and not outdir.is_dir():
        raise DupnetError(f"{outdir}: -o must be a directory")
    images = [(Path(p), _read_image(p, cfg.input_channels)) for p in args.images]
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

HELP = "run the golden integer model of an artifact on images and draw the detected faces"
DESCRIPTION = """Run the bit-exact golden model (the hardware's arithmetic) of an artifact on each
image (PNG/JPEG/any format PIL reads, converted to the network's channel count), decode the last
layer's accumulators (scale * acc + bias, YOLOv2 boxes, NMS) and draw the boxes on a copy of the
image. Prints one line per box: x0 y0 x1 y1 in the original image's pixels and the score.

A small image is letterboxed whole into the network input (one frame). A photo more than twice
the network input in height or width is scanned tiled (--tile forces it, --no-tile turns it
off): the way the accelerator would scan a camera frame, at several scales, each the photo
resized and cut into overlapping network-size tiles; boxes are mapped back to photo pixels and
merged across tiles and scales by NMS. Otherwise faces a few pixels tall in a big group photo,
shrunk with the whole photo into one frame, are missed.

Scales (network pixels per photo pixel), from the anchors' face sizes A_min..A_max (an anchor
(w, h) in grid cells is a face of sqrt(w*h) cells of input/grid pixels): the coarsest is the
whole photo letterboxed into one frame; each next one is finer by A_max/A_min (at least
sqrt(2)), so that the face sizes the anchors cover at one scale meet the next; the finest maps a
face of --min-face photo pixels onto A_min (default --min-face A_min: the photo's own
resolution). Tiles overlap by A_max network pixels (at most half a tile); a tile keeps the boxes
whose centre lies in its half of each overlap. See docs/training.md ("Big photos").

examples:
  dupnet detect build/demo.dupnet photo.jpg                 # writes photo.det.png beside it
  dupnet detect build/demo.dupnet a.png b.jpg -o out/ --conf 0.3
  dupnet detect build/demo.dupnet group.jpg --json dets.json         # tiled (a big photo)
  dupnet detect build/demo.dupnet group.jpg --tile --min-face 10 -o out/
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
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tile", dest="tile", action="store_true", default=None,
                   help="multi-scale tiled detection (default: when the image is over twice "
                        "the network input in height or width)")
    g.add_argument("--no-tile", dest="tile", action="store_false",
                   help="always letterbox the whole image into one frame")
    p.add_argument("--min-face", type=float, default=None, metavar="PX",
                   help="tiled: the smallest face to look for, in image pixels (default: the "
                        "smallest anchor face size in network pixels, i.e. the image's own "
                        "resolution is the finest scale)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help='also write the detections as JSON: {"images": [{"image": PATH, '
                        '"boxes": [[x0, y0, x1, y1], ...], "scores": [...]}]} in image pixels')


def _check_args(args):
    from dupnet.errors import DupnetError
    from dupnet.files import check_output_dir, check_output_file
    if not 0.0 <= args.conf <= 1.0:
        raise DupnetError(f"--conf must be in [0, 1], got {args.conf}")
    if not 0.0 <= args.iou <= 1.0:
        raise DupnetError(f"--iou must be in [0, 1], got {args.iou}")
    if args.min_face is not None and not args.min_face > 0:
        raise DupnetError(f"--min-face must be > 0 pixels, got {args.min_face}")
    if args.min_face is not None and args.tile is False:
        raise DupnetError("--min-face chooses the scales of tiled detection; it has no "
                          "effect with --no-tile")
    if args.json:
        check_output_file(args.json, option="--json")
    return check_output_dir(args.output) if args.output else None


def run(args):
    import io
    import json
    from pathlib import Path

    from dupnet.files import atomic_write_bytes, atomic_write_text
    from dupnet.sw.artifact import Artifact
    from dupnet.sw.detect import (detect_image, detect_tiled, draw_boxes, read_image,
                                  should_tile)
    from dupnet.sw.golden import GoldenModel

    outdir = _check_args(args)
    model = GoldenModel(Artifact.load(args.artifact))
    cfg = model.config
    net = (cfg.input_height, cfg.input_width)
    images = [(Path(p), read_image(p, cfg.input_channels)) for p in args.images]
    records = []
    for path, (image, rgb) in images:
        tiled = args.tile if args.tile is not None else should_tile(image.shape[:2], net)
        how = ""
        if tiled:
            boxes, scores, plan = detect_tiled(model, image, args.conf, args.iou,
                                               min_face=args.min_face)
            how = (f" (tiled: {len(plan)} scales "
                   f"{', '.join(f'{lv.scale:.3g}' for lv in plan)}, "
                   f"{sum(len(lv.tiles()) for lv in plan)} tiles)")
        else:
            boxes, scores = detect_image(model, image, args.conf, args.iou)
        dest = (outdir or path.parent) / f"{path.stem}.det.png"
        buf = io.BytesIO()
        draw_boxes(rgb, boxes, scores).save(buf, format="PNG")
        atomic_write_bytes(dest, buf.getvalue())
        print(f"{path}: {len(boxes)} face(s){how} -> {dest}")
        for (x0, y0, x1, y1), s in zip(boxes, scores):
            print(f"  {x0:7.1f} {y0:7.1f} {x1:7.1f} {y1:7.1f}  score {s:.3f}")
        records.append({"image": str(path), "tiled": bool(tiled),
                        "boxes": [[round(float(v), 2) for v in b] for b in boxes],
                        "scores": [round(float(s), 4) for s in scores]})
    if args.json:
        atomic_write_text(args.json, json.dumps({"images": records}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0

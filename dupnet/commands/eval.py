HELP = "evaluate a run or an integer artifact: AP@0.5 and FDDB-style detection rate"
DESCRIPTION = """Evaluate a training run (RUN directory or checkpoint .pt; the PyTorch model in
eval mode) or an integer artifact (written by `dupnet export`; run by the bit-exact golden
model) on the built-in test split or a user data set.

Metrics (docs/training.md): AP at IoU 0.5 with all-points interpolation (VOC2010+), and the
FDDB-style detection rate = true-positive rate at a fixed number of false positives over the
whole set (default: FDDB's 1000 FP per 2845 images scaled to the set, e.g. 105 for 300 images).

examples:
  dupnet eval runs/dupnet-demo
  dupnet eval build/demo.dupnet --data fddb:~/data/FDDB --fp 1000
  dupnet eval runs/my-net --data wider:~/data/WIDER --json runs/my-net/wider-val.json
"""


def add_arguments(p):
    p.add_argument("target", metavar="RUN_OR_ARTIFACT",
                   help="run directory, checkpoint .pt, or artifact file")
    p.add_argument("--data", default="builtin", metavar="SPEC",
                   help="builtin (default), wider:DIR (val split) or fddb:DIR (all folds)")
    p.add_argument("--n", type=int, default=None, metavar="N",
                   help="built-in data only: number of test images (default 300)")
    p.add_argument("--iou", type=float, default=0.5, help="match IoU (default 0.5)")
    p.add_argument("--fp", type=int, default=None, metavar="N",
                   help="false positives for the detection rate (default: 1000 per 2845 "
                        "images, scaled)")
    p.add_argument("--conf", type=float, default=0.005,
                   help="score threshold before NMS (default 0.005)")
    p.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics here")


def run(args):
    import json

    from dupnet.errors import DupnetError
    from dupnet.files import atomic_write_bytes, check_output_file
    from dupnet.sw.evaluation import evaluate_path

    if args.json:
        check_output_file(args.json, option="--json")

    if not 0 < args.iou <= 1:
        raise DupnetError(f"--iou must be in (0, 1], got {args.iou}")
    if args.fp is not None and args.fp < 0:
        raise DupnetError(f"--fp must be >= 0, got {args.fp}")
    if args.n is not None and args.n < 1:
        raise DupnetError(f"--n must be >= 1, got {args.n}")
    kind, cfg, m = evaluate_path(args.target, data=args.data, n=args.n, iou=args.iou,
                                 fp=args.fp, conf_thresh=args.conf, nms_thresh=args.nms)
    how = "golden integer model" if kind == "artifact" else "PyTorch model, eval mode"
    print(f"{cfg.name} ({kind}, {how}) on {args.data}: {m}")
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(
            {"target": str(args.target), "kind": kind, "config": cfg.name, "data": args.data,
             **m.to_dict()}, indent=2) + "\n").encode())
    return 0

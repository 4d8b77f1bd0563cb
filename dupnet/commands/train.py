HELP = "train a DupNet (QAT) detector; checkpoints every epoch, exact --resume, torchrun DDP"
DESCRIPTION = """Train CONFIG on the built-in data set (synthetic LFW face composites) or WIDER
FACE, writing RUN/checkpoint.pt atomically after every epoch and, at the end, the AP on the
test split to RUN/metrics.json.  Ctrl-C (or SIGTERM) keeps the last completed epoch's
checkpoint; --resume continues it exactly (same weights as an uninterrupted run).  The same
--seed gives the same weights.  Under torchrun the run is data-parallel (DDP: gloo on CPUs,
nccl on GPUs); only rank 0 writes.

examples:
  dupnet train dupnet-demo                          # default recipe -> runs/dupnet-demo
  dupnet train dupnet-demo --epochs 5 --out runs/quick
  dupnet train dupnet-demo --out runs/quick --resume
  dupnet train configs/my-net.toml --data wider:~/data/WIDER --epochs 100
  torchrun --nproc_per_node=2 -m dupnet.cli train dupnet-demo --out runs/ddp
  dupnet train dupnet-demo-float --out runs/float           # a float twin, then:
  dupnet train dupnet-demo --init-from runs/float            # start from its weights
  dupnet train dupnet-demo --distill runs/float --distill-weight 1   # or distil it
"""

# options that a resumed run takes from its checkpoint (only --epochs may change)
_FIXED_ON_RESUME = ("data", "batch_size", "lr", "seed", "n_train", "n_test", "no_augment",
                    "device", "init_from", "distill", "distill_weight")


def add_arguments(p):
    p.add_argument("config", metavar="CONFIG", help="config name or TOML path")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="training data: builtin (default) or wider:DIR")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="total epochs (default: the recipe's, see docs/training.md)")
    p.add_argument("--out", default=None, metavar="RUN",
                   help="run directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if RUN already holds a checkpoint")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="global batch size (split across DDP processes)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (Adam)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--n-train", type=int, default=None, metavar="N",
                   help="built-in data only: number of training images (default 2000)")
    p.add_argument("--n-test", type=int, default=None, metavar="N",
                   help="built-in data only: number of test images (default 300)")
    p.add_argument("--no-augment", action="store_true", help="no flip/shift/photometric "
                   "augmentation")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                   help="where to train (default auto: a GPU if one is visible)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per process (default: available CPUs / processes)")
    p.add_argument("--init-from", default=None, metavar="RUN",
                   help="start from the weights of RUN (a run directory or checkpoint.pt): the "
                        "same config is copied, a float twin with the same widths is "
                        "binarized (docs/training.md, 'Recipe options')")
    p.add_argument("--distill", default=None, metavar="RUN",
                   help="distil the head outputs of the teacher RUN (e.g. the float twin; "
                        "same input and head); its weights are stored in the checkpoint")
    p.add_argument("--distill-weight", type=float, default=None, metavar="W",
                   help="weight of the distillation loss (default 1; needs --distill)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args):
    import dataclasses
    import os
    import sys

    from dupnet.errors import DupnetError
    from dupnet.files import check_output_dir
    from dupnet.sw.config import load_config
    from dupnet.sw.train import TrainOptions, train

    cfg = load_config(args.config)
    out = args.out or f"runs/{cfg.name}"
    check_output_dir(out, option="--out")
    if args.resume and args.overwrite:
        raise DupnetError("--resume and --overwrite contradict each other")
    if args.resume:
        given = [name for name in _FIXED_ON_RESUME
                 if getattr(args, name) not in (None, False)]
        if given:
            flags = ", ".join("--" + g.replace("_", "-") for g in given)
            raise DupnetError(f"{flags}: a resumed run keeps the options stored in its "
                              f"checkpoint (only --epochs may change)")
    if args.threads is not None and args.threads < 1:
        raise DupnetError(f"--threads must be >= 1, got {args.threads}")
    if args.data is not None and not args.data.startswith(("builtin", "wider:")):
        kind = args.data.partition(":")[0]
        if kind == "fddb":
            raise DupnetError(f"--data {args.data}: FDDB is an evaluation set; train on "
                              f"builtin or wider:DIR and evaluate with `dupnet eval RUN --data "
                              f"{args.data}`")
    overrides = {
        "data": args.data, "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "n_train": args.n_train, "n_test": args.n_test,
        "device": args.device, "init_from": args.init_from, "distill_from": args.distill,
        "distill_weight": args.distill_weight,
    }
    if args.distill_weight is not None and args.distill is None and not args.resume:
        raise DupnetError("--distill-weight needs --distill RUN (the teacher)")
    opts = TrainOptions()
    opts = dataclasses.replace(opts, **{k: v for k, v in overrides.items() if v is not None})
    if args.no_augment:
        opts.augment = False
    if args.resume and args.epochs is None:
        opts = None            # keep the checkpoint's epochs too
    result = train(cfg, out, opts, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.quiet, threads=args.threads,
                   evaluate=False if args.no_eval else None)
    if int(os.environ.get("RANK", "0")) == 0:
        msg = (f"trained {cfg.name}: {result.epochs} epochs, {result.images_per_s:.0f} img/s, "
               f"checkpoint {result.run / 'checkpoint.pt'}")
        if result.metrics:
            msg += (f"; test AP@0.5 {result.metrics['ap']:.4f}, detection rate "
                    f"{result.metrics['detection_rate']:.4f} @ {result.metrics['fp']} FP")
        print(msg, file=sys.stdout)
    return 0

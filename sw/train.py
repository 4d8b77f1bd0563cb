"""The training loop of a DupNet: options, schedule, epochs, exact resume, DDP.

A run is a directory ``RUN/`` holding ``checkpoint.pt`` (written atomically after every
epoch; format: :mod:`dupnet.sw.checkpoint`) and, when the run finished and was evaluated,
``metrics.json``.  The other concerns live beside this module: data, batches and augmentation
in :mod:`dupnet.sw.data`, evaluation in :mod:`dupnet.sw.evaluation`, BatchNorm recalibration
in :mod:`dupnet.sw.batchnorm`, threads, devices, seeds and the DDP process group in
:mod:`dupnet.sw.runtime`, the progress bar in :mod:`dupnet.sw.progress`.

Determinism: everything random is derived from ``TrainOptions.seed`` — the model's
initialisation (``torch.manual_seed``), the per-epoch shuffle (``DistributedSampler`` with
``seed`` and ``set_epoch``) and the per-epoch augmentation (a generator seeded from
``(seed, epoch, rank)``).  So the same seed gives bit-identical weights on the same machine
and thread count, and a resumed run continues exactly as if it had never stopped.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
``DistributedDataParallel``, each rank sees its ``DistributedSampler`` shard with
``batch_size / world_size`` images per step (so the global batch and the schedule do not
depend on the number of processes), and only rank 0 writes checkpoints, logs and evaluates.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import DupnetError
from ..files import atomic_write_bytes
from .batchnorm import has_batchnorm, recalibrate_bn
from .checkpoint import (CHECKPOINT, RunError, checkpoint_to_resume, restore_rng_state,
                         save_checkpoint, training_state)
from .config import NetworkConfig
from .data import BatchReader, augment, index_batches, load_split
from .evaluation import evaluate_model
from .progress import ProgressBar
from .runtime import (Distributed, default_threads, device_kind, seed_everything,
                      select_device, setup_distributed, sigterm_as_interrupt)

__all__ = ["TrainOptions", "TrainResult", "train", "distill_loss", "resume_mismatches"]


@dataclass
class TrainOptions:
    """Hyper-parameters of a run (stored in the checkpoint; a resume reuses them).

    The defaults are the recipe measured in ``docs/training.md`` for ``dupnet-demo`` on the
    built-in data: Adam, linear warm-up then cosine decay, batch 32.
    """
    data: str = "builtin"             # dataset spec: builtin | wider:DIR
    epochs: int = 60
    batch_size: int = 32              # global batch (split across DDP ranks)
    lr: float = 2e-3                  # peak learning rate (Adam)
    final_lr_fraction: float = 0.02   # cosine decays to lr * this
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    n_train: int | None = None        # built-in set only: training images (default 2000)
    n_test: int | None = None         # built-in set only: test images (default 300)
    augment: bool = True              # flip, shift, brightness/contrast
    max_shift: float = 0.125          # random translation, fraction of the image side
    bn_recalibrate: bool = True       # exact BN statistics over the training set at the end
    noobj_weight: float = 0.5
    ignore_thresh: float = 0.6
    obj_prior: float = 0.01           # initial objectness probability of every anchor
    evaluate: bool = True             # AP on the test split after the last epoch
    eval_every: int = 0               # also after every this many epochs (0: never)
    workers: int = 0                  # DataLoader workers for datasets too big to cache
    device: str = "auto"              # auto | cpu | cuda
    init_from: str | None = None      # run whose weights start this one (float twin: binarized)
    distill_from: str | None = None   # teacher run: its head outputs are distilled
    distill_weight: float = 1.0       # weight of the distillation loss (with distill_from)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain data (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainOptions":
        """Options from :meth:`to_dict`'s data; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        """Raise ``DupnetError`` naming the first option out of range."""
        def bad(field_name, why):
            raise DupnetError(f"training option '{field_name}': {why}")
        if self.epochs < 1:
            bad("epochs", f"must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            bad("batch_size", f"must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if self.seed < 0:
            bad("seed", f"must be >= 0, got {self.seed}")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                bad(name, f"must be >= 1, got {v}")
        if self.device not in ("auto", "cpu", "cuda"):
            bad("device", f"must be auto, cpu or cuda, got {self.device!r}")
        if not self.distill_weight >= 0:
            bad("distill_weight", f"must be >= 0, got {self.distill_weight}")


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory, its epochs, the per-epoch history, the
    final test metrics (``None`` without evaluation), training seconds and images/s."""
    run: Path
    epochs: int
    history: list = field(default_factory=list)
    metrics: dict | None = None
    seconds: float = 0.0
    images_per_s: float = 0.0


# ----------------------------------------------------------------------------------------------
# Schedule


def _lr_lambda(total_steps: int, warmup_steps: int, final: float) -> Callable[[int], float]:
    """The LR factor per step: linear warm-up to 1, then cosine decay to ``final``."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        t = min(1.0, t)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
    return f


# ----------------------------------------------------------------------------------------------
# The run


def train(cfg: NetworkConfig, out: str | os.PathLike, opts: TrainOptions | None = None, *,
          resume: bool = False, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] | None = None,
          on_step: Callable[[int, int], None] | None = None,
          threads: int | None = None, evaluate: bool | None = None) -> TrainResult:
    """Train ``cfg`` into the run directory ``out``.

    Parameters
    ----------
    cfg : NetworkConfig
    out : path of the run directory (created)
    opts : TrainOptions (default ``TrainOptions()``); with ``resume`` the checkpoint's
        options are used, and only ``opts.epochs`` is taken when ``opts`` is given (a longer
        run; the cosine schedule then stretches)
    resume : continue from ``out/checkpoint.pt`` (required to exist)
    overwrite : start afresh even if ``out`` already holds a checkpoint
    progress : show the progress bar / epoch lines on stderr (rank 0)
    log : where summary lines go (default: stderr, rank 0 only)
    on_step : called as ``on_step(epoch, step)`` before each step (tests use it to interrupt)
    threads : torch intra-op threads (default: this process's CPUs / local ranks)
    evaluate : override ``opts.evaluate`` (also on resume)

    Returns
    -------
    TrainResult
    """
    import torch

    run = Path(out)
    state = checkpoint_to_resume(run, cfg, resume, overwrite)
    opts = _run_options(opts, state)
    if evaluate is not None:
        opts.evaluate = evaluate
    opts.validate()

    dist = setup_distributed(device_kind(opts.device))
    out_log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    say = out_log if dist.main else (lambda s: None)
    n_threads = threads or default_threads(dist.local_world)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        return _train(cfg, run, opts, state, dist, say, progress and dist.main, on_step,
                      n_threads)
    finally:
        torch.set_num_threads(old_threads)
        dist.close()


def _run_options(given: TrainOptions | None, state: dict[str, Any] | None) -> TrainOptions:
    """A copy of ``given`` (default ``TrainOptions()``) for a fresh run; for a resumed one the
    checkpoint's options, with ``given.epochs`` when ``given`` is passed."""
    if state is None:
        return dataclasses.replace(given) if given is not None else TrainOptions()
    saved = TrainOptions.from_dict(state["options"])
    if given is not None:
        saved.epochs = given.epochs
    return saved


@dataclass
class _Session:
    """Everything the epochs of one run share, on this rank."""
    cfg: NetworkConfig
    run: Path
    opts: TrainOptions
    dist: Distributed
    device: Any
    model: Any                        # the unwrapped model: checkpoints, evaluation
    data: BatchReader
    optimizer: Any
    scheduler: Any
    loss_fn: Any
    net: Any = None                   # what the steps run: the model or its DDP wrapper
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    test_set: Any = None              # loaded on first use
    seconds: float = 0.0              # time spent in training steps
    images: int = 0                   # images trained on (all ranks)
    teacher: Any = None               # distillation teacher (eval mode), or None
    extra: dict[str, Any] = field(default_factory=dict)   # "teacher" / "init" checkpoint keys

    def state(self, epoch: int) -> dict[str, Any]:
        """The checkpoint dict after ``epoch`` completed epochs."""
        st = training_state(self.cfg, self.model, epoch, self.opts, self.optimizer,
                            self.scheduler, self.history)
        st.update(self.extra)
        return st

    def test_split(self):
        """The test split of the run's data (loaded once)."""
        if self.test_set is None:
            self.test_set = _split(self.cfg, self.opts, "test")
        return self.test_set


def _split(cfg: NetworkConfig, opts: TrainOptions, split: str):
    """The ``train`` or ``test`` split of ``opts.data`` (sized by ``n_train``/``n_test`` on
    the built-in set)."""
    n = opts.n_train if split == "train" else opts.n_test
    return load_split(cfg, opts.data, split, n=n if opts.data == "builtin" else None)


def _train(cfg: NetworkConfig, run: Path, opts: TrainOptions, state: dict[str, Any] | None,
           dist: Distributed, say: Callable[[str], None], show_progress: bool,
           on_step: Callable[[int, int], None] | None, n_threads: int) -> TrainResult:
    """Set the run up, train its remaining epochs, then finish it (BN, evaluation, save)."""
    device = select_device(opts.device, dist)
    model = _initial_model(cfg, opts, device)
    t0 = time.monotonic()
    data = BatchReader(_split(cfg, opts, "train"), cfg, workers=opts.workers)
    s = _new_session(cfg, run, opts, dist, device, model, data)
    if state is not None:
        _restore(s, state)
    _setup_recipe(s, state, say)
    s.net = _wrap_for_ddp(model, dist, device)
    say(f"training {cfg.name} ({'binary' if cfg.is_binary else 'float'}) on {opts.data}: "
        f"{len(data)} images, batch {opts.batch_size}"
        f"{f' over {dist.world} processes' if dist.enabled else ''}, {opts.epochs} epochs, "
        f"{device.type} x {n_threads} threads; run {run}"
        + (f" (resuming after epoch {s.start_epoch})" if state is not None else "")
        + f"; data ready in {time.monotonic() - t0:.1f}s")

    bar = ProgressBar(show_progress)
    with sigterm_as_interrupt():
        try:
            for epoch in range(s.start_epoch, opts.epochs):
                _run_epoch(s, epoch, bar, on_step)
        except KeyboardInterrupt:
            if dist.main:
                done = len(s.history)
                where = (f"the checkpoint of epoch {done} in {run / CHECKPOINT} is intact; "
                         f"continue with --resume" if done else "no epoch completed")
                sys.stderr.write(f"\ninterrupted: {where}\n")
            raise
    return _finish(s, say)


def _initial_model(cfg: NetworkConfig, opts: TrainOptions, device):
    """The freshly initialised model (seeded by ``opts.seed``), on ``device``."""
    from .qat import build_model
    seed_everything(opts.seed)
    model = build_model(cfg)
    _init_head_bias(model, cfg, opts.obj_prior)
    return model.to(device)


def _init_head_bias(model, cfg: NetworkConfig, prior: float) -> None:
    """Start every anchor's objectness at probability ``prior`` (bias ``logit(prior)``), so the
    first steps are not spent silencing thousands of empty anchors (RetinaNet's prior init)."""
    import torch
    head = model.layers[len(cfg.layers) - 1]
    bias = getattr(getattr(head, "conv", None), "bias", None)
    if bias is None or not 0 < prior < 1:
        return
    nf = 5 + cfg.classes
    with torch.no_grad():
        for a in range(len(cfg.anchors)):
            bias[a * nf + 4] = math.log(prior / (1 - prior))


def _new_session(cfg: NetworkConfig, run: Path, opts: TrainOptions, dist: Distributed, device,
                 model, data: BatchReader) -> _Session:
    """A session at epoch 0: Adam, the warm-up + cosine schedule over all steps, the loss."""
    import torch
    from .yolo import YoloLoss
    steps_per_epoch = len(index_batches(len(data), opts.batch_size, opts.seed, 0,
                                        dist.world, dist.rank))
    total_steps = opts.epochs * steps_per_epoch
    warmup = int(round(opts.warmup_epochs * steps_per_epoch))
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, max(1, warmup), opts.final_lr_fraction))
    loss_fn = YoloLoss(cfg, noobj_weight=opts.noobj_weight, ignore_thresh=opts.ignore_thresh)
    return _Session(cfg=cfg, run=run, opts=opts, dist=dist, device=device, model=model,
                    data=data, optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn)


def _restore(s: _Session, state: dict[str, Any]) -> None:
    """Continue from a checkpoint: weights, optimizer, schedule, RNG states and history."""
    s.model.load_state_dict(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    s.start_epoch = int(state["epoch"])
    s.history = list(state.get("history", []))
    if s.start_epoch > s.opts.epochs:
        raise RunError(f"{s.run}: the checkpoint has {s.start_epoch} epochs, more than the "
                       f"{s.opts.epochs} asked for")


# ----------------------------------------------------------------------------------------------
# Recipe options: starting from another run's weights, distillation from a teacher run


def _setup_recipe(s: _Session, state: dict[str, Any] | None, say: Callable[[str], None]) -> None:
    """``init_from`` (fresh runs only: a resumed run has its own weights) and
    ``distill_from`` (the teacher's weights are stored in the checkpoint, key ``"teacher"``,
    so a resumed run distils from exactly the teacher it started with, even if that run has
    changed or gone since)."""
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .qat import init_from_model
    opts = s.opts
    if opts.init_from:
        if state is None:
            src_state = load_checkpoint(opts.init_from)
            _, src = model_from_checkpoint(src_state)
            try:
                what = init_from_model(s.model, src.to(s.device))
            except ValueError as e:
                raise RunError(f"--init-from {opts.init_from}: {e}") from None
            s.extra["init"] = {"source": str(opts.init_from), "config": src.cfg.name,
                               "epoch": int(src_state["epoch"]), "what": what}
            say(f"init: {what} ({opts.init_from})")
        elif "init" in state:
            s.extra["init"] = state["init"]
    if opts.distill_from:
        if state is None:
            t = load_checkpoint(opts.distill_from)
            teacher_state = {"source": str(opts.distill_from), "config": t["config"],
                             "model": t["model"], "epoch": int(t["epoch"])}
        else:
            teacher_state = state.get("teacher")
            if teacher_state is None:
                raise RunError(f"{s.run / CHECKPOINT}: the run distils from "
                               f"{opts.distill_from} but its checkpoint holds no teacher "
                               f"weights; start the run over (--overwrite)")
        _, teacher = model_from_checkpoint({**teacher_state, "_path": teacher_state["source"]})
        _check_teacher(s.cfg, teacher.cfg, opts.distill_from)
        s.teacher = teacher.to(s.device).eval()
        for p in s.teacher.parameters():
            p.requires_grad_(False)
        s.extra["teacher"] = teacher_state
        say(f"distilling from {teacher.cfg.name} ({teacher_state['source']}, "
            f"{teacher_state['epoch']} epochs), weight {opts.distill_weight:g}")


def _check_teacher(cfg: NetworkConfig, tcfg: NetworkConfig, source) -> None:
    """A teacher must see the same images and predict the same head layout."""
    from .config import network_geometry
    mine = (cfg.input_height, cfg.input_width, cfg.input_channels, cfg.classes,
            [list(a) for a in cfg.anchors])
    its = (tcfg.input_height, tcfg.input_width, tcfg.input_channels, tcfg.classes,
           [list(a) for a in tcfg.anchors])
    g, tg = network_geometry(cfg)[-1], network_geometry(tcfg)[-1]
    if mine != its or (g.out_height, g.out_width) != (tg.out_height, tg.out_width):
        raise RunError(f"--distill {source}: the teacher {tcfg.name!r} has another input, "
                       f"head or output grid than {cfg.name!r} (input H, W, C, classes, "
                       f"anchors: {its} vs {mine}; grid {tg.out_height}x{tg.out_width} vs "
                       f"{g.out_height}x{g.out_width})")


def distill_loss(head, teacher_head, cfg: NetworkConfig):
    """Objectness-scaled YOLO distillation (Mehta & Ozturk 2018), summed over anchors and
    averaged over the batch like :class:`~dupnet.sw.yolo.YoloLoss`.

    With ``p`` the teacher's objectness probability at an anchor:

    * ``kd_obj``: binary cross-entropy of the student's objectness against ``p``, minus the
      entropy of ``p`` (a KL divergence: 0 when the student matches);
    * ``kd_box``: ``p * [(sig(tx) - sig(tx_T))^2 + (sig(ty) - sig(ty_T))^2 + (tw - tw_T)^2
      + (th - th_T)^2]``: boxes are learned where the teacher sees a face;
    * ``kd_cls`` (``classes > 1``): ``p * KL(softmax_T || softmax)``.

    Returns ``(loss, {"kd": ..., "kd_obj": ..., "kd_box": ...})`` (floats in the dict).
    """
    import torch
    import torch.nn.functional as F
    n, _, h, w = head.shape
    a, nf = len(cfg.anchors), 5 + cfg.classes
    s = head.view(n, a, nf, h, w)
    t = teacher_head.detach().view(n, a, nf, h, w)
    p = torch.sigmoid(t[:, :, 4])
    obj = (F.binary_cross_entropy_with_logits(s[:, :, 4], p, reduction="none")
           - F.binary_cross_entropy_with_logits(t[:, :, 4], p, reduction="none")).sum() / n
    box = (p * ((torch.sigmoid(s[:, :, 0]) - torch.sigmoid(t[:, :, 0])).square()
                + (torch.sigmoid(s[:, :, 1]) - torch.sigmoid(t[:, :, 1])).square()
                + (s[:, :, 2] - t[:, :, 2]).square()
                + (s[:, :, 3] - t[:, :, 3]).square())).sum() / n
    loss = obj + box
    parts = {"kd_obj": float(obj.detach()), "kd_box": float(box.detach())}
    if cfg.classes > 1:
        lt = F.log_softmax(t[:, :, 5:], dim=2)
        ls = F.log_softmax(s[:, :, 5:], dim=2)
        cls = (p * (lt.exp() * (lt - ls)).sum(2)).sum() / n
        loss = loss + cls
        parts["kd_cls"] = float(cls.detach())
    parts["kd"] = float(loss.detach())
    return loss, parts


#: options a resumed run may differ in without changing what it computes
RESUME_FREE = ("epochs", "evaluate", "eval_every", "workers", "device")


def resume_mismatches(saved: dict[str, Any], wanted: TrainOptions,
                      free: tuple[str, ...] = RESUME_FREE) -> list[str]:
    """The options (``name: stored -> wanted``) in which a checkpoint's stored options
    (``state["options"]``) differ from ``wanted``, ignoring ``free``; empty when the run may
    be resumed as ``wanted``.  An option the checkpoint lacks (written before it existed)
    counts as its default."""
    stored = dataclasses.asdict(TrainOptions.from_dict(saved))
    want = wanted.to_dict()
    return [f"{k}: {stored[k]!r} -> {want[k]!r}" for k in want
            if k not in free and stored[k] != want[k]]


def _wrap_for_ddp(model, dist: Distributed, device):
    """``model`` wrapped in ``DistributedDataParallel`` when there are several processes."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def _run_epoch(s: _Session, epoch: int, bar: ProgressBar,
               on_step: Callable[[int, int], None] | None) -> None:
    """Train one epoch, record it in the history, checkpoint it (rank 0), report it."""
    import torch
    opts, dist = s.opts, s.dist
    s.net.train()
    batches = index_batches(len(s.data), opts.batch_size, opts.seed, epoch, dist.world,
                            dist.rank)
    gen = torch.Generator().manual_seed(
        (opts.seed * 1_000_003 + epoch * 7_919 + dist.rank) % (1 << 63))
    te = time.monotonic()
    loss_sum, parts_sum, n_steps = 0.0, {}, 0
    for step, (images, boxes) in enumerate(s.data.batches(batches)):
        if on_step is not None:
            on_step(epoch, step)
        loss, parts = _train_step(s, images, boxes, gen, epoch, step)
        loss_sum += loss
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v
        n_steps += 1
        el = time.monotonic() - te
        bar.step(epoch + 1, opts.epochs, step + 1, len(batches), loss_sum / n_steps,
                 n_steps * len(images) * dist.world / max(el, 1e-9))
    dt = time.monotonic() - te
    n_img = n_steps * len(batches[0]) * dist.world
    s.seconds += dt
    s.images += n_img
    rec = {"epoch": epoch + 1, "loss": dist.mean_over_ranks(loss_sum / max(1, n_steps)),
           **{k: v / max(1, n_steps) for k, v in parts_sum.items()},
           "lr": s.scheduler.get_last_lr()[0], "seconds": dt,
           "images_per_s": n_img / max(dt, 1e-9)}
    if dist.main and opts.eval_every and (epoch + 1) % opts.eval_every == 0 \
            and epoch + 1 < opts.epochs:
        rec["test_ap"] = _probe_test_ap(s)
    s.history.append(rec)
    if dist.main:
        save_checkpoint(s.run / CHECKPOINT, s.state(epoch + 1))
    bar.epoch(_epoch_line(rec, opts.epochs))
    dist.barrier()


def _train_step(s: _Session, images, boxes, gen, epoch: int, step: int
                ) -> tuple[float, dict[str, float]]:
    """One optimizer step on a batch (augmented with ``gen``); its loss and loss terms."""
    if s.opts.augment:
        x, boxes = augment(images, boxes, gen, s.opts)
    else:
        x = images.float()
    x = x.to(s.device)
    head = s.net(x)
    loss, parts = s.loss_fn(head, boxes)
    if s.teacher is not None and s.opts.distill_weight > 0:
        import torch
        with torch.no_grad():
            t_head = s.teacher(x)
        kd, kd_parts = distill_loss(head, t_head, s.cfg)
        loss = loss + s.opts.distill_weight * kd
        parts = {**parts, **kd_parts}
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    s.optimizer.step()
    s.scheduler.step()
    if s.cfg.is_binary:
        s.model.clip_latent_(1.0)
    lv = float(loss.detach())
    if not math.isfinite(lv):
        raise DupnetError(f"training diverged at epoch {epoch + 1} step "
                          f"{step + 1} (loss {lv}); lower --lr")
    return lv, parts


def _probe_test_ap(s: _Session) -> float:
    """Test-split AP of a copy of the current model (BN recalibrated if the run does it)."""
    probe = copy.deepcopy(s.model)
    if s.opts.bn_recalibrate:
        recalibrate_bn(probe, s.data, s.opts.batch_size, s.device)
    return evaluate_model(probe, s.cfg, s.test_split()).ap


def _epoch_line(rec: dict[str, Any], epochs: int) -> str:
    """The one-line summary of an epoch's history record."""
    return (f"epoch {rec['epoch']:>3}/{epochs}  loss {rec['loss']:.4f} (box "
            f"{rec.get('box', 0):.3f} obj {rec.get('obj', 0):.3f} noobj "
            f"{rec.get('noobj', 0):.3f}"
            + (f" kd {rec['kd']:.3f}" if "kd" in rec else "")
            + f")  {rec['images_per_s']:.0f} img/s  "
            f"{rec['seconds']:.1f}s" + (f"  test AP {rec['test_ap']:.4f}"
                                        if "test_ap" in rec else ""))


def _finish(s: _Session, say: Callable[[str], None]) -> TrainResult:
    """After the last epoch: recalibrate BN, evaluate (rank 0) and save the final checkpoint."""
    opts, dist = s.opts, s.dist
    result = TrainResult(run=s.run, epochs=opts.epochs, history=s.history, seconds=s.seconds,
                         images_per_s=s.images / s.seconds if s.seconds > 0 else 0.0)
    final = None
    if opts.bn_recalibrate and has_batchnorm(s.model):
        # every rank computes the same statistics (same images, same weights)
        recalibrate_bn(s.model, s.data, opts.batch_size, s.device)
        final = s.state(opts.epochs)
        final["bn_recalibrated"] = True
    if dist.main and opts.evaluate:
        m = evaluate_model(s.model, s.cfg, s.test_split())
        result.metrics = m.to_dict()
        say(f"test split: {m}")
        if final is None:
            final = s.state(opts.epochs)
        final["metrics"] = result.metrics
        atomic_write_bytes(s.run / "metrics.json",
                           (json.dumps({"config": s.cfg.name, "data": opts.data,
                                        "epochs": opts.epochs, **result.metrics},
                                       indent=2) + "\n").encode())
    if dist.main and final is not None:
        save_checkpoint(s.run / CHECKPOINT, final)
    dist.barrier()
    return result

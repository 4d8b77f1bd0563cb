"""Training loop of a DupNet: data, augmentation, schedule, checkpoints, exact resume and DDP.

A run is a directory ``RUN/`` holding

* ``checkpoint.pt`` — written atomically after every epoch (:func:`save_checkpoint`); a
  ``torch.save``'d dict with ``"format"``, ``"config"`` (``NetworkConfig.to_dict()``),
  ``"model"`` (state dict of the unwrapped :class:`~dupnet.sw.qat.DupNet`), ``"epoch"`` (the
  number of completed epochs), ``"options"`` (the :class:`TrainOptions`), ``"optimizer"``,
  ``"scheduler"``, ``"rng"`` (torch, numpy, python states), ``"history"`` (per-epoch loss and
  throughput) and, after the last epoch, ``"metrics"`` (test-split AP and detection rate).
  Every entry is a tensor or plain data, so it loads with ``torch.load(weights_only=True)``.
* ``metrics.json`` — the final evaluation, when the run finished.

Determinism: everything random is derived from ``TrainOptions.seed`` — the model's
initialisation (``torch.manual_seed``), the per-epoch shuffle (``DistributedSampler`` with
``seed`` and ``set_epoch``) and the per-epoch augmentation (a generator seeded from
``(seed, epoch, rank)``).  So the same seed gives bit-identical weights on the same machine
and thread count, and a resumed run continues exactly as if it had never stopped.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
``DistributedDataParallel`` (backend ``nccl`` on GPUs, ``gloo`` on CPUs), each rank sees its
``DistributedSampler`` shard with ``batch_size / world_size`` images per step (so the global
batch and the schedule do not depend on the number of processes), and only rank 0 writes
checkpoints, logs and evaluates.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
import random
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DupnetError
from .artifact import MAGIC, atomic_write_bytes
from .config import NetworkConfig, config_from_dict

__all__ = ["TrainOptions", "TrainResult", "RunError", "train", "load_run", "load_checkpoint",
           "model_from_checkpoint",
           "save_checkpoint", "checkpoint_path", "evaluate_model", "predict_heads",
           "load_split", "CHECKPOINT", "CHECKPOINT_FORMAT", "default_threads"]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "dupnet-checkpoint-1"
_CACHE_LIMIT = 2 << 30      # materialise a training set in memory below this many bytes


class RunError(DupnetError):
    """A run directory or checkpoint is missing, malformed, or does not match the request."""


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
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


@dataclass
class TrainResult:
    run: Path
    epochs: int
    history: list = field(default_factory=list)
    metrics: dict | None = None
    seconds: float = 0.0
    images_per_s: float = 0.0


# ----------------------------------------------------------------------------------------------
# Environment


def default_threads(local_world: int = 1) -> int:
    """Intra-op threads per process: the CPUs this process may use, shared by local ranks."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, local_world))


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _dist_setup(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist
    d = _Dist(world=world, rank=int(os.environ.get("RANK", "0")),
              local_rank=int(os.environ.get("LOCAL_RANK", "0")),
              local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        d.initialised_here = True
    return d


def _device(opts: TrainOptions, dist: _Dist):
    import torch
    want = opts.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise DupnetError("training option 'device': cuda requested but no GPU is visible")
        return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _seed_everything(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    import torch
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}


def _set_rng_state(s: dict[str, Any]) -> None:
    import torch
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C) while training, in the main thread."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ----------------------------------------------------------------------------------------------
# Data


def load_split(cfg: NetworkConfig, spec: str, split: str, n: int | None = None,
               seed: int = 0):
    """The ``split`` of dataset ``spec`` at the config's input size and channels.

    The built-in set takes ``n`` (default: the dataset's own) and ``seed`` (default 0: the
    fixed built-in benchmark); file datasets ignore both.
    """
    from .datasets import builtin_dataset, open_dataset
    size = (cfg.input_height, cfg.input_width)
    if spec == "builtin":
        return builtin_dataset(split, n=n, size=size, channels=cfg.input_channels, seed=seed)
    return open_dataset(spec, split, size, cfg.input_channels, seed=seed)


class _Data:
    """Index batches to ``(images uint8 [B, C, H, W], boxes list of float32 [M, 4])``.

    Small sets are materialised once (rendering the built-in set costs more than a training
    step); big ones are read per batch, optionally through DataLoader workers.
    """

    def __init__(self, dataset, cfg: NetworkConfig, workers: int = 0):
        import torch
        self.dataset = dataset
        self.workers = workers
        n = len(dataset)
        nbytes = n * cfg.input_height * cfg.input_width * cfg.input_channels
        self.images = None
        self.boxes: list[np.ndarray] | None = None
        if nbytes <= _CACHE_LIMIT:
            imgs = np.empty((n, cfg.input_height, cfg.input_width, cfg.input_channels),
                            dtype=np.uint8)
            boxes = []
            for i in range(n):
                s = dataset[i]
                _check_sample(s, cfg, i)
                imgs[i] = s.image
                boxes.append(np.asarray(s.boxes, dtype=np.float32).reshape(-1, 4))
            self.images = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
            self.boxes = boxes
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, index_batches: list[list[int]]):
        import torch
        if self.images is not None:
            for idx in index_batches:
                yield self.images[idx], [self.boxes[i] for i in idx]
            return
        cfg = self.cfg

        def collate(samples):
            imgs = np.stack([s.image for s in samples])
            return (torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(),
                    [np.asarray(s.boxes, dtype=np.float32).reshape(-1, 4) for s in samples])
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=index_batches,
                                             num_workers=self.workers, collate_fn=collate)
        for imgs, boxes in loader:
            if tuple(imgs.shape[1:]) != (cfg.input_channels, cfg.input_height,
                                         cfg.input_width):
                raise DupnetError(f"dataset images are {tuple(imgs.shape[1:])} (C, H, W); "
                                  f"the network {cfg.name!r} takes "
                                  f"{(cfg.input_channels, cfg.input_height, cfg.input_width)}")
            yield imgs, boxes


def _check_sample(s, cfg: NetworkConfig, i: int) -> None:
    want = (cfg.input_height, cfg.input_width, cfg.input_channels)
    if tuple(s.image.shape) != want or s.image.dtype != np.uint8:
        raise DupnetError(f"dataset sample {i} ({s.name}): image {tuple(s.image.shape)} "
                          f"{s.image.dtype}, the network {cfg.name!r} takes uint8 {want} "
                          f"(H, W, C)")


def _augment(images, boxes: list[np.ndarray], gen, opts: TrainOptions):
    """Random horizontal flip, integer shift (edge replicate) and brightness/contrast.

    ``images`` uint8 ``[B, C, H, W]``; returns float ``[B, C, H, W]`` of integers 0..255 (the
    network takes raw uint8 values) and the moved boxes (clipped; boxes losing more than 60%
    of their area are dropped).  All randomness comes from the torch generator ``gen``.
    """
    import torch
    import torch.nn.functional as F
    b, c, h, w = images.shape
    x = images.float()
    out_boxes = []
    flip = torch.rand(b, generator=gen) < 0.5
    mx = int(round(opts.max_shift * w))
    my = int(round(opts.max_shift * h))
    dx = torch.randint(-mx, mx + 1, (b,), generator=gen) if mx else torch.zeros(b, dtype=torch.long)
    dy = torch.randint(-my, my + 1, (b,), generator=gen) if my else torch.zeros(b, dtype=torch.long)
    gain = torch.empty(b).uniform_(0.75, 1.25, generator=gen)
    bias = torch.empty(b).uniform_(-25.0, 25.0, generator=gen)
    if flip.any():
        x[flip] = x[flip].flip(-1)
    pad = max(mx, my)
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    for i in range(b):
        bx = boxes[i].astype(np.float32).copy()
        if flip[i]:
            bx[:, [0, 2]] = w - bx[:, [2, 0]]
        sx, sy = int(dx[i]), int(dy[i])
        if sx or sy:
            # output pixel (y, x) reads input (y - sy, x - sx): content moves by (+sx, +sy)
            x[i] = xp[i, :, pad - sy:pad - sy + h, pad - sx:pad - sx + w]
            area0 = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
            bx[:, [0, 2]] = np.clip(bx[:, [0, 2]] + sx, 0, w)
            bx[:, [1, 3]] = np.clip(bx[:, [1, 3]] + sy, 0, h)
            area1 = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
            bx = bx[area1 >= 0.4 * np.maximum(area0, 1e-9)]
        out_boxes.append(bx)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * gain.view(b, 1, 1, 1) + mean + bias.view(b, 1, 1, 1)
    return torch.round(x).clamp_(0, 255), out_boxes


def _index_batches(n: int, opts: TrainOptions, dist: _Dist, epoch: int) -> list[list[int]]:
    """This rank's index batches of ``epoch``: a DistributedSampler shard, per-rank batches of
    ``batch_size / world`` images, the last incomplete batch dropped."""
    from torch.utils.data import DistributedSampler
    sampler = DistributedSampler(range(n), num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=opts.seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    per = max(1, opts.batch_size // dist.world)
    nb = len(idx) // per
    if nb == 0:
        raise DupnetError(f"the training set has {n} images, fewer than one batch of "
                          f"{per} per process; lower --batch-size")
    return [idx[k * per:(k + 1) * per] for k in range(nb)]


# ----------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_path(run: str | os.PathLike) -> Path:
    """``RUN/checkpoint.pt`` for a run directory; a ``.pt`` file as is."""
    p = Path(run)
    return p if p.suffix == ".pt" else p / CHECKPOINT


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file, then rename: an interrupted write leaves the
    previous checkpoint intact."""
    import torch
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict from a run directory or a ``.pt`` file, with clear errors."""
    import torch
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: no such run directory or checkpoint file")
    if p.is_dir():
        cp = p / CHECKPOINT
        if not cp.is_file():
            raise RunError(f"{p}: no {CHECKPOINT} in this directory (is it a run written by "
                           f"`dupnet train`?)")
        p = cp
    with open(p, "rb") as f:
        head = f.read(8)
    if head == MAGIC:
        raise RunError(f"{p}: this is an integer artifact, not a training checkpoint "
                       f"(artifacts are evaluated with `dupnet eval`, not resumed)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise RunError(f"{p}: not a readable checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{p}: not a dupnet checkpoint (missing format "
                       f"{CHECKPOINT_FORMAT!r})")
    for key in ("config", "model", "epoch"):
        if key not in state:
            raise RunError(f"{p}: checkpoint lacks field {key!r}")
    state["_path"] = str(p)
    return state


def model_from_checkpoint(state: dict[str, Any]):
    """``(cfg, model)`` rebuilt from a checkpoint dict of :func:`load_checkpoint` (eval mode)."""
    from .qat import build_model
    try:
        cfg = config_from_dict(state["config"], source=f"{state['_path']} (embedded config)")
    except DupnetError as e:
        raise RunError(str(e)) from None
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise RunError(f"{state['_path']}: weights do not fit the embedded config "
                       f"{cfg.name!r}: {str(e).splitlines()[0]}") from None
    model.eval()
    return cfg, model


def load_run(path: str | os.PathLike):
    """``(cfg, model)`` of a run directory or checkpoint file; the model is in eval mode."""
    return model_from_checkpoint(load_checkpoint(path))


# ----------------------------------------------------------------------------------------------
# Evaluation of a PyTorch model


def predict_heads(model, images_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The real-valued head, NHWC ``[N, H', W', A*(5+C)]``, of uint8 images ``[N, H, W, C]``
    (eval mode, no gradient; the model's mode is restored)."""
    import torch
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    outs = []
    try:
        with torch.no_grad():
            for k in range(0, len(images_nhwc), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images_nhwc[k:k + batch_size]))
                x = x.permute(0, 3, 1, 2).float().to(dev)
                outs.append(model(x).permute(0, 2, 3, 1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0,))


def detections_from_heads(heads: np.ndarray, cfg: NetworkConfig, conf_thresh: float = 0.005,
                          iou_thresh: float = 0.45, max_dets: int = 100) -> list:
    """Decode + NMS of NHWC heads: one ``(boxes, scores)`` pair per image."""
    from .yolo import detect
    size = (cfg.input_height, cfg.input_width)
    return [detect(h, cfg.anchors, size, conf_thresh, iou_thresh, max_dets) for h in heads]


def evaluate_model(model, cfg: NetworkConfig, dataset, iou: float = 0.5,
                   fp: int | None = None, conf_thresh: float = 0.005,
                   nms_thresh: float = 0.45):
    """AP and detection rate of a PyTorch model on a dataset (``DetectionMetrics``)."""
    from .metrics import evaluate_detections
    samples = [dataset[i] for i in range(len(dataset))]
    for i, s in enumerate(samples):
        _check_sample(s, cfg, i)
    if not samples:
        raise DupnetError("the evaluation set is empty")
    images = np.stack([s.image for s in samples])
    heads = predict_heads(model, images)
    dets = detections_from_heads(heads, cfg, conf_thresh, nms_thresh)
    return evaluate_detections(dets, [s.boxes for s in samples], iou=iou, fp=fp)


def golden_heads(artifact, images_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The real-valued head, NHWC, of an integer artifact run by the golden model."""
    from .golden import GoldenModel
    gm = GoldenModel(artifact)
    outs = [gm.decode_inputs(gm(images_nhwc[k:k + batch_size]))
            for k in range(0, len(images_nhwc), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,))


def is_artifact_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def evaluate_path(path: str | os.PathLike, data: str = "builtin", n: int | None = None,
                  split: str = "test", iou: float = 0.5, fp: int | None = None,
                  conf_thresh: float = 0.005, nms_thresh: float = 0.45):
    """Evaluate a run (PyTorch model, eval mode) or an artifact (golden integer model).

    Returns ``(kind, cfg, DetectionMetrics)`` with kind ``"run"`` or ``"artifact"``.
    """
    from .metrics import evaluate_detections
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: no such run directory, checkpoint or artifact")
    if is_artifact_file(p):
        from .artifact import Artifact
        kind, art = "artifact", Artifact.load(p)
        cfg = art.config
    else:
        kind = "run"
        cfg, model = load_run(p)
    dataset = load_split(cfg, data, split, n=n if data == "builtin" else None)
    samples = [dataset[i] for i in range(len(dataset))]
    if not samples:
        raise DupnetError(f"the {split} split of {data} is empty")
    for i, s in enumerate(samples):
        _check_sample(s, cfg, i)
    images = np.stack([s.image for s in samples])
    heads = golden_heads(art, images) if kind == "artifact" else predict_heads(model, images)
    dets = detections_from_heads(heads, cfg, conf_thresh, nms_thresh)
    return kind, cfg, evaluate_detections(dets, [s.boxes for s in samples], iou=iou, fp=fp)


# ----------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A small progress bar on stderr: ``\\r`` updates on a terminal, one line per epoch
    otherwise."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def step(self, epoch: int, epochs: int, i: int, n: int, loss: float, ips: float) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if i < n and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        done = int(width * i / n)
        bar = "#" * done + "-" * (width - done)
        self.stream.write(f"\repoch {epoch:>3}/{epochs} [{bar}] {i:>4}/{n} "
                          f"loss {loss:7.4f}  {ips:7.1f} img/s ")
        self.stream.flush()

    def epoch(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------------------------
# The loop


def _lr_lambda(total_steps: int, warmup_steps: int, final: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        t = min(1.0, t)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def _same_config(a: dict, b: dict) -> bool:
    a = dict(a)
    b = dict(b)
    a.pop("description", None)
    b.pop("description", None)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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

    given = opts
    opts = dataclasses.replace(opts) if opts is not None else TrainOptions()
    run = Path(out)
    ckpt_file = run / CHECKPOINT

    state = None
    if resume:
        if not ckpt_file.is_file():
            raise RunError(f"{run}: --resume given but there is no {CHECKPOINT} to resume "
                           f"from (start a new run without --resume)")
        state = load_checkpoint(ckpt_file)
        if not _same_config(state["config"], cfg.to_dict()):
            raise RunError(f"{ckpt_file}: the checkpoint was trained with config "
                           f"{state['config'].get('name')!r} and different layers/head than "
                           f"{cfg.name!r} ({cfg.source}); resume with the same config")
        saved = TrainOptions.from_dict(state["options"])
        if given is not None:
            saved.epochs = given.epochs
        opts = saved
    elif ckpt_file.exists() and not overwrite:
        raise RunError(f"{run} already holds a checkpoint ({CHECKPOINT}); pass --resume to "
                       f"continue it, or --overwrite to start over")
    if evaluate is not None:
        opts.evaluate = evaluate
    opts.validate()

    device_kind = opts.device if opts.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    dist = _dist_setup(device_kind)
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
        if dist.initialised_here:
            import torch.distributed as tdist
            tdist.destroy_process_group()


def _train(cfg, run: Path, opts: TrainOptions, state, dist: _Dist, say, show_progress,
           on_step, n_threads) -> TrainResult:
    import torch
    from .qat import build_model
    from .yolo import YoloLoss

    device = _device(opts, dist)
    _seed_everything(opts.seed)
    model = build_model(cfg)
    _init_head_bias(model, cfg, opts.obj_prior)
    model = model.to(device)

    t0 = time.monotonic()
    train_set = load_split(cfg, opts.data, "train", n=opts.n_train if opts.data == "builtin"
                           else None)
    data = _Data(train_set, cfg, workers=opts.workers)
    steps_per_epoch = len(_index_batches(len(data), opts, dist, 0))
    total_steps = opts.epochs * steps_per_epoch
    warmup = int(round(opts.warmup_epochs * steps_per_epoch))

    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, max(1, warmup), opts.final_lr_fraction))
    loss_fn = YoloLoss(cfg, noobj_weight=opts.noobj_weight, ignore_thresh=opts.ignore_thresh)

    start_epoch = 0
    history: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        history = list(state.get("history", []))
        if start_epoch > opts.epochs:
            raise RunError(f"{run}: the checkpoint has {start_epoch} epochs, more than the "
                           f"{opts.epochs} asked for")

    net = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    say(f"training {cfg.name} ({'binary' if cfg.is_binary else 'float'}) on {opts.data}: "
        f"{len(data)} images, batch {opts.batch_size}"
        f"{f' over {dist.world} processes' if dist.enabled else ''}, {opts.epochs} epochs, "
        f"{device.type} x {n_threads} threads; run {run}"
        + (f" (resuming after epoch {start_epoch})" if state is not None else "")
        + f"; data ready in {time.monotonic() - t0:.1f}s")

    bar = _Progress(show_progress)
    test_set = None
    t_train = 0.0
    images_seen = 0
    with _sigterm_as_interrupt():
        try:
            for epoch in range(start_epoch, opts.epochs):
                net.train()
                batches = _index_batches(len(data), opts, dist, epoch)
                gen = torch.Generator().manual_seed(
                    (opts.seed * 1_000_003 + epoch * 7_919 + dist.rank) % (1 << 63))
                te = time.monotonic()
                loss_sum, parts_sum, n_steps = 0.0, {}, 0
                for step, (images, boxes) in enumerate(data.batches(batches)):
                    if on_step is not None:
                        on_step(epoch, step)
                    if opts.augment:
                        x, boxes = _augment(images, boxes, gen, opts)
                    else:
                        x = images.float()
                    x = x.to(device)
                    head = net(x)
                    loss, parts = loss_fn(head, boxes)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    if cfg.is_binary:
                        model.clip_latent_(1.0)
                    lv = float(loss.detach())
                    if not math.isfinite(lv):
                        raise DupnetError(f"training diverged at epoch {epoch + 1} step "
                                          f"{step + 1} (loss {lv}); lower --lr")
                    loss_sum += lv
                    for k, v in parts.items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + v
                    n_steps += 1
                    el = time.monotonic() - te
                    bar.step(epoch + 1, opts.epochs, step + 1, len(batches),
                             loss_sum / n_steps,
                             n_steps * len(images) * dist.world / max(el, 1e-9))
                dt = time.monotonic() - te
                n_img = n_steps * len(batches[0]) * dist.world
                t_train += dt
                images_seen += n_img
                mean = loss_sum / max(1, n_steps)
                if dist.enabled:
                    import torch.distributed as tdist
                    t = torch.tensor([mean], dtype=torch.float64)
                    tdist.all_reduce(t)
                    mean = float(t) / dist.world
                rec = {"epoch": epoch + 1, "loss": mean,
                       **{k: v / max(1, n_steps) for k, v in parts_sum.items()},
                       "lr": scheduler.get_last_lr()[0], "seconds": dt,
                       "images_per_s": n_img / max(dt, 1e-9)}
                if (dist.main and opts.eval_every and (epoch + 1) % opts.eval_every == 0
                        and epoch + 1 < opts.epochs):
                    if test_set is None:
                        test_set = load_split(cfg, opts.data, "test", n=opts.n_test
                                              if opts.data == "builtin" else None)
                    probe = copy.deepcopy(model)
                    if opts.bn_recalibrate:
                        recalibrate_bn(probe, data, opts.batch_size, device)
                    rec["test_ap"] = evaluate_model(probe, cfg, test_set).ap
                    del probe
                history.append(rec)
                if dist.main:
                    save_checkpoint(run / CHECKPOINT,
                                    _state(cfg, model, epoch + 1, opts, optimizer, scheduler,
                                           history))
                bar.epoch(f"epoch {epoch + 1:>3}/{opts.epochs}  loss {mean:.4f} (box "
                          f"{rec.get('box', 0):.3f} obj {rec.get('obj', 0):.3f} noobj "
                          f"{rec.get('noobj', 0):.3f})  {rec['images_per_s']:.0f} img/s  "
                          f"{dt:.1f}s" + (f"  test AP {rec['test_ap']:.4f}"
                                          if "test_ap" in rec else ""))
                if dist.enabled:
                    import torch.distributed as tdist
                    tdist.barrier()
        except KeyboardInterrupt:
            if dist.main:
                done = len(history)
                where = (f"the checkpoint of epoch {done} in {run / CHECKPOINT} is intact; "
                         f"continue with --resume" if done else "no epoch completed")
                sys.stderr.write(f"\ninterrupted: {where}\n")
            raise

    result = TrainResult(run=run, epochs=opts.epochs, history=history, seconds=t_train,
                         images_per_s=images_seen / t_train if t_train > 0 else 0.0)
    final = None
    if opts.bn_recalibrate and _has_bn(model):
        # every rank computes the same statistics (same images, same weights)
        recalibrate_bn(model, data, opts.batch_size, device)
        final = _state(cfg, model, opts.epochs, opts, optimizer, scheduler, history)
        final["bn_recalibrated"] = True
    if dist.main and opts.evaluate:
        if test_set is None:
            test_set = load_split(cfg, opts.data, "test",
                                  n=opts.n_test if opts.data == "builtin" else None)
        m = evaluate_model(model, cfg, test_set)
        result.metrics = m.to_dict()
        say(f"test split: {m}")
        if final is None:
            final = _state(cfg, model, opts.epochs, opts, optimizer, scheduler, history)
        final["metrics"] = result.metrics
        atomic_write_bytes(run / "metrics.json",
                           (json.dumps({"config": cfg.name, "data": opts.data,
                                        "epochs": opts.epochs, **result.metrics},
                                       indent=2) + "\n").encode())
    if dist.main and final is not None:
        save_checkpoint(run / CHECKPOINT, final)
    if dist.enabled:
        import torch.distributed as tdist
        tdist.barrier()
    return result


def _bn_layers(model):
    import torch
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _has_bn(model) -> bool:
    return bool(_bn_layers(model))


def recalibrate_bn(model, data: "_Data", batch_size: int, device, max_images: int = 4096
                   ) -> None:
    """Replace every BatchNorm's running statistics by their exact average over (up to
    ``max_images`` of) the un-augmented training images, at the current weights.

    Binary weights keep flipping sign during training, so the momentum-averaged running
    statistics lag behind the weights they normalise; for quantized activations a small shift
    moves values across thresholds.  Measured on dupnet-demo-style networks this recovers
    several AP points (docs/training.md).  Deterministic: fixed images, fixed order, no
    randomness.
    """
    import torch
    bns = _bn_layers(model)
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                 # cumulative average over the batches
    was_training = model.training
    model.train()
    n = min(len(data), max_images)
    order = [list(range(k, min(n, k + batch_size))) for k in range(0, n, batch_size)]
    try:
        with torch.no_grad():
            for images, _ in data.batches(order):
                model(images.float().to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)


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


def _state(cfg, model, epoch, opts, optimizer, scheduler, history) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "epoch": epoch, "options": opts.to_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(), "history": history}

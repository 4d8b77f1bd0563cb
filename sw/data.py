"""Training and evaluation data as the network sees it: dataset splits at a config's input
size, shuffled per-rank index batches, batches of ``(images, boxes)`` and augmentation.

The data sets themselves (the built-in synthetic set, WIDER FACE, FDDB) are generated or read
by :mod:`dupnet.sw.datasets`; this module serves them to training and evaluation.
Everything random here is seeded explicitly (the shuffle by ``(seed, epoch)``, augmentation by
a torch generator the caller passes), so runs are reproducible.  torch is imported lazily.
"""
from __future__ import annotations

import numpy as np

from ..errors import DupnetError
from .config import NetworkConfig

__all__ = ["load_split", "BatchReader", "check_sample", "augment", "index_batches"]

_CACHE_LIMIT = 2 << 30      # materialise a training set in memory below this many bytes


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


def check_sample(s, cfg: NetworkConfig, i: int) -> None:
    """Raise a clear error unless sample ``i``'s image is uint8 ``(H, W, C)`` of ``cfg``."""
    want = (cfg.input_height, cfg.input_width, cfg.input_channels)
    if tuple(s.image.shape) != want or s.image.dtype != np.uint8:
        raise DupnetError(f"dataset sample {i} ({s.name}): image {tuple(s.image.shape)} "
                          f"{s.image.dtype}, the network {cfg.name!r} takes uint8 {want} "
                          f"(H, W, C)")


class BatchReader:
    """Index batches to ``(images uint8 [B, C, H, W], boxes list of float32 [M, 4])``.

    Small sets are materialised once (rendering the built-in set costs more than a training
    step); big ones are read per batch, optionally through DataLoader workers.

    Parameters
    ----------
    dataset : a sequence of samples (``.image`` uint8 ``[H, W, C]``, ``.boxes``, ``.name``)
    cfg : NetworkConfig
        Whose input size and channels every image must have.
    workers : int
        DataLoader workers when the set is too big to cache.
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
                check_sample(s, cfg, i)
                imgs[i] = s.image
                boxes.append(np.asarray(s.boxes, dtype=np.float32).reshape(-1, 4))
            self.images = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
            self.boxes = boxes
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, index_batches: list[list[int]]):
        """Yield ``(images, boxes)`` for each list of sample indices, in order."""
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


def index_batches(n: int, batch_size: int, seed: int, epoch: int, world: int = 1,
                  rank: int = 0) -> list[list[int]]:
    """This rank's index batches of ``epoch`` over ``n`` samples.

    A ``DistributedSampler`` shard shuffled by ``(seed, epoch)``, cut into per-rank batches
    of ``batch_size / world`` images; the last incomplete batch is dropped.  Step ``k`` of
    the ``world`` ranks together is the single-process batch ``k`` (the same images, steps
    and schedule), and no sample is served twice in an epoch (the sampler drops the tail
    that does not divide among the ranks instead of padding it with repeated samples).

    Raises
    ------
    DupnetError
        Fewer samples than one batch per process, or a batch that does not split evenly
        among the processes.
    """
    from torch.utils.data import DistributedSampler
    if batch_size % world:
        raise DupnetError(f"training option 'batch_size': the global batch {batch_size} must "
                          f"be a multiple of the {world} processes")
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank,
                                 shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    per = batch_size // world
    nb = len(idx) // per
    if nb == 0:
        raise DupnetError(f"the training set has {n} images, fewer than one batch of "
                          f"{per} per process; lower --batch-size")
    return [idx[k * per:(k + 1) * per] for k in range(nb)]


def augment(images, boxes: list[np.ndarray], gen, opts):
    """Random horizontal flip, integer shift (edge replicate) and brightness/contrast.

    ``images`` uint8 ``[B, C, H, W]``; returns float ``[B, C, H, W]`` of integers 0..255 (the
    network takes raw uint8 values) and the moved boxes (clipped; boxes losing more than 60%
    of their area are dropped).  All randomness comes from the torch generator ``gen``;
    ``opts`` (a ``TrainOptions``) gives ``max_shift``, the largest shift as a fraction of the
    image side.
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

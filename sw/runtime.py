"""The process a training run executes in: threads, device, DDP process group, seeds, signals.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`setup_distributed` joins the process group
(backend ``nccl`` on GPUs, ``gloo`` on CPUs) and the returned :class:`Distributed` tells a rank
who it is; with one process everything here is a no-op and torch's distributed package is
never imported.  torch is imported lazily, so importing this module stays cheap.
"""
from __future__ import annotations

import os
import random
import signal
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import DupnetError

__all__ = ["Distributed", "setup_distributed", "device_kind", "select_device",
           "default_threads", "seed_everything", "sigterm_as_interrupt"]


def default_threads(local_world: int = 1) -> int:
    """Intra-op threads per process: the CPUs this process may use, shared by local ranks.

    Parameters
    ----------
    local_world : int
        Processes of the run on this machine.

    Returns
    -------
    int
        At least 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, local_world))


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) data-parallel run.

    Attributes
    ----------
    world, rank : int
        Processes in the run and this one's index (0 is the main process).
    local_rank, local_world : int
        The same on this machine (``local_rank`` picks the GPU).
    initialised_here : bool
        :func:`setup_distributed` created the process group, so :meth:`close` destroys it.
    """
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process: the model is wrapped in DDP and ranks synchronise."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes."""
        return self.rank == 0

    def mean_over_ranks(self, value: float) -> float:
        """The average of ``value`` over all ranks (``value`` itself with one process)."""
        if not self.enabled:
            return value
        import torch
        import torch.distributed as tdist
        t = torch.tensor([value], dtype=torch.float64)
        tdist.all_reduce(t)
        return float(t) / self.world

    def barrier(self) -> None:
        """Wait for every rank (nothing with one process)."""
        if self.enabled:
            import torch.distributed as tdist
            tdist.barrier()

    def close(self) -> None:
        """Destroy the process group if :func:`setup_distributed` created it."""
        if self.initialised_here:
            import torch.distributed as tdist
            tdist.destroy_process_group()


def setup_distributed(device_kind: str) -> Distributed:
    """Join the ``torchrun`` process group described by the environment, if any.

    Parameters
    ----------
    device_kind : str
        ``"cuda"`` (backend ``nccl``) or ``"cpu"`` (backend ``gloo``).

    Returns
    -------
    Distributed
        ``Distributed()`` (one process) unless ``WORLD_SIZE > 1``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist
    d = Distributed(world=world, rank=int(os.environ.get("RANK", "0")),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        d.initialised_here = True
    return d


def device_kind(want: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a device option ``auto | cpu | cuda`` (auto: a GPU if any).

    Called before a rank joins its process group, so that ``cuda`` without a GPU is this
    clear error and not a failure of the ``nccl`` backend.

    Raises
    ------
    DupnetError
        ``cuda`` was asked for but no GPU is visible.
    """
    import torch
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise DupnetError("training option 'device': cuda requested but no GPU is visible")
    return want


def select_device(want: str, dist: Distributed):
    """The ``torch.device`` this rank trains on.

    Parameters
    ----------
    want : str
        ``auto`` (a GPU if one is visible), ``cpu`` or ``cuda``.
    dist : Distributed
        Ranks on one machine share its GPUs round-robin by ``local_rank``.

    Raises
    ------
    DupnetError
        ``cuda`` was asked for but no GPU is visible.
    """
    import torch
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise DupnetError("training option 'device': cuda requested but no GPU is visible")
        return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators with ``seed``."""
    import torch
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C) inside the block, in the main thread.

    In other threads (where signal handlers cannot be set) the block runs unchanged.
    """
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

"""DDP on CPU (two gloo processes on the loopback interface): each rank trains on its own
shard of the epoch, gradients are averaged (both ranks step to the same weights, those of one
process stepping on the concatenated batch), and a resumed DDP run is bit-identical to an
uninterrupted one; ``--device cuda`` without a GPU is a clear error, also under torchrun.

The two processes are started once for the module (:func:`ddp`) and run, as torchrun's
workers would (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` in the
environment), first ``train()`` on a probe run, then the ``dupnet train`` CLI in-process for the
resume runs.  Each call of ``train()`` joins and leaves its own process group
(``setup_distributed``), on its own port.  The probe records, without changing the code under
test, the index batches ``BatchReader.batches`` is asked for and the weights and gradients
around the first ``_train_step``; every run dumps each rank's final weights (``_finish``).
(``tests/sw/test_train.py`` runs the real ``torchrun`` launcher once.)

BatchNorm statistics are per process (the code does not use SyncBatchNorm): the single-process
reference of the gradient test normalises each rank's half of the batch on its own, as the
two ranks do, and BN running statistics, which differ between ranks during training, are not
compared there (they are recalibrated identically on every rank at the end of a run).
"""
import fcntl
import os
import shutil
import socket
import time
import traceback
from pathlib import Path

import pytest
import torch

from dupnet.cli import main
from dupnet.errors import DupnetError
from dupnet.sw.config import load_config
from dupnet.sw.data import index_batches

from ..tiny_configs import tiny_config_toml

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = 2
N_TRAIN, BATCH = 16, 8           # two steps per epoch, 4 images per rank and step
CLI_COMMON = ["--n-train", str(N_TRAIN), "--n-test", "8", "--batch-size", str(BATCH),
              "--device", "cpu", "--threads", "1", "--quiet", "--no-eval"]


def probe_options():
    """The probe run: augmentation off (the reference step must see the same pixels), no BN
    recalibration and no evaluation (the last step's weights are the run's)."""
    from dupnet.sw.train import TrainOptions
    return TrainOptions(epochs=1, batch_size=BATCH, n_train=N_TRAIN, n_test=8, augment=False,
                        bn_recalibrate=False, evaluate=False, device="cpu")


# ---------------------------------------------------------------------------------------------
# the two worker processes


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _instrument(rank: int, root: Path, record: dict) -> None:
    """Record, in this worker, what the real training code does; behaviour is unchanged."""
    import dupnet.sw.train as T
    from dupnet.sw.data import BatchReader

    batches = BatchReader.batches

    def recording_batches(self, index_batches):
        record.setdefault("batches", []).append([list(b) for b in index_batches])
        return batches(self, index_batches)
    BatchReader.batches = recording_batches

    train_step = T._train_step

    def recording_step(s, images, boxes, gen, epoch, step):
        if "before" not in record:
            record["before"] = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
            record["lr"] = s.scheduler.get_last_lr()[0]
            out = train_step(s, images, boxes, gen, epoch, step)
            record["after"] = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
            record["grads"] = {k: p.grad.detach().clone()
                               for k, p in s.model.named_parameters()}
            return out
        return train_step(s, images, boxes, gen, epoch, step)
    T._train_step = recording_step

    finish = T._finish

    def dumping_finish(s, say):
        result = finish(s, say)
        torch.save({k: v.detach().clone() for k, v in s.model.state_dict().items()},
                   root / f"{s.run.name}-final-rank{rank}.pt")
        return result
    T._finish = dumping_finish


def _worker(rank: int, root: str, cfg_path: str, ports: list[int]) -> None:
    """One DDP rank: the probe run through ``train()``, then the resume runs through the CLI."""
    root = Path(root)
    try:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                          LOCAL_WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                          OMP_NUM_THREADS="1")
        if Path("/sys/class/net/lo").exists():
            os.environ["GLOO_SOCKET_IFNAME"] = "lo"
        from dupnet.sw.train import train
        record: dict = {}
        _instrument(rank, root, record)
        cfg = load_config(cfg_path)

        os.environ["MASTER_PORT"] = str(ports[0])
        train(cfg, root / "probe", probe_options(), progress=False, log=lambda s: None,
              threads=1)
        torch.save(record, root / f"probe-rank{rank}.pt")

        runs = [("straight", ["--epochs", "2"]),
                ("resumed", ["--epochs", "1"]),
                ("resumed", ["--epochs", "2", "--resume"])]
        for port, (name, extra) in zip(ports[1:], runs):
            os.environ["MASTER_PORT"] = str(port)
            argv = ["train", cfg_path, "--out", str(root / name)]
            if "--resume" in extra:       # a resumed run keeps its stored options
                argv += extra + ["--threads", "1", "--quiet", "--no-eval"]
            else:
                argv += extra + CLI_COMMON
            rc = main(argv)
            if rc != 0:
                raise RuntimeError(f"dupnet {' '.join(argv)} exited with {rc}")
    except BaseException:
        (root / f"error-rank{rank}.txt").write_text(traceback.format_exc())
        raise


def _run_workers(root: Path) -> None:
    """Run the two ranks of :func:`_worker` writing into ``root``; fail with their errors."""
    import multiprocessing
    cfg_path = root / "tiny.toml"
    cfg_path.write_text(tiny_config_toml("tiny-ddp-test"))
    ports = _free_ports(4)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, str(root), str(cfg_path), ports))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 300
    try:
        # a rank that fails leaves the other waiting in a collective: stop at the first failure
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(10)
    errors = "".join(f"rank {r}:\n{(root / f'error-rank{r}.txt').read_text()}"
                     for r in range(WORLD) if (root / f"error-rank{r}.txt").exists())
    late = " (stopped after 300 s)" if time.monotonic() >= deadline else ""
    assert all(p.exitcode == 0 for p in procs), \
        f"DDP workers: exit codes {[p.exitcode for p in procs]}{late}\n{errors}"


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """The directory the two ranks wrote into (see the module docstring).  Under
    pytest-xdist the workers of the session share one run: the first to get here makes it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "ddp-shared"
    else:
        root = tmp_path_factory.mktemp("ddp")
    root.mkdir(exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            for p in root.iterdir():          # what a failed attempt left
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            _run_workers(root)
            (root / "done").write_text("")
    return root


def _load(path: Path):
    return torch.load(path, weights_only=True)


# ---------------------------------------------------------------------------------------------
# different data per rank


@pytest.mark.parametrize("n, batch, world", [(16, 8, 2), (2000, 32, 2), (100, 12, 4),
                                             (17, 8, 2), (9, 2, 2), (11, 6, 3)])
def test_index_batches_shard_the_epoch_between_ranks(n, batch, world):
    """The ranks' batches of an epoch are disjoint and together are the single-process epoch,
    step by step (the same global batches, so the same number of steps and schedule)."""
    for epoch in (0, 1):
        single = index_batches(n, batch, 5, epoch)
        per_rank = [index_batches(n, batch, 5, epoch, world, r) for r in range(world)]
        assert all(len(b) == len(single) for b in per_rank)
        assert all(len(x) == batch // world for b in per_rank for x in b)
        flat = [i for b in per_rank for x in b for i in x]
        assert len(flat) == len(set(flat)), "a sample is trained on twice in one epoch"
        assert sorted(flat) == sorted(i for x in single for i in x)
        for step, global_batch in enumerate(single):
            assert sorted(i for b in per_rank for i in b[step]) == sorted(global_batch)
    # a new shuffle every epoch
    assert index_batches(n, batch, 5, 0, world, 0) != index_batches(n, batch, 5, 1, world, 0)


def test_index_batches_batch_must_split_evenly_over_ranks():
    with pytest.raises(DupnetError, match="batch_size.*multiple of the 2 processes"):
        index_batches(16, 7, 0, 0, 2, 0)
    with pytest.raises(DupnetError, match="fewer than one batch"):
        index_batches(3, 8, 0, 0, 2, 0)


def test_ranks_train_on_disjoint_shards_in_the_real_run(ddp):
    seen = [_load(ddp / f"probe-rank{r}.pt")["batches"] for r in range(WORLD)]
    # one epoch, so one call per rank; each rank's shard is index_batches' for that rank
    assert [len(s) for s in seen] == [1] * WORLD
    seen = [s[0] for s in seen]
    for r in range(WORLD):
        assert seen[r] == index_batches(N_TRAIN, BATCH, 0, 0, WORLD, r)
    flat = [i for s in seen for b in s for i in b]
    assert len(flat) == len(set(flat)) == N_TRAIN
    assert sorted(flat) == list(range(N_TRAIN))


# ---------------------------------------------------------------------------------------------
# gradient averaging


def _reference_step(cfg, rank_batches):
    """One single-process step of the real training pieces on the concatenated batch, each
    rank's half through BatchNorm on its own (as DDP without SyncBatchNorm does).

    Returns the initial weights, the weights after the step, the gradients, the learning rate,
    and the gradient of rank 0's half alone."""
    from dupnet.sw.data import BatchReader
    from dupnet.sw.runtime import Distributed
    from dupnet.sw.train import _initial_model, _new_session, _split
    opts = probe_options()
    device = torch.device("cpu")
    model = _initial_model(cfg, opts, device)
    data = BatchReader(_split(cfg, opts, "train"), cfg)
    s = _new_session(cfg, Path("unused"), opts, Distributed(), device, model, data)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    losses = []
    for idx in rank_batches:
        head = model(data.images[idx].float())
        losses.append(s.loss_fn(head, [data.boxes[i] for i in idx])[0])
    # the loss is a batch mean: over equal halves, the mean of the halves' losses
    loss = sum(losses) / len(losses)
    half0 = torch.autograd.grad(losses[0], list(model.parameters()), retain_graph=True)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    lr = s.scheduler.get_last_lr()[0]
    s.optimizer.step()
    s.scheduler.step()
    model.clip_latent_(1.0)
    names = [k for k, _ in model.named_parameters()]
    return (before, {k: v.detach().clone() for k, v in model.state_dict().items()},
            {k: p.grad.detach().clone() for k, p in model.named_parameters()}, lr,
            dict(zip(names, half0)))


def test_gradients_are_averaged_over_ranks(ddp):
    recs = [_load(ddp / f"probe-rank{r}.pt") for r in range(WORLD)]
    params = list(recs[0]["grads"])
    # the same start on both ranks ...
    for k in recs[0]["before"]:
        assert torch.equal(recs[0]["before"][k], recs[1]["before"][k]), k
    # ... the same (all-reduced) gradient and the same weights after the step
    for k in params:
        assert torch.equal(recs[0]["grads"][k], recs[1]["grads"][k]), f"gradient of {k}"
        assert torch.equal(recs[0]["after"][k], recs[1]["after"][k]), f"weight {k}"
    assert recs[0]["lr"] == recs[1]["lr"]

    cfg = load_config(ddp / "tiny.toml")
    first = [r["batches"][0][0] for r in recs]
    before, after, grads, lr, half0 = _reference_step(cfg, first)
    assert lr == recs[0]["lr"]
    for k in before:
        assert torch.equal(before[k], recs[0]["before"][k]), f"initial {k}"
    changed = 0
    for k in params:
        g, ref = recs[0]["grads"][k], grads[k]
        scale = ref.abs().max().item()
        # the ranks' gradient is the mean over the concatenated batch ...
        torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6 * scale + 1e-12,
                                   msg=lambda m, k=k: f"gradient of {k}: {m}")
        # ... which is not what one rank's half gives (the check could see a missing
        # all-reduce)
        if scale > 0:
            assert (half0[k] - ref).abs().max().item() > 1e-3 * scale, k
        torch.testing.assert_close(recs[0]["after"][k], after[k], rtol=1e-6, atol=1e-7,
                                   msg=lambda m, k=k: f"weight {k} after the step: {m}")
        changed += int(not torch.equal(after[k], before[k]))
    assert changed >= len(params) - 1        # the step moved (nearly) every parameter


# ---------------------------------------------------------------------------------------------
# exact resume


def test_ddp_resume_is_bit_identical(ddp):
    from dupnet.sw.checkpoint import load_checkpoint
    straight, resumed = load_checkpoint(ddp / "straight"), load_checkpoint(ddp / "resumed")
    assert straight["epoch"] == resumed["epoch"] == 2
    assert straight["bn_recalibrated"] and resumed["bn_recalibrated"]
    assert straight["model"].keys() == resumed["model"].keys()
    for k in straight["model"]:
        assert torch.equal(straight["model"][k], resumed["model"][k]), k
    assert [h["loss"] for h in straight["history"]] == [h["loss"] for h in resumed["history"]]
    # every rank ends with the weights rank 0 saved (the second rank is not written otherwise)
    for name in ("straight", "resumed", "probe"):
        finals = [_load(ddp / f"{name}-final-rank{r}.pt") for r in range(WORLD)]
        for k in finals[0]:
            if name == "probe" and ("running" in k or "num_batches" in k):
                continue      # not recalibrated: BN statistics are per rank
            assert torch.equal(finals[0][k], finals[1][k]), f"{name}: {k} differs by rank"
    for k in straight["model"]:
        assert torch.equal(straight["model"][k], _load(ddp / "straight-final-rank1.pt")[k]), k


# ---------------------------------------------------------------------------------------------
# --device cuda without a GPU


@pytest.mark.parametrize("world", [1, 2])
def test_cuda_without_gpu_is_a_clear_error(world, tmp_path, monkeypatch, capsys):
    """Checked before anything else, also before a torchrun rank joins its process group
    (where the nccl backend would fail with a traceback, or wait for the other ranks)."""
    import torch.distributed as tdist

    def no_group(*a, **k):
        raise AssertionError("joined the process group before checking the device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tdist, "init_process_group", no_group)
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    for k, v in dict(WORLD_SIZE=world, RANK=0, LOCAL_RANK=0, LOCAL_WORLD_SIZE=world,
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=1).items():
        monkeypatch.setenv(k, str(v))
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(tiny_config_toml("tiny-ddp-test"))
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--out", str(run), "--device", "cuda",
                 "--threads", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'device'" in err and "cuda" in err and "no GPU" in err, err
    assert "Traceback" not in err
    assert not run.exists()

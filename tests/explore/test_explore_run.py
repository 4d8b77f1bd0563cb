"""`dupnet explore` end to end on a tiny config (one epoch, a handful of images): the outputs
and their schema, no retraining on a rerun, resume after Ctrl-C, --plan / --only / --collect,
and --jobs."""
import json
import shlex

import pytest

from dupnet.cli import main
from dupnet.sw.config import load_config
from dupnet.sw.table import network_cost

from .conftest import FAST

DEVICES = ["--device", "artix7-35t,ecp5-25f"]


def _explore(cfg, out, *extra):
    return main(["explore", str(cfg), "-o", str(out), "--w-dup", "1,2", *DEVICES, *FAST,
                 *extra])


@pytest.fixture(scope="module")
def explored(tiny_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "map"
    assert _explore(tiny_cfg, out) == 0
    return out


def test_outputs_and_schema(explored, tiny_cfg):
    data = json.loads((explored / "explore.json").read_text())
    assert data["format"] == "dupnet-explore" and data["pending"] == []
    assert [v["name"] for v in data["variants"]] == ["w1", "w2"]
    assert list(data["devices"]) == ["artix7-35t", "ecp5-25f"]
    for v in data["variants"]:
        assert {"name", "config", "ap", "on_chip_kib", "binary_ops", "devices", "axes",
                "pareto"} <= set(v)
        assert v["ap"] == v["ap_pytorch"]                  # golden = PyTorch, checked
        cost = network_cost(load_config(explored / "variants" / v["name"] / "config.toml"))
        assert v["on_chip_kib"] == pytest.approx(cost.size_bytes / 1024, abs=1e-3)
        assert v["binary_ops"] == cost.binary_ops
        for name, e in v["devices"].items():
            assert {"fits", "lut", "bram", "fps", "cycles_per_frame", "clock_mhz",
                    "folding"} <= set(e)
            assert e["fps"] == pytest.approx(e["clock_mhz"] * 1e6 / e["cycles_per_frame"],
                                             abs=0.1)
            assert (explored / "variants" / v["name"] / f"folding-{name}.toml").is_file()
    w1, w2 = data["variants"]
    assert w2["on_chip_kib"] < w1["on_chip_kib"] and w2["axes"] == {"w_dup": 2}
    front = data["pareto"]["on_chip_kib"]
    assert "w2" in front                                   # the smallest is never dominated
    assert all(v["pareto"]["on_chip_kib"] == (v["name"] in front) for v in data["variants"])
    for f in ("explore.md", "index.html", "pareto_kib.png", "pareto_artix7-35t.png",
              "pareto_ecp5-25f.png", "explore-options.json"):
        assert (explored / f).is_file(), f
    md = (explored / "explore.md").read_text()
    assert "| w2 | conv2 2 |" in md and "## ecp5-25f" in md and "★" in md
    assert "pareto_ecp5-25f.png" in (explored / "index.html").read_text()


def test_rerun_skips_finished_variants(explored, tiny_cfg, monkeypatch, capsys):
    import dupnet.sw.train as train_mod
    ckpt = explored / "variants" / "w1" / "train" / "checkpoint.pt"
    result = explored / "variants" / "w1" / "result.json"
    before = (ckpt.stat().st_mtime_ns, result.stat().st_mtime_ns)
    calls = []
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: calls.append(a))
    # a device added on the rerun is estimated from the stored config: no training either
    assert main(["explore", str(tiny_cfg), "-o", str(explored), "--w-dup", "1,2", "--device",
                 "artix7-35t,ecp5-25f,ice40-up5k", *FAST[:-1]]) == 0
    err = capsys.readouterr().err
    assert err.count("finished earlier") == 2 and "skipped" in err
    assert calls == []
    assert (ckpt.stat().st_mtime_ns, result.stat().st_mtime_ns) == before
    data = json.loads((explored / "explore.json").read_text())
    assert all("ice40-up5k" in v["devices"] for v in data["variants"])


def test_other_training_options_in_the_same_folder_are_refused(explored, tiny_cfg, capsys):
    assert main(["explore", str(tiny_cfg), "-o", str(explored), "--w-dup", "1", *DEVICES,
                 "--epochs", "2", "--n-train", "16", "--n-test", "8", "--batch-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "was explored with epochs = 1" in err and "another -o" in err


def test_interrupted_variant_resumes_from_its_checkpoint(tiny_cfg, tmp_path, monkeypatch,
                                                         capsys):
    import dupnet.sw.train as train_mod
    real = train_mod.train
    seen = []

    def interrupt_in_epoch_2(*a, **k):
        seen.append(k.get("resume"))

        def on_step(epoch, step):
            if epoch == 1 and not seen[-1]:
                raise KeyboardInterrupt
        return real(*a, **k, on_step=on_step)
    monkeypatch.setattr(train_mod, "train", interrupt_in_epoch_2)
    argv = ["explore", str(tiny_cfg), "-o", str(tmp_path), "--w-dup", "2", *DEVICES[:1],
            "artix7-35t", "--epochs", "2", *FAST[2:]]
    assert main(argv) == 130                               # Ctrl-C in the second epoch
    from dupnet.sw.checkpoint import load_checkpoint
    assert load_checkpoint(tmp_path / "variants" / "w2" / "train")["epoch"] == 1
    assert not (tmp_path / "variants" / "w2" / "result.json").exists()
    assert main(argv) == 0
    assert seen == [False, True]                          # the rerun resumed the checkpoint
    assert load_checkpoint(tmp_path / "variants" / "w2" / "train")["epoch"] == 2


def test_plan_only_and_collect(tiny_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                 # relative paths: the plan makes them absolute
    (tmp_path / "tiny.toml").write_text(tiny_cfg.read_text())
    out = tmp_path / "cluster"
    assert _explore("tiny.toml", "cluster", "--plan") == 0
    cmds = capsys.readouterr().out.strip().splitlines()
    assert len(cmds) == 2 and all(c.startswith("dupnet explore ") for c in cmds)
    assert "--only w1" in cmds[0] and "--only w2" in cmds[1]
    assert f"{tmp_path / 'tiny.toml'} -o {out} " in cmds[0]
    monkeypatch.chdir("/")
    assert not (out / "variants").exists()                 # --plan trains nothing
    argv = shlex.split(cmds[1])
    assert main(argv[1:]) == 0                             # what the scheduler runs
    assert (out / "variants" / "w2" / "result.json").is_file()
    assert not (out / "explore.json").exists()             # --only does not collect
    capsys.readouterr()
    assert main(["explore", str(out), "--collect"]) == 0
    data = json.loads((out / "explore.json").read_text())
    assert [v["name"] for v in data["variants"]] == ["w2"] and data["pending"] == ["w1"]
    assert "| w2 |" in capsys.readouterr().out
    assert "Not finished yet: w1" in (out / "explore.md").read_text()


def test_jobs_run_variants_as_subprocesses(tiny_cfg, tmp_path, capsys):
    assert main(["explore", str(tiny_cfg), "-o", str(tmp_path), "--x-dup", "1,2", "--device",
                 "artix7-35t", "--jobs", "2", *FAST[:-1]]) == 0
    err = capsys.readouterr().err
    assert "x1: started" in err and "x2: done" in err
    data = json.loads((tmp_path / "explore.json").read_text())
    assert sorted(v["name"] for v in data["variants"]) == ["x1", "x2"]
    assert (tmp_path / "variants" / "x1" / "explore.log").is_file()

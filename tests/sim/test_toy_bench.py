"""The stream agents, scoreboard and whole-design bench on a small reference design with the
accelerator's ports (``dupnet.sim.toy``): they must pass on a correct design, under stalls and
a mid-frame reset, and fail (with the location) on a wrong one."""
from __future__ import annotations

import numpy as np
import pytest

from dupnet.sim.network import StreamCheck, run_design
from dupnet.hw.stream_layout import WordLayout
from dupnet.sim.toy import ToySpec, toy_reference, toy_verilog

pytestmark = pytest.mark.sim

SPEC = ToySpec(height=5, width=7, channels=3, out_channels=6, pe=2, seed=4)


def _run(spec, golden_spec=SPEC, frames=3, **kw):
    rng = np.random.default_rng(kw.pop("img_seed", 0))
    imgs = rng.integers(0, 256, size=(frames, spec.height, spec.width, spec.channels))
    exp = toy_reference(golden_spec, imgs)
    lay = WordLayout(spec.pe, spec.acc_bits, signed=True, has_last=True)
    return run_design(toy_verilog(spec), "toy_top", imgs, StreamCheck("toy", "o", lay, exp),
                      design_hash=spec.design_hash(), **kw)


def test_toy_back_to_back_exact_timing(sim_row):
    r = _run(SPEC)
    assert r.ok, r.describe_failure()
    sb = r.scoreboards[0]
    assert sb["words"] == 3 * SPEC.cycles_per_frame and sb["compared"] == 3 * 35 * 6
    t = r.timing
    assert t.frame_cycles == SPEC.cycles_per_frame          # one word per cycle
    assert t.initiation_interval == SPEC.cycles_per_frame
    assert t.latency == 1
    sim_row(case="toy frames", result="passed", words=sb["words"],
            **{"cycles/frame": t.frame_cycles, "model": SPEC.cycles_per_frame,
               "latency": t.latency, "model_lat": 1, "cyc/s": int(r.cycles_per_second)})


@pytest.mark.parametrize("stall,burst,seed", [(0.3, 1, 1), (0.6, 5, 2)])
def test_toy_random_stalls(stall, burst, seed):
    r = _run(SPEC, stall_in=stall, stall_out=stall, burst=burst, seed=seed)
    assert r.ok, r.describe_failure()
    assert r.timing.total_cycles > 3 * SPEC.cycles_per_frame   # the stalls did slow it
    again = _run(SPEC, stall_in=stall, stall_out=stall, burst=burst, seed=seed)
    assert again.timing.to_dict() == r.timing.to_dict()        # seeded: reproducible


def test_toy_reset_mid_frame_then_clean_frame():
    r = _run(SPEC, scenario="reset", stall_in=0.2, stall_out=0.2, seed=3)
    assert r.ok, r.describe_failure()
    assert r.report["reset_cycle"] is not None and r.report["frames"] == 2


def test_toy_corrupted_weight_is_caught_with_location(sim_row):
    bad = ToySpec(height=5, width=7, channels=3, out_channels=6, pe=2, seed=4, corrupt=(5, 2))
    r = _run(bad, frames=2)
    assert not r.ok
    m = r.first_mismatch
    assert (m["layer"], m["frame"], m["y"], m["x"], m["channel"]) == ("toy", 0, 0, 0, 5)
    assert m["expected"] != m["actual"]
    assert "channel 5" in r.describe_failure()
    sim_row(case="toy corrupted weight", result="caught", words=r.scoreboards[0]["words"])


def test_toy_waves_written():
    r = _run(SPEC, frames=1, waves=True)
    assert r.ok and r.waves is not None and r.waves.stat().st_size > 0

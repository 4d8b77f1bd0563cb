"""First-output latency and cycles/frame: the Amaranth simulation against the analytic model.

The model's ``latency_cycles`` walks the first frame pixel by pixel through each layer kind's
``latency`` (:func:`dupnet.hw.pipeline.latency_walk`, docs/hardware.md section 4). Each design
of a matrix (k = 1 and 3, stride-1 and stride-2 pools, nf > 1 and sf > 1, bottlenecks early,
late and balanced, one-row / one-column / two-row maps, 1, 2, 4 and 5 pixels per beat, x_dup,
w_dup, the gated datapath, no pre-add) streams one frame without stalls; the cycle at which each
layer's first output pixel leaves the layer, counted from the transfer of the first input beat,
must equal the walk's exactly, and so the first-output latency. Planted faults (a term dropped,
the window waiting a pixel less, the pools' bursts averaged, a layer that never waits for its
own previous pixel) must each be caught by the matrix. ``check_timing`` (the Verilator benches'
verdict) is held to exact cycles/frame and 1 % latency on timings measured here.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

import dupnet.hw.kinds as kinds
import dupnet.hw.pipeline as pipeline
from dupnet.hw.folding import Folding
from dupnet.hw.pipeline import input_ticks, latency_walk, pipeline_model
from dupnet.hw.stream_layout import image_beats
from dupnet.hw.stream_sim import put_all, run_sim
from dupnet.hw.top import DupNetAccelerator
from dupnet.sim.design import check_timing
from dupnet.sim.network import Timing
from dupnet.sw.config import network_geometry, parse_config
from dupnet.sw.random_artifact import random_artifact

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

HEAD = {"classes": 1, "anchors": [[1.0, 1.0]]}


def _conv(name, k, c, act=2, **dup):
    d = {"kind": "conv", "name": name, "k": k, "out_channels": c, **dup}
    if act is not None:
        d["act_bits"] = act
    return d


def _pool(name, stride):
    return {"kind": "maxpool", "name": name, "stride": stride}


def _config(name, h, w, c, *layers):
    return parse_config({"name": name, "input": {"height": h, "width": w, "channels": c,
                                                  "bits": 8}, "head": HEAD,
                         "layers": list(layers)})


def _dup_chain():
    return _config("dup-chain", 6, 6, 3, _conv("conv1", 3, 4, x_dup=2), _pool("pool1", 2),
                   _conv("conv2", 3, 8, w_dup=2), _pool("pool2", 1),
                   _conv("conv3", 3, 4, act=3, w_dup=4), _conv("conv4", 1, 6, None, x_dup=2))


def _chain12(head_k, conv2_out):
    return _config("chain12", 12, 12, 1, _conv("conv1", 3, 2), _pool("pool1", 2),
                   _conv("conv2", 3, conv2_out), _pool("pool2", 1),
                   _conv("conv3", head_k, 6, None))


# id -> (config factory, folding, pixels per beat)
MATRIX = {
    # x_dup, w_dup 2/4, both pools, k=1 head, nf > 1 and sf > 1, the unpack adapter
    "dup-chain-ppb4": (_dup_chain, Folding({"conv1": (2, 3), "conv2": (4, 2), "conv3": (2, 8),
                                            "conv4": (3, 4)}), 4),
    # three convs balanced at 1296 cycles/frame: conv2 behind a stride-2 pool's bursts
    "balanced-12x12": (lambda: _chain12(3, 2),
                       Folding({"conv1": (2, 1), "conv2": (1, 1), "conv3": (3, 1)}), 1),
    # a k=1 bottleneck behind a stride-1 pool (the dupnet-demo situation)
    "k1-bottleneck-12x12": (lambda: _chain12(1, 8),
                            Folding({"conv1": (2, 1), "conv2": (4, 1), "conv3": (1, 1)}), 1),
    # odd 5x7 map, stride-1 pool, k=1 hidden layer with w_dup = 3; gated, no pre-add, P = 5
    "odd-gated-nopreadd-ppb5": (
        lambda: _config("odd", 5, 7, 1, _conv("conv1", 3, 3, act=1), _pool("pool1", 1),
                        _conv("conv2", 1, 6, act=3, w_dup=3), _conv("conv3", 3, 6, None)),
        Folding({"conv1": (3, 1), "conv2": (3, 3), "conv3": (2, 6)}, preadd=False,
                arith="gated"), 5),
    # PE = SIMD = 1: sf = 18, nf = 4, every layer at its own (slow) rate
    "serial-4x4": (
        lambda: _config("serial", 4, 4, 2, _conv("conv1", 3, 4, w_dup=2), _pool("pool1", 2),
                        _conv("conv2", 1, 6, None, w_dup=2)),
        Folding({"conv1": (1, 1), "conv2": (1, 1)}), 1),
    # two stride-2 pools in a row, gated datapath
    "pool-pool-gated": (
        lambda: _config("pp", 8, 8, 3, _conv("conv1", 3, 4), _pool("pool1", 2),
                        _pool("pool2", 2), _conv("conv2", 3, 6, None)),
        Folding({"conv1": (4, 3), "conv2": (3, 4)}, arith="gated"), 1),
    # k=1 first layer at one pixel per cycle, 2 pixels per beat
    "k1-first-ppb2": (
        lambda: _config("k1f", 4, 6, 2, _conv("conv1", 1, 4), _pool("pool1", 2),
                        _conv("conv2", 1, 6, None)),
        Folding({"conv1": (4, 2), "conv2": (6, 4)}), 2),
    # one-column map: the stride-1 pool takes an input every second cycle from a fast conv
    "one-column": (
        lambda: _config("col", 8, 1, 1, _conv("c1", 1, 2), _pool("p1", 1), _conv("c2", 1, 4),
                        _conv("c3", 3, 6, None)),
        Folding({"c1": (2, 1), "c2": (4, 2), "c3": (6, 4)}), 1),
    # one-row map: every pool output is flushed after the frame's last input
    "one-row": (
        lambda: _config("row", 1, 8, 1, _conv("c1", 3, 2), _pool("p1", 1),
                        _conv("c2", 3, 6, None)),
        Folding({"c1": (1, 1), "c2": (1, 1)}), 1),
    # a row of the window per beat (KP = k) behind both pools, one k=3 layer at whole pixels
    "row-per-beat": (
        _dup_chain,
        Folding({"conv1": (2, 6), "conv2": (4, 2), "conv3": (2, 8), "conv4": (3, 4)},
                kp={"conv1": 3, "conv2": 3, "conv3": 3}), 1),
    # two-row map: the k=3 layer behind the stride-1 pool needs the flushed bottom row
    "two-rows": (
        lambda: _config("rows2", 2, 5, 1, _conv("c1", 3, 2), _pool("p1", 1),
                        _conv("c2", 3, 6, None)),
        Folding({"c1": (2, 1), "c2": (3, 2)}), 1),
}


def _images(cfg, frames):
    return np.random.default_rng(0).integers(
        0, 256, size=(frames, cfg.input_height, cfg.input_width, cfg.input_channels))


def _design(case):
    make, folding, ppb = MATRIX[case]
    art = random_artifact(make(), seed=1)
    return art, folding, ppb


@functools.lru_cache(maxsize=None)
def measured_first_outputs(case: str) -> tuple[int, ...]:
    """Per layer, the cycle at which its first output pixel leaves it (its last beat; the last
    layer: its first beat), counted from the first input beat's transfer; one frame, no
    stalls."""
    art, folding, ppb = _design(case)
    dut = DupNetAccelerator(art, folding, pixels_per_beat=ppb)
    outs = [engine.stages[-1][1].o for _, engine in dut.engines]
    folded = kinds.fold_network(art.config, folding)
    beats = [f.geometry.out_shape[2] // f.out_lanes for f in folded[:-1]] + [1]
    seen = [0] * len(outs)
    first: list[int | None] = [None] * len(outs)
    start, sent = [], []

    async def producer(ctx):
        await put_all(ctx, dut.i, image_beats(_images(art.config, 1), ppb))
        sent.append(True)

    async def monitor(ctx):
        ctx.set(dut.o.ready, 1)
        signals = [dut.i.valid, dut.i.ready] + [s for o in outs for s in (o.valid, o.ready)]
        cycle = 0
        async for _, _, *v in ctx.tick().sample(*signals):
            if not start and v[0] and v[1]:
                start.append(cycle)
            for n in range(len(outs)):
                if first[n] is None and v[2 + 2 * n] and v[3 + 2 * n]:
                    seen[n] += 1
                    if seen[n] == beats[n]:
                        first[n] = cycle - start[0]
            if first[-1] is not None and sent:     # (the producer ends before the simulation)
                return
            cycle += 1

    run_sim(dut, [producer], [monitor], max_cycles=50_000)
    return tuple(first)


def model_first_outputs(case: str) -> tuple[int, ...]:
    """The same figures from the analytic latency walk."""
    art, folding, ppb = _design(case)
    cfg = art.config
    pm = pipeline_model(art, folding, ppb)
    walk = latency_walk(pm.layers, network_geometry(cfg),
                        input_ticks(cfg.input_height * cfg.input_width, ppb))
    assert pm.latency_cycles == walk[-1][0]
    return tuple(int(t[0]) for t in walk)


def _names(case):
    art, _, _ = _design(case)
    return [g.name for g in network_geometry(art.config)]


@pytest.mark.parametrize("case", list(MATRIX))
def test_first_output_latency_is_exact(case):
    measured, model = measured_first_outputs(case), model_first_outputs(case)
    table = ", ".join(f"{n} {m} vs {a}" for n, m, a in zip(_names(case), measured, model))
    assert measured == model, f"{case}: first output measured vs model per layer: {table}"


def _shift_one_pixel(orig):
    """The window waits for one input pixel less (``pad*W + pad`` before the first output)."""
    def latency(self, model, g, ticks):
        return orig(self, model, g, np.concatenate([ticks[:1], ticks[:-1]]))
    return latency


def _average_bursts(orig):
    """A stride-2 pool's outputs evenly spaced after its first, at the average interval of its
    input (four input pixels per output), not in bursts (the former model's assumption)."""
    def latency(self, model, g, ticks):
        out = orig(self, model, g, ticks)
        if g.stride != 2:
            return out
        per_output = 4 * (ticks[-1] - ticks[0]) / (len(ticks) - 1)
        return out[0] + np.round(np.arange(len(out)) * per_output).astype(np.int64)
    return latency


class _NumpyWithoutOwnRate:
    """numpy for the kinds module, except that the running maximum (a pixel waits for the
    previous one) is the identity: every layer follows its input only."""
    maximum = SimpleNamespace(accumulate=lambda a: a)

    def __getattr__(self, name):
        return getattr(np, name)


FAULTS = {
    "MVTU pipeline depth - 1": lambda mp: mp.setattr(kinds, "PIPELINE_DEPTH",
                                                     kinds.PIPELINE_DEPTH - 1),
    "window latency - 1": lambda mp: mp.setattr(kinds, "WINDOW_LATENCY",
                                                kinds.WINDOW_LATENCY - 1),
    "no gather register": lambda mp: mp.setattr(pipeline, "GATHER_LATENCY", 0),
    "no pool register": lambda mp: mp.setattr(kinds, "POOL_LATENCY", 0),
    "no unpack register": lambda mp: mp.setattr(pipeline, "UNPACK_LATENCY", 0),
    "window waits a pixel less": lambda mp: mp.setattr(
        kinds.ConvKind, "latency", _shift_one_pixel(kinds.ConvKind.latency)),
    "pool bursts averaged": lambda mp: mp.setattr(
        kinds.MaxPoolKind, "latency", _average_bursts(kinds.MaxPoolKind.latency)),
    "no layer waits for its own rate": lambda mp: mp.setattr(kinds, "np",
                                                             _NumpyWithoutOwnRate()),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_planted_fault_is_caught(fault, monkeypatch):
    measured = {case: measured_first_outputs(case) for case in MATRIX}
    FAULTS[fault](monkeypatch)
    wrong = [case for case in MATRIX if model_first_outputs(case) != measured[case]]
    assert wrong, f"planted fault {fault!r}: the model still matches every design"


def _timing(case, frames=3) -> Timing:
    """A stall-free run of ``frames`` frames back to back, stamped like the Verilator benches
    (each frame's first input beat, first and last output word)."""
    art, folding, ppb = _design(case)
    cfg = art.config
    dut = DupNetAccelerator(art, folding, pixels_per_beat=ppb)
    beats_per_frame = cfg.input_height * cfg.input_width // ppb
    last_bit = len(dut.o.payload) - 1
    first_in, first_out, last_out = [], [], []
    cycle = 0

    async def producer(ctx):
        await put_all(ctx, dut.i, image_beats(_images(cfg, frames), ppb))

    async def monitor(ctx):
        nonlocal cycle
        ctx.set(dut.o.ready, 1)
        beats, in_frame = 0, False
        async for _, _, iv, ir, ov, payload in ctx.tick().sample(dut.i.valid, dut.i.ready,
                                                                 dut.o.valid, dut.o.payload):
            if iv and ir:
                if beats % beats_per_frame == 0:
                    first_in.append(cycle)
                beats += 1
            if ov:
                if not in_frame:
                    first_out.append(cycle)
                    in_frame = True
                if (payload >> last_bit) & 1:
                    last_out.append(cycle)
                    in_frame = False
                    if len(last_out) == frames:
                        return
            cycle += 1

    run_sim(dut, [producer], [monitor], max_cycles=100_000)
    return Timing(first_in, first_out, last_out, cycle)


def test_check_timing_is_exact_on_frames_and_one_percent_on_latency():
    case = "serial-4x4"
    art, folding, ppb = _design(case)
    model = pipeline_model(art, folding, ppb).to_json()
    t = _timing(case)
    assert (t.frame_cycles, t.initiation_interval, t.latency) == \
        (model["cycles_per_frame"], model["cycles_per_frame"], model["latency_cycles"])
    assert check_timing(t, model).ok, str(check_timing(t, model))
    lat = t.latency
    for cycles_per_frame, latency_cycles, ok in [
            (model["cycles_per_frame"] - 1, lat, False),       # one cycle/frame over the model
            (model["cycles_per_frame"] + 1, lat, False),       # below the model's lower bound
            (model["cycles_per_frame"], lat + lat // 50, False),   # 2 % off, either way
            (model["cycles_per_frame"], lat - lat // 50, False),
            (model["cycles_per_frame"], lat + lat // 200, True)]:  # 0.5 %: within 1 %
        tc = check_timing(t, dict(model, cycles_per_frame=cycles_per_frame,
                                  latency_cycles=latency_cycles))
        assert tc.ok == ok, (cycles_per_frame, latency_cycles, str(tc))


def test_latency_through_an_unpack_that_stalls_its_mvtu():
    """Found by `dupnet regress --seed 4242 --random 12` (seed 4250): a fast MVTU (PE 4,
    sf 1) feeds a 1-lane window through an unpack adapter, which takes the pixel's second
    beat only after the first one's four lanes have gone (it stalls the MVTU: conv2's own
    output is late against the walk, a lower bound there); the first output of the network
    is exact (the adapter step counts the pixel's beats from its first word)."""
    cfg = _config("unpack-stall", 1, 7, 1, _conv("conv1", 3, 5, act=1), _pool("pool1", 1),
                  _conv("conv2", 1, 8, act=4, w_dup=5), _conv("head", 3, 6, None, w_dup=8))
    MATRIX["unpack-stall"] = (lambda: cfg, Folding({"conv1": (5, 1), "conv2": (4, 5),
                                                    "head": (6, 1)}, arith="gated"), 1)
    try:
        measured, model = measured_first_outputs("unpack-stall"), model_first_outputs(
            "unpack-stall")
    finally:
        del MATRIX["unpack-stall"]
    assert measured[-1] == model[-1], (measured, model)
    assert measured[2] > model[2]          # conv2 itself is stalled by the adapter

"""Logic-circuit (LUT) policies as RTL (qsearch/hw/rtl/lut_generate.py): verilator against the integer
engine (IntLUTModel.run_int) at several pipeline depths, yosys synthesis for the XC7A15T, the open flow's
steps end to end (and `qsearch hw --flow open` on a LUT bundle), `qsearch export --format verilog`'s folder,
and FINN's refusal. All tools real.

The policy is small (3 features x 6 thermometer bits, LUT layers 24-14 of 3 inputs, 2 actions of 7
tables each) with random wiring, truth tables and head, so each design takes seconds in the tools.
"""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from commands import refused, run
from qsearch import bundle as bundles
from qsearch.config import PolicyConfig, QuantBits, TrainConfig
from qsearch.errors import QsearchError
from qsearch.hw import flows
from qsearch.hw.config import HwConfig
from qsearch.hw.policies import HwPolicy, random_actor
from qsearch.hw.qonnx_export import export_actor
from qsearch.hw.rtl import arch as arches
from qsearch.hw.rtl import simulate as sims
from qsearch.hw.rtl import vectors
from qsearch.hw.rtl.generate import generate
from qsearch.hw.rtl.yosys import synthesize
from qsearch.hw.sweep import SweepConfig, estimate_row, integer_models
from qsearch.hw import sweep
from qsearch.obs_norm import ObsNorm
from qsearch.quant import lut_integer

B = 6


@pytest.fixture(scope="module")
def actor():
    cfg = PolicyConfig(kind="lut", thermometer_bits=B, luts=(24, 14), lut_inputs=3, mapping="random",
                       quant=QuantBits(bits_out=6))
    return random_actor(cfg, 3, 2, seed=1)


@pytest.fixture(scope="module")
def model(actor):
    return lut_integer.extract(actor, ObsNorm.identity(3))


def test_the_parts_and_their_registers(model):
    """Thermometer, two layers, the 6-bit counters, one adder level (7 bits: two counters), the head."""
    assert [name for name, _ in arches.lut_parts(model)] == ["thermometer", "layer0", "layer1", "count", "sum0", "head"]
    assert [arches.lut_cuts(model, d) for d in (0, 1, 2, 5)] == [(), (2,), (1, 3), (0, 1, 2, 3, 4)]
    assert [arches.stage_levels(model, d) for d in (0, 1, 2, 5)] == [6, 3, 2, 1]
    assert arches.latency(model, arches.pipelined(2)) == 4 and arches.interval(model, arches.pipelined(2)) == 1
    wide = dataclasses.replace(model, group=200)  # 34 counters, 6 adder levels, an 8-bit count: 12 levels
    assert arches.stage_levels(wide, 0) == 12 and arches.choose_depth(wide, 100.0) == arches.pipelined(1)  # at most 8


@pytest.mark.parametrize("depth", [0, 2, 5])
def test_rtl_equals_the_engine(tmp_path, model, depth):
    d = generate(model, arches.pipelined(depth))
    result = sims.simulate(model, d, tmp_path)
    assert result.passed and result.checked == 1000 and result.latency == depth + 2, result.line
    x = vectors.inputs(model, 1000)
    assert all({0, B} <= set(x[:, f].tolist()) for f in range(3)) and x.min() == 0 and x.max() == B
    assert len(np.unique(vectors.expected(model, x), axis=0)) > 20  # not a near-constant policy


def test_a_different_model_is_caught(tmp_path, model):
    """RTL from the model, expected outputs from the model with one reachable table entry flipped."""
    other = lut_integer.IntLUTModel(**{**vars(model), "layers": [lut_integer.LUTLayerInts(l.connections, l.tables.copy())
                                                                 for l in model.layers]})
    x = vectors.inputs(model, 1000)
    address = (model.run_int(x)[1][:, model.layers[1].connections[0]] << np.arange(3)).sum(-1)
    other.layers[1].tables[0, address[0]] ^= 1
    assert not np.array_equal(other.run_int(x)[-1], model.run_int(x)[-1])
    d = generate(model, arches.pipelined(1))
    sims.write_bench(other, d, tmp_path)
    result = sims.run_rtl(tmp_path)
    assert not result.passed and result.errors > 0, result.line


def test_yosys_synthesis_counts_and_the_netlist_equals_the_engine(tmp_path, model):
    r = synthesize(model, arches.pipelined(2), folder=tmp_path)
    assert r.arch == "pipelined depth 2" and (r.latency_cycles, r.interval_cycles) == (4, 1)
    assert r.lut > 0 and r.ff > 0 and r.lut_levels > 0 and r.dsp == 0 and r.bram18 == 0 and r.fits
    for line in (r.rtl_check, r.netlist_check):
        assert line.startswith("QPOLICY_TB PASS checked=1000 errors=0 timing_errors=0 latency=4"), line
    assert r.tool_cpu_s["yosys"] > 0


def test_the_open_flow_on_a_lut_policy(actor, model):
    """integer_models -> the open flow's steps (what one Ray task runs) -> a row, and the steps' refusals."""
    assert isinstance(integer_models([HwPolicy("lut", actor)], None)["lut"], lut_integer.IntLUTModel)
    cfg = HwConfig(targets=(1e6,))
    row = estimate_row("lut", model, 1e6, cfg, "open")
    chosen = arches.choose(model, 1e6, cfg.clock_ns)
    assert row.arch == chosen.describe() == "pipelined depth 0"  # 6 levels fit a 10 ns clock
    assert row.fits and row.lut > 0 and row.ff > 0 and row.lut_levels > 0 and row.latency_cycles == 2
    assert row.actions_per_s == pytest.approx(1e8) and row.note.startswith("QPOLICY_TB PASS")
    assert row.power_w_fit is None and row.source == "yosys (before place-and-route)"
    assert arches.choose(model, 1e6, 3.0) == arches.pipelined(2)  # 3 ns: 2 levels a stage
    prepared = flows.prepare(model, cfg, "open")
    with pytest.raises(QsearchError, match="has no folding"):
        flows.estimate(prepared, cfg.with_folding({"layer0": {"PE": 1, "SIMD": 1}}), "open")
    with pytest.raises(QsearchError, match="above one per clock"):
        flows.estimate(prepared, cfg.for_target(2e8), "open")
    with pytest.raises(QsearchError, match="allows ~0 LUT levels"):
        arches.choose_depth(model, 1.5)
    with pytest.raises(QsearchError, match="built pipelined, not parallel"):
        generate(model, arches.PARALLEL)
    with pytest.raises(QsearchError, match="0 to 5 registers"):
        generate(model, arches.pipelined(6))


@pytest.fixture(scope="module")
def lut_bundle(actor, tmp_path_factory):
    """A bundle folder of the policy, with a normalization that is not the identity."""
    rng = np.random.default_rng(2)
    norm = ObsNorm(rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32))
    b = bundles.Bundle(TrainConfig(env_id="Hopper-v5", policy=actor.cfg), actor, norm, np.ones(2, np.float32),
                       np.zeros(2, np.float32), lut_integer.extract(actor, norm))
    return bundles.write(b, tmp_path_factory.mktemp("lut") / "bundle")


def test_export_verilog(capsys, tmp_path, model, lut_bundle):
    out = tmp_path / "v"
    code, stdout, err = run(capsys, "export", lut_bundle, "--format", "verilog", "--out", out)
    assert code == 0 and "fully parallel, pipelined depth 0" in stdout, err
    readme = (out / "README.md").read_text()
    assert "thermometer LEVEL" in readme and repr(float(model.thresholds[0])) in readme
    result = sims.run_rtl(out)
    assert result.passed and result.checked == 1000, result.line


def test_qsearch_hw_open_flow_on_a_lut_bundle(capsys, tmp_path, lut_bundle):
    out = tmp_path / "hw"
    code, stdout, err = run(capsys, "hw", lut_bundle, "--flow", "open", "--targets", "1e6", "--out", out)
    assert code == 0, err
    (row,) = csv.DictReader((out / "hw.csv").open())
    assert (row["arch"], row["latency_cycles"], row["fits"]) == ("pipelined depth 0", "2", "True")
    assert float(row["lut"]) > 0 and float(row["ff"]) > 0 and int(row["lut_levels"]) > 0
    assert "no FINN form" in refused(capsys, tmp_path / "finn", "hw", lut_bundle)  # FINN's flow is the default


def test_finn_refuses_a_lut_policy(tmp_path, actor):
    with pytest.raises(QsearchError, match=r"^a logic-circuit \(LUT\) policy has no FINN form .*use --flow open$"):
        export_actor(actor, tmp_path / "policy.onnx")
    with pytest.raises(QsearchError, match="no FINN form"):
        sweep.run([HwPolicy("lut", actor)], SweepConfig(), tmp_path / "work", flow="finn")
    with pytest.raises(QsearchError, match="is not padded"):
        integer_models([HwPolicy("lut", actor)], 32)
    assert not any(p.suffix == ".onnx" for p in tmp_path.rglob("*"))

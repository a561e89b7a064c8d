"""qsearch's own RTL (qsearch/hw/rtl): generated, simulated in verilator, synthesized with yosys, for real.

Designs are small (a few channels) so that yosys and verilator take seconds; one module-scoped
synthesis per architecture. yosys' compiled WebAssembly is cached in XDG_CACHE_HOME (default
~/.cache), so only the first run on a machine pays its start-up.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from policies import warmed_actor
from qsearch.config import QuantBits
from qsearch.errors import QsearchError
from qsearch.hw.device import device
from qsearch.hw.rtl import arch as arches
from qsearch.hw.rtl import simulate as sims
from qsearch.hw.rtl import testbench as tbs
from qsearch.hw.rtl import vectors
from qsearch.hw.rtl.arch import PARALLEL, folded
from qsearch.hw.rtl.generate import generate
from qsearch.hw.rtl.yosys import overused, report, synthesize
from qsearch.quant import integer
from qsearch.quant.integer import IntegerModel, IntLayer
from qsearch.obs_norm import ObsNorm


def trained_model(bits: QuantBits, obs: int, act: int, width: int, depth: int) -> IntegerModel:
    actor = warmed_actor(bits, obs_dim=obs, act_dim=act, width=width, depth=depth)
    return integer.extract(actor, ObsNorm(np.zeros(obs, np.float32), np.ones(obs, np.float32)))


def one_layer_model(rng) -> IntegerModel:
    """A 1-layer policy: 5 signed 5-bit inputs, 4-bit weights, 3 signed 3-bit outputs with
    increasing thresholds, a zero weight column and a constant (all-zero) output row."""
    w = rng.integers(-8, 8, (3, 5)).astype(np.int8)
    w[:, 2] = 0
    w[2] = 0
    t = np.sort(rng.integers(-150, 150, 7)).astype(np.int64)
    layer = IntLayer(w, rng.integers(-20, 20, 3).astype(np.int64), t, out_bits=3, out_signed=True,
                     in_bits=5, in_signed=True, weight_bits=4, acc_bits=12)
    return IntegerModel(ObsNorm(np.zeros(5, np.float32), np.ones(5, np.float32)), np.float32(0.1), 5,
                        [layer], np.zeros(8, np.int16), 0.1)


@pytest.fixture(scope="module")
def model3():
    """3 layers, widths that are not powers of two: 7 -> 6 -> 6 -> 3, 5-bit input, 3-bit core, 8-bit out."""
    return trained_model(QuantBits(5, 3, 3, 8), 7, 3, width=6, depth=2)


@pytest.fixture(scope="module")
def parallel_run(model3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("parallel")
    return synthesize(model3, PARALLEL, folder=folder), folder


@pytest.fixture(scope="module")
def folded_run(model3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("folded")
    return synthesize(model3, folded([(3, 7), (2, 3), (3, 2)]), folder=folder), folder


@pytest.mark.parametrize("run", ["parallel_run", "folded_run"])
def test_rtl_and_netlist_equal_the_engine(request, run):
    r, folder = request.getfixturevalue(run)
    for line in (r.rtl_check, r.netlist_check):
        assert line.startswith("QPOLICY_TB PASS checked=1000 errors=0 timing_errors=0"), line
    assert r.lut > 0 and r.ff > 0 and r.fits
    assert (folder / "netlist.v").is_file() and "FDRE" in (folder / "netlist.v").read_text()
    text = report(r)
    assert "before place-and-route" in text and "timing not closed" in text and "power: not estimated" in text


def test_cycle_counts(parallel_run, folded_run, model3):
    par, _ = parallel_run
    assert (par.latency_cycles, par.interval_cycles) == (1 + 2 + 2 + 3, 1)  # input; 3-bit, 3-bit, 8-bit layers
    fold, _ = folded_run
    # per layer NF*SF + 2*bits + 2 busy, +1 to hand on: 2*1 + 6 + 2, 3*2 + 6 + 2, 1*3 + 16 + 2
    assert fold.latency_cycles == 11 + 15 + 22 and fold.interval_cycles == 21 + 2
    assert fold.actions_per_s == pytest.approx(1e9 / (10 * 23))


def test_a_wrong_output_is_caught(parallel_run, model3):
    """The testbench fails on a single wrong expected value (the binary reads the vectors at run time)."""
    _, folder = parallel_run
    good = (folder / tbs.OUT_HEX).read_text()
    lines = good.splitlines()
    lines[500] = format(int(lines[500], 16) ^ 1, f"0{len(lines[500])}x")
    (folder / tbs.OUT_HEX).write_text("\n".join(lines) + "\n")
    try:
        out = subprocess.run([str(folder.resolve() / "obj_dir" / "sim")], cwd=folder, capture_output=True, text=True)
        result = sims.parse(out.stdout)
    finally:
        (folder / tbs.OUT_HEX).write_text(good)
    assert not result.passed and result.errors == 1


def test_vectors_reach_extremes_and_threshold_edges(model3):
    x = vectors.inputs(model3, 1000)
    assert x.shape == (1000, 7) and x.min() == -16 and x.max() == 15
    layer = model3.layers[0]
    acc = x @ layer.weight.T.astype(np.int64) + layer.bias
    on_edge = np.isin(acc, layer.thresholds) | np.isin(acc + 1, layer.thresholds)
    assert on_edge.any(axis=1).sum() >= 100


@pytest.mark.parametrize("arch", [PARALLEL, folded([(1, 5)])], ids=["parallel", "folded"])
def test_one_layer_rtl(tmp_path, arch):
    model = one_layer_model(np.random.default_rng(3))
    result = sims.simulate(model, generate(model, arch), tmp_path)
    assert result.passed and result.checked == 1000, result.line


def test_two_bit_core_folded_rtl(tmp_path):
    """The paper's Hopper bits (6-bit input, 2-bit core) with a SIMD of 1 and non-power-of-two sizes.
    Weight, bias and threshold ROMs are .hex files read with $readmemh (no inline initialisation)."""
    model = trained_model(QuantBits(6, 2, 2, 8), 5, 3, width=5, depth=1)
    d = generate(model, folded([(5, 1), (1, 5)]))
    result = sims.simulate(model, d, tmp_path)
    assert result.passed, result.line
    assert "qpolicy_layer0_wrom.hex" in d.roms and "initial begin" not in d.verilog
    assert d.verilog.count("$readmemh") == len(d.roms) and all((tmp_path / f).is_file() for f in d.roms)
    words = (tmp_path / "qpolicy_layer0_wrom.hex").read_text().split()
    assert len(words) == 5 and all(len(w) == 5 * 2 // 4 + 1 for w in words)  # NF*SF words of PE*SIMD 2-bit weights


def test_fit_check(parallel_run):
    r, folder = parallel_run
    from qsearch.hw.rtl.yosys import resources

    res = resources(folder)
    assert overused(res, device("xc7a12tcpg238-1")) == []
    assert overused({**res, "lut": 8_001}, device("xc7a12tcpg238-1")) == ["LUT"]
    assert overused({**res, "dsp": 46, "bram18": 51}, device("xc7a15tfgg484-1")) == ["BRAM18", "DSP"]


def test_chooser(model3):
    assert arches.choose(model3, 1e8, 10.0) == PARALLEL
    a = arches.choose(model3, 1e5, 10.0)  # 1000 cycles allowed: the most folded design
    assert a == folded([(1, 1), (1, 1), (1, 1)])
    a = arches.choose(model3, 2e6, 10.0)  # 50 cycles
    assert a.kind == "folded" and arches.interval(model3, a) <= 50
    with pytest.raises(QsearchError, match="above one per clock"):
        arches.choose(model3, 2e8, 10.0)


def test_refusals(model3, tmp_path):
    with pytest.raises(QsearchError, match="PE 4 does not divide its 6 outputs"):
        synthesize(model3, folded([(4, 7), (2, 3), (3, 2)]), folder=tmp_path / "a")
    with pytest.raises(QsearchError, match="unknown FPGA part"):
        synthesize(model3, PARALLEL, part="xcvu9p-flga2104-2-e", folder=tmp_path / "b")
    with pytest.raises(QsearchError, match="no integer model"):
        synthesize(None, PARALLEL, folder=tmp_path / "c")
    assert not any(tmp_path.iterdir())  # refused before anything was written


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "qsearch.cli", *args], capture_output=True, text=True)


def test_export_verilog(tmp_path, rng):
    from test_bundle import make_bundle
    from qsearch import bundle as bundles

    b = bundles.write(make_bundle(rng), tmp_path / "bundle")
    done = run_cli("export", str(b), "--format", "verilog", "--out", str(tmp_path / "v"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "v"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "qpolicy.v", "qpolicy_tb.v", "vectors_in.hex", "vectors_out.hex"])
    assert "Vivado" in (out / "README.md").read_text()
    result = sims.run_rtl(out)
    assert result.passed and result.checked == 1000, result.line


def test_export_refuses_an_fp32_policy(tmp_path, rng):
    from test_bundle import make_bundle
    from qsearch import bundle as bundles

    b = bundles.write(make_bundle(rng, quantized=False), tmp_path / "bundle")
    done = run_cli("export", str(b), "--format", "verilog", "--out", str(tmp_path / "v"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "without an integer model" in done.stderr and not (tmp_path / "v").exists()

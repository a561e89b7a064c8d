"""FINN's estimate flow (real finn-plus) as named steps on small policies, the choice of target, refusals."""
import collections
import json
import py_compile
import re

import numpy as np
import pytest

from qsearch.config import PolicyConfig, QuantBits
from qsearch.errors import QsearchError
from qsearch.hw import finn_steps, flows, sweep
from qsearch.hw.build_folder import write_build_folder
from qsearch.hw.config import HwConfig
from qsearch.hw.policies import observations, random_actor
from qsearch.hw.qonnx_export import export_actor
from qsearch.hw.step_registry import STEPS
from qsearch.hw.vivado import synthesize, vivado_home
from policies import make_bundle

CFG = HwConfig()
A15T = CFG.device


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 6-bit-input, 2-bit-core 11-32-32-3 policy: its bundle, QONNX bytes and prepared FINN dataflow."""
    b = make_bundle(np.random.default_rng(0))
    d = tmp_path_factory.mktemp("small")
    qonnx = export_actor(b.actor, d / "p.onnx").read_bytes()
    finn_steps.setup(d / "finn")
    return b, qonnx, flows.prepare(qonnx, CFG)


def test_finn_dataflow_computes_the_engine_integers(small):
    """FINN's dataflow before specialization (generic layers, which FINN executes in Python)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    b, qonnx, _ = small
    steps = flows.FINN[:flows.FINN.index("step_specialize_layers")]
    dataflow = flows.run(ModelWrapper(qonnx), steps, CFG)
    assert [n.op_type for n in dataflow.graph.node] == ["MVAU"] * 3  # the float input quantizer is cut off
    x_int = b.integer.quantize_normalized(observations(11, 40))
    inp, out = dataflow.graph.input[0].name, dataflow.graph.output[0].name
    got = np.concatenate([execute_onnx(dataflow, {inp: r[None].astype(np.float32)})[out] for r in x_int])
    np.testing.assert_array_equal(got.astype(np.int64), b.integer.run_int(x_int)[-1])


def test_estimates_follow_the_target(small):
    _, _, dataflow = small
    slow, fast = (flows.estimate(dataflow, CFG.for_target(t)) for t in (1e3, 1e6))
    assert [l.op for l in slow.layers] == ["MVAU_hls"] * 3
    # at 1e3 actions/s every layer stays fully folded: cycles = MH * MW
    assert [l.cycles for l in slow.layers] == [32 * 11, 32 * 32, 3 * 32]
    assert all(l.pe == 1 and l.simd == 1 for l in slow.layers)
    assert slow.max_cycles == 1024 and slow.throughput == pytest.approx(1e8 / 1024)
    assert slow.latency_ns == slow.critical_path_cycles * 10 >= sum(l.cycles for l in slow.layers) * 10
    # 1e6 actions/s needs < 100 cycles per action: unfolded, faster, larger
    assert fast.max_cycles <= 100 and fast.throughput >= 1e6
    mw_mh = [(11, 32), (32, 32), (32, 3)]
    assert [l.cycles for l in fast.layers] == [(mh // l.pe) * (mw // l.simd) for l, (mw, mh) in zip(fast.layers, mw_mh)]
    assert fast.lut > slow.lut and fast.latency_ns < slow.latency_ns
    assert set(fast.folding) == {l.name for l in fast.layers}


def test_flow_is_a_plain_list_of_registered_step_names():
    for flow in flows.FLOWS.values():
        assert isinstance(flow, list) and all(isinstance(name, str) and name in STEPS for name in flow)
    per_policy, per_target = flows.split(flows.FINN)
    assert per_policy + per_target == flows.FINN
    assert per_target == ["step_target_fps_parallelization", "step_apply_folding_config", "step_minimize_bit_width",
                          "step_generate_estimate_reports"]


def test_a_sweep_worker_runs_the_policy_steps_once_and_the_folding_steps_per_target(small, monkeypatch):
    """Every registered step is counted as it runs (the real steps, called through the registry)."""
    _, qonnx, _ = small
    calls = collections.Counter()
    for name, fn in list(STEPS.items()):
        def counted(model, cfg, name=name, fn=fn):
            calls[name] += 1
            return fn(model, cfg)
        monkeypatch.setitem(STEPS, name, counted)
    monkeypatch.setattr(sweep, "_PREPARED", {})  # a fresh worker
    cfg = HwConfig(targets=(1e3, 1e5, 1e6))
    rows = [sweep.estimate_row("p", qonnx, t, cfg) for t in cfg.targets]
    per_policy, per_target = flows.split(flows.FINN)
    assert calls == {**{name: 1 for name in per_policy}, **{name: 3 for name in per_target}}
    assert [r.target_fps for r in rows] == [1e3, 1e5, 1e6] and rows[0].lut < rows[2].lut


def _row(policy, target, lut, fps):
    fits = A15T.fits(lut, 0, 0)
    return sweep.Row(policy, target, lut, 0, 0, 1, 1.0, fps, 0.2, 0.2 / fps, fits, A15T.over(lut, 0, 0), None)


def test_highest_fitting_target_is_chosen():
    rows = [_row("a", 1e2, 1000, 1e3), _row("a", 1e3, 3000, 1e4), _row("a", 1e4, 11_000, 1e5),
            # b: FINN cannot fold faster than 2e5; 1e6 gives the same design as 1e5, which is the one kept
            _row("b", 1e4, 2000, 1e4), _row("b", 1e5, 5000, 2e5), _row("b", 1e6, 5000, 2e5)]
    chosen = sweep.best(rows)
    assert chosen["a", "finn"].target_fps == 1e3 and chosen["b", "finn"].target_fps == 1e5


def test_policy_fitting_at_no_target_has_no_chosen_design(tmp_path):
    """A 512-wide policy with 8-bit weights needs more block RAM than the XC7A15T has even fully folded
    (real FINN; 2-bit activations keep FINN's threshold processing short): it has no chosen design, and
    its lowest target's row says what it exceeds; the other policies keep theirs."""
    actor = random_actor(PolicyConfig(width=512, depth=2, quant=QuantBits(2, 8, 2, 2)), 11, 3)
    path = export_actor(actor, tmp_path / "big.onnx")
    cfg = HwConfig(targets=(1e2,))
    row = sweep.estimate_row("big", path.read_bytes(), 1e2, cfg)
    assert not row.fits and "BRAM18" in row.over and row.bram18 > 50
    other = _row("small", 1e2, 1000, 1e3)
    chosen = sweep.best([row, other])
    assert list(chosen) == [("small", "finn")]
    assert sweep.fits_nowhere([row, other], chosen) == {("big", "finn"): row}
    assert re.fullmatch(r"big \(finn flow at 100 actions/s, its lowest target: [\d,]+ LUT, \d+ BRAM18, \d+ DSP; "
                        r"over in .*BRAM18.*\)", sweep.nowhere_line(row))
    # a worker caches prepared policies by content: a new policy under the same name is a new policy
    export_actor(random_actor(PolicyConfig(width=16, depth=2, quant=QuantBits(2, 2, 2, 2)), 11, 3), path)
    assert sweep.estimate_row("small", path.read_bytes(), 1e2, cfg).fits


def test_build_folder(small, tmp_path):
    b, _, _ = small
    out = write_build_folder(b, tmp_path / "build")
    assert sorted(p.name for p in out.iterdir()) == [
        "build.json", "build.py", "dataflow.onnx", "folding_config.json", "model.qonnx.onnx"]
    meta = json.loads((out / "build.json").read_text())
    folding = json.loads((out / "folding_config.json").read_text())
    assert meta["part"] == CFG.part and meta["target_fps"] == 1e7  # the highest default target that fits
    assert meta["finn_estimates"]["LUT"] <= A15T.lut
    assert {k for k in folding if k != "Defaults"} == {"MVAU_hls_0", "MVAU_hls_1", "MVAU_hls_2"}
    assert all("PE" in v and "SIMD" in v for k, v in folding.items() if k != "Defaults")
    py_compile.compile(str(out / "build.py"), doraise=True)
    assert "build_dataflow_cfg" in (out / "build.py").read_text()
    # a sweep's folding, given explicitly, on the policy padded to 32 inputs and outputs as in the paper
    again = write_build_folder(b, tmp_path / "again", folding=folding)
    assert json.loads((again / "build.json").read_text())["finn_estimates"] == meta["finn_estimates"]
    with pytest.raises(QsearchError, match="does not cover"):
        write_build_folder(b, tmp_path / "bad", folding={"MVAU_hls_0": {"PE": 1}})
    assert not (tmp_path / "bad").exists()
    padded = write_build_folder(b, tmp_path / "padded", cfg=HwConfig(pad=32))
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    layers = [getCustomOp(n) for n in ModelWrapper(str(padded / "dataflow.onnx")).graph.node]
    assert layers[0].get_nodeattr("MW") == 32 and layers[-1].get_nodeattr("MH") == 32
    assert json.loads((padded / "build.json").read_text())["pad"] == 32


def test_synthesis_without_vivado_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    with pytest.raises(QsearchError, match="XILINX_VIVADO is not set"):
        synthesize([tmp_path])
    monkeypatch.setenv("XILINX_VIVADO", str(tmp_path))  # a folder that holds no Vivado
    with pytest.raises(QsearchError, match="holds no bin/vivado"):
        vivado_home()

"""QONNX export: brevitas' graph executed by qonnx agrees with the integer engine to the last step."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qsearch.config import QuantBits
from qsearch.errors import QsearchError
from qsearch.hw.policies import observations, padded
from qsearch.hw.qonnx_export import check_against_integer, export_qonnx, qonnx_output_ints
from qsearch.obs_norm import ObsNorm
from qsearch.quant import integer
from policies import make_bundle, warmed_actor


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    b = make_bundle(np.random.default_rng(0))
    folder = tmp_path_factory.mktemp("qonnx")
    path = export_qonnx(b, folder / "policy.onnx")  # checks 1,000 observations, raises on any difference
    assert [p.name for p in folder.iterdir()] == ["policy.onnx"]  # one self-contained file, no leftovers
    return b, path


def test_qonnx_agrees_with_the_integer_engine(exported):
    b, path = exported
    x = observations(b.actor.obs_dim, 1000, seed=1)
    got = qonnx_output_ints(path, b.integer, x)
    want = b.integer.run_int(b.integer.quantize_normalized(x))[-1]
    np.testing.assert_array_equal(got, want)
    lo, hi = -128, 127  # the 8-bit output range is exercised, not a constant
    assert got.min() >= lo and got.max() <= hi and len(np.unique(got)) > 20
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Quant") >= 4 and "Tanh" not in ops  # tanh is the engine's table, outside the graph


def test_check_catches_a_changed_weight(tmp_path, exported):
    b, original = exported
    path = tmp_path / "changed.onnx"
    m = onnx.load(original)
    biggest = max(m.graph.initializer, key=lambda t: np.prod(t.dims))  # the 32x32 hidden weight matrix
    w = numpy_helper.to_array(biggest).copy()
    w[:] = 0
    biggest.CopyFrom(numpy_helper.from_array(w, biggest.name))
    onnx.save(m, path)
    with pytest.raises(QsearchError, match="disagree"):
        check_against_integer(path, b.integer)


def test_fp32_policy_is_refused(tmp_path, rng):
    with pytest.raises(QsearchError, match="FP32"):
        export_qonnx(make_bundle(rng, quantized=False), tmp_path / "p.onnx")
    assert not list(tmp_path.iterdir())


def test_padding_keeps_every_integer(rng):
    actor = warmed_actor(QuantBits(4, 3, 3, 8))
    big = padded(actor, 32)
    assert (big.obs_dim, big.act_dim) == (32, 32)
    norm = ObsNorm(np.zeros(11, np.float32), np.ones(11, np.float32))
    small_m = integer.extract(actor, norm)
    big_m = integer.extract(big, ObsNorm(np.zeros(32, np.float32), np.ones(32, np.float32)))
    x = observations(11, 500)
    x_big = np.concatenate([x, rng.normal(0, 2, (500, 21)).astype(np.float32)], 1)  # padded inputs are ignored
    out_small = small_m.run_int(small_m.quantize_normalized(x))
    out_big = big_m.run_int(big_m.quantize_normalized(x_big))
    np.testing.assert_array_equal(out_big[-1][:, :3], out_small[-1])
    np.testing.assert_array_equal(out_big[1], out_small[1])

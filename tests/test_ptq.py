"""Post-training quantization of an FP32 bundle: calibrated on rollouts, a bundle the evaluator runs."""
import numpy as np
import pytest
import torch

from qsearch import bundle as bundles
from qsearch.config import CalibrationConfig, PolicyConfig, QuantBits
from qsearch.deploy import ptq
from qsearch.quant import fastpath
from qsearch.quant.actor import QuantActor
from qsearch.rl.evaluate import evaluate
from commands import run
from policies import warmed_actor, write_bundle

ENV = "Pendulum-v1"  # 200-step episodes: 2 calibration episodes give 400 observations


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    torch.manual_seed(0)
    return write_bundle(tmp_path_factory.mktemp("fp32") / "b",
                        QuantActor(3, 1, PolicyConfig(width=16, quant=None)).eval(), env_id=ENV)



def test_ptq_bundle_evaluates_and_tracks_fp32(capsys, tmp_path, fp32_dir):
    out8 = tmp_path / "ptq8"
    code, stdout, _ = run(capsys, "ptq", fp32_dir, "--bits-core", "8", "--bits-in", "8",
                          "--calib-episodes", "2", "--episodes", "2", "--out", out8)
    assert code == 0 and "400 observations: 2 rollouts, action noise 0.1, statistic max" in stdout
    assert "integer engine" in stdout
    b = bundles.read(out8)
    assert b.config.policy.quant == QuantBits(8, 8, 8, 8) and b.integer is not None
    assert b.evaluation["ptq"]["calib_observations"] == 400
    # the standard evaluator runs the PTQ bundle's integer engine
    res = evaluate(b.policy("int"), ENV, b.obs_norm, episodes=2, seed=5)
    assert len(res.returns) == 2 and np.all(np.isfinite(res.returns))

    fp32 = bundles.read(fp32_dir)
    x = ptq.calibration_observations(fp32, 2, 0.1)
    assert x.shape == (400, 3)
    fp_actions = fp32.policy("torch")(x)
    err8 = np.abs(b.policy("int")(x) - fp_actions).mean()
    assert err8 < 0.01  # 8 bits everywhere: close to the FP32 policy

    # the input's range is the largest |x| of the (noisy) calibration rollouts
    scale = fastpath.scaling_impl(b.actor.inp).value.abs().item()
    assert scale == pytest.approx(np.abs(x).max(), rel=1e-6)

    ptq.ptq(fp32_dir, tmp_path / "ptq2", bits_core=2, bits_in=4, calib=CalibrationConfig(episodes=2), episodes=1)
    b2 = bundles.read(tmp_path / "ptq2")
    assert b2.integer.layers[0].weight.min() >= -2 and b2.integer.layers[0].weight.max() <= 1
    assert np.abs(b2.policy("int")(x) - fp_actions).mean() > 2 * err8  # fewer bits, larger error


def test_ptq_errors(capsys, tmp_path, fp32_dir):
    out = tmp_path / "out"
    for args, message in [
        (["--bits-core", "9", "--bits-in", "8"], "--bits-core must be at most 8"),
        (["--bits-core", "4", "--bits-in", "4", "--calib-episodes", "0"], "--calib-episodes must be at least 1"),
        (["--bits-core", "4", "--bits-in", "4", "--calib-noise", "-1"], "--calib-noise must be >= 0"),
        (["--bits-core", "4", "--bits-in", "4", "--calib-stat", "mean"], "--calib-stat: invalid choice: 'mean'"),
    ]:
        code, _, err = run(capsys, "ptq", fp32_dir, *args, "--out", out)
        assert code == 2 and message in err and err.count("\n") == 1 and not out.exists()
    qat = write_bundle(tmp_path / "qat", warmed_actor(QuantBits(4, 4, 4, 4), obs_dim=3, act_dim=1, width=8), ENV)
    code, _, err = run(capsys, "ptq", qat, "--bits-core", "4", "--bits-in", "4", "--out", out)
    assert code == 2 and "already quantized" in err and not out.exists()


def test_calibration_ranges_cover_the_rare_large_values():
    """The collapse this calibration fixes (deploy/README.md): rollouts of a balanced policy are mostly
    quiet rows and a few large ones (the recoveries). Brevitas' percentile averaged over 256-row batches
    followed the quiet batches and clipped the recoveries' actions; one batch over the whole set, and
    `max`, keep them inside the ranges."""
    torch.manual_seed(0)
    fp32 = QuantActor(3, 1, PolicyConfig(width=16, quant=None)).eval()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.01, (2560, 3)).astype(np.float32)
    x[::256] = rng.normal(0, 2.0, (10, 3))  # one large row per 256
    with torch.no_grad():
        pre_tanh = fp32(torch.from_numpy(x)).abs().max().item()
    bits = QuantBits(8, 8, 8, 8)
    q = ptq.quantize(fp32, bits, x, "max")
    assert fastpath.scaling_impl(q.inp).value.item() == pytest.approx(np.abs(x).max(), rel=1e-6)
    assert fastpath.scaling_impl(q.out).value.item() == pytest.approx(pre_tanh, rel=1e-5)
    p = ptq.quantize(fp32, bits, x, "percentile")  # 99.999th percentile of the whole set: near the largest
    assert fastpath.scaling_impl(p.inp).value.item() > 0.9 * np.abs(x).max()

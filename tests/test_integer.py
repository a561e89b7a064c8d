"""The integer engine must reproduce the QAT model's quantized forward pass exactly, layer by layer."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from qsearch.config import QuantBits
from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant import fastpath, integer
from policies import CONFIGS, hard_observations, warmed_actor

@pytest.mark.parametrize("bits", CONFIGS)
def test_engine_equals_qat_forward_layer_by_layer(bits, rng):
    actor = warmed_actor(bits)
    model = integer.extract(actor, ObsNorm.identity(actor.obs_dim))
    x = hard_observations(model, rng)
    assert x.shape == (10_000, actor.obs_dim)
    reference, engine = integer.reference_ints(actor, model, x), model.run_int(model.quantize_normalized(x))
    assert len(engine) == actor.cfg.depth + 2
    for ref, eng in zip(reference, engine):
        np.testing.assert_array_equal(ref, eng)
    # the float32 input quantizer of the training model gives the same input integers, ties included
    with torch.no_grad():
        np.testing.assert_array_equal(actor.inp(torch.from_numpy(x)).int().numpy(), engine[0])
    # every level of every quantizer is exercised somewhere in the batch
    assert engine[-1].min() == -(2 ** (bits.bits_out - 1)) and engine[-1].max() == 2 ** (bits.bits_out - 1) - 1


def test_exact_internal_ties_round_half_to_even(rng):
    """Dyadic scales make acc * r land exactly on k + 1/2; both sides must round those ties to even."""
    actor = warmed_actor(QuantBits(4, 3, 3, 4), width=16)
    with torch.no_grad():
        for lin in actor.linears:  # |w| max = 1 -> weight scale 1/4, exact
            lin.weight.clamp_(-1, 1)[0, 0] = 1.0
        for layer, value in zip(actor.act_quantizers(), [8.0, 3.5, 3.5, 8.0]):
            fastpath.scaling_impl(layer).value.fill_(value)  # input 1, hidden 1/2, output 1
    model = integer.extract(actor, ObsNorm.identity(actor.obs_dim))
    x = rng.integers(-8, 8, (10_000, actor.obs_dim)).astype(np.float32)
    reference, engine = integer.reference_ints(actor, model, x), model.run_int(model.quantize_normalized(x))
    for ref, eng in zip(reference, engine):
        np.testing.assert_array_equal(ref, eng)
    # check that ties really occurred: r = s_in * s_w / s_hidden = 1 * 1/4 / (1/2) = 1/2, odd acc -> tie
    acc = engine[0] @ model.layers[0].weight.T.astype(np.int64) + model.layers[0].bias
    assert np.any((acc % 2 == 1) & (acc > 0))


@pytest.mark.parametrize("bits", CONFIGS)
def test_accumulator_width_covers_every_input(bits):
    actor = warmed_actor(bits)
    model = integer.extract(actor, ObsNorm.identity(actor.obs_dim))
    x_lo, x_hi = fastpath.int_range(bits.bits_in, True)
    h = np.array([[x_lo, x_hi]] * actor.obs_dim).T  # extreme inputs
    for layer in model.layers:
        w = layer.weight.astype(np.int64)
        worst = np.abs(w).sum(axis=1) * max(abs(h.min()), abs(h.max())) + np.abs(layer.bias)
        assert worst.max() < 2 ** (layer.acc_bits - 1), "acc_bits must hold the worst case"
        lo, hi = fastpath.int_range(layer.out_bits, layer.out_signed)
        h = np.array([[lo] * w.shape[0], [hi] * w.shape[0]])
        assert np.all(np.diff(layer.thresholds) >= 0)


def test_tanh_lut_and_actions(rng):
    actor = warmed_actor(QuantBits(6, 2, 2, 8))
    model = integer.extract(actor, ObsNorm.identity(actor.obs_dim))
    assert model.tanh_lut.dtype == np.int16 and model.tanh_lut.size == 256
    x = rng.normal(0, 1, (2000, actor.obs_dim)).astype(np.float32)
    with torch.no_grad():
        expected = torch.tanh(actor(torch.from_numpy(x))).numpy()
    assert np.abs(model.act(x) - expected).max() < 1.0 / integer.LUT_ONE


def test_save_load_round_trip(tmp_path, rng):
    actor = warmed_actor(QuantBits(4, 3, 3, 5))
    norm = ObsNorm(rng.normal(size=11).astype(np.float32), rng.uniform(0.5, 2, 11).astype(np.float32))
    model = integer.extract(actor, norm)
    model.save(tmp_path)
    loaded = integer.IntegerModel.load(tmp_path)
    obs = rng.normal(0, 3, (500, 11)).astype(np.float32)
    np.testing.assert_array_equal(loaded.quantize_obs(obs), model.quantize_obs(obs))
    np.testing.assert_array_equal(loaded.act(norm(obs)), model.act(norm(obs)))
    with np.load(tmp_path / "integer.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert all(z[k].dtype != object for k in z.files)


def test_fp32_actor_has_no_integer_model():
    from qsearch.config import PolicyConfig
    from qsearch.quant.actor import QuantActor
    with pytest.raises(QsearchError, match="FP32"):
        integer.extract(QuantActor(3, 1, PolicyConfig(width=4, quant=None)), ObsNorm.identity(3))


def test_integer_model_needs_nothing_from_training():
    """The deployed policy (integer model and its ObsNorm) sits below the learners: importing it loads
    no qsearch.rl module, so no import runs upward."""
    code = "import sys, qsearch.quant.integer; print(sorted(m for m in sys.modules if m.startswith('qsearch.rl')))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"

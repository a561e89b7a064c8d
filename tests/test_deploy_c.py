"""The exported C reproduces the NumPy integer engine bit for bit, and builds as strict C99."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from qsearch.deploy import c_export
from qsearch.obs_norm import ObsNorm
from qsearch.quant import integer
from qsearch.quant.layers import int_range
from policies import CONFIGS, hard_observations, warmed_actor

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

ACTION_SCALE, ACTION_BIAS = np.array([0.4, 1.0, 2.5], np.float32), np.array([0.1, 0.0, -1.0], np.float32)


def exported(tmp_path, bits, norm=None, layout="packed"):
    actor = warmed_actor(bits)
    model = integer.extract(actor, norm or ObsNorm.identity(actor.obs_dim))
    src = tmp_path / "src"
    src.mkdir()
    size = c_export.write_c(model, ACTION_SCALE, ACTION_BIAS, src, layout)
    return model, size, c_export.compile_harness(src, tmp_path / "harness"), src


def run_float(exe, model, obs):
    """harness float: per row x (int8 x obs_dim), o (int8 x act_dim), a_q15 (int16 x act_dim)."""
    p = subprocess.run([str(exe), "float"], input=np.ascontiguousarray(obs, np.float32).tobytes(),
                       capture_output=True, check=True)
    d, a = model.obs_dim, model.act_dim
    raw = np.frombuffer(p.stdout, np.uint8).reshape(len(obs), d + 3 * a)
    return raw[:, :d].view(np.int8), raw[:, d:d + a].view(np.int8), raw[:, d + a:].copy().view(np.int16)


def run_int(exe, model, x_int):
    p = subprocess.run([str(exe), "int"], input=np.ascontiguousarray(x_int, np.int8).tobytes(),
                       capture_output=True, check=True)
    a = model.act_dim
    raw = np.frombuffer(p.stdout, np.uint8).reshape(len(x_int), 3 * a)
    return raw[:, :a].view(np.int8), raw[:, a:].copy().view(np.int16)


def assert_matches_engine(model, x_c, o_c, a_c, x_int):
    o = model.run_int(x_int)[-1]
    np.testing.assert_array_equal(x_c, x_int)
    np.testing.assert_array_equal(o_c, o)
    np.testing.assert_array_equal(a_c, model.tanh_lut[o - model.layers[-1].out_min])


@pytest.mark.parametrize("layout", c_export.LAYOUTS)
@pytest.mark.parametrize("bits", CONFIGS)
def test_c_equals_engine_on_hard_observations(tmp_path, rng, bits, layout):
    """10,000 observations per configuration and weight layout: typical ones, input rounding ties and
    their float32 neighbours, and far out-of-range values, through the C float helper and the engine."""
    model, _, exe, _ = exported(tmp_path, bits, layout=layout)
    obs = hard_observations(model, rng)
    assert obs.shape[0] == 10_000
    assert_matches_engine(model, *run_float(exe, model, obs), model.quantize_obs(obs))
    # every output level is reached, so the whole tanh table and every threshold are exercised
    o = model.run_int(model.quantize_obs(obs))[-1]
    lo, hi = int_range(bits.bits_out, True)
    assert o.min() == lo and o.max() == hi


def test_c_normalization_and_integer_path(tmp_path, rng):
    """A non-trivial normalization through the float helper, and the integer entry point on integer
    observations spread over the whole input range (its two ends included)."""
    mean = rng.normal(0, 3, 11).astype(np.float32)
    std = rng.uniform(0.01, 20, 11).astype(np.float32)
    model, _, exe, _ = exported(tmp_path, CONFIGS[0], ObsNorm(mean, std))
    obs = np.concatenate([rng.normal(mean, 2 * std, (5_000, 11)),
                          rng.standard_cauchy((5_000, 11)) * 1e4]).astype(np.float32)
    assert_matches_engine(model, *run_float(exe, model, obs), model.quantize_obs(obs))
    lo, hi = int_range(model.input_bits, True)
    x_int = rng.integers(lo, hi + 1, (10_000, 11))
    x_int[:2] = [[lo] * 11, [hi] * 11]
    o_c, a_c = run_int(exe, model, x_int)
    assert_matches_engine(model, x_int, o_c, a_c, x_int)


@pytest.mark.parametrize("layout", c_export.LAYOUTS)
def test_64_bit_accumulators(tmp_path, rng, layout):
    """Biases at the ends of int32 push the accumulators past 32 bits: the export switches to int64_t."""
    model, _, _, _ = exported(tmp_path, CONFIGS[3])
    layer = model.layers[1]
    layer.bias[:2] = [2**31 - 1, -(2**31)]
    layer.acc_bits = 33
    src = tmp_path / "src64"
    src.mkdir()
    c_export.write_c(model, ACTION_SCALE, ACTION_BIAS, src, layout)
    assert "#define QP_ACC_BITS 64" in (src / "qpolicy_config.h").read_text()
    exe = c_export.compile_harness(src, tmp_path / "harness64")
    obs = hard_observations(model, rng)
    assert_matches_engine(model, *run_float(exe, model, obs), model.quantize_obs(obs))
    h = model.run_int(model.quantize_obs(obs))[2]
    assert np.all(h[:, 0] == 2**layer.out_bits - 1) and np.all(h[:, 1] == 0)  # saturated both ways


def test_packing_round_trip(rng):
    for bits in range(2, 9):
        lo, hi = int_range(bits, True)
        w = rng.integers(lo, hi + 1, (7, 13))
        packed = c_export.pack_weights(w, bits)
        assert len(packed) == (w.size * bits + 7) // 8
        stream = int.from_bytes(packed, "little")
        fields = [(stream >> (i * bits)) & ((1 << bits) - 1) for i in range(w.size)]
        back = [f - (1 << bits) if f >= 1 << (bits - 1) else f for f in fields]
        assert back == w.ravel().tolist()


def test_sizes_and_stack_need(tmp_path):
    """The printed flash figure counts the packed weights; the RAM figure covers what gcc measures
    (-fstack-usage) for the inference call chain on this host, up to a few words of locals."""
    model, size, _, src = exported(tmp_path, CONFIGS[0])
    n_weights = sum(layer.weight.size for layer in model.layers)
    padded = [-(-layer.weight.shape[0] // 4) * 4 * layer.weight.shape[1] for layer in model.layers]  # row blocks
    assert size.weights == sum((n * 2 + 7) // 8 for n in padded) < n_weights
    assert "flash" in size.describe()[0] and f"{size.flash} bytes" in size.describe()[0]
    subprocess.run(["gcc", *c_export.CFLAGS, "-O2", "-fstack-usage", f"-I{src}", "-c", str(src / "qpolicy.c"),
                    "-o", str(tmp_path / "qpolicy.o")], check=True, cwd=tmp_path)
    usage = {m[1]: int(m[2]) for m in re.finditer(r":(\w+)\s+(\d+)\s", (tmp_path / "qpolicy.su").read_text())}
    stack = usage["qpolicy_act_q15"] + usage["qpolicy_run"]
    assert size.ram <= stack <= size.ram + 128


def test_compiles_for_32_bit_freestanding(tmp_path):
    """-m32 with -ffreestanding: the engine needs only <stdint.h>, which gcc itself provides. Linking
    and running a 32-bit program needs a 32-bit libc, which this machine does not have (gcc-multilib
    is not installed), so this checks compilation only; the bit-exactness tests run the 64-bit build."""
    _, _, _, src = exported(tmp_path, CONFIGS[3])
    p = subprocess.run(["gcc", "-m32", "-ffreestanding", *c_export.CFLAGS, "-O2", f"-I{src}", "-c",
                        str(src / "qpolicy.c"), "-o", str(tmp_path / "q32.o")], capture_output=True, text=True)
    if "cannot find" in p.stderr or "unrecognized command-line option" in p.stderr:
        pytest.skip(f"gcc has no 32-bit x86 target here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    assert b"\x7fELF\x01" == (tmp_path / "q32.o").read_bytes()[:5]  # ELFCLASS32

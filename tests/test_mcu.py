"""The exported C on emulated microcontroller cores (zig's clang, unicorn): bit-exact with the NumPy
engine, measured (flash, RAM, instructions per action), in both weight layouts; NaN observations in
both engines; `qsearch export --target` and its errors."""
import importlib.util
import json
import shutil

import numpy as np
import pytest

from qsearch import bundle as bundles
from qsearch.config import PolicyConfig, QuantBits
from qsearch.deploy import c_export, mcu
from qsearch.errors import QsearchError
from qsearch.quant import integer
from qsearch.quant.actor import QuantActor
from qsearch.quant.layers import int_range
from qsearch.obs_norm import ObsNorm
from commands import refused, run
from policies import warmed_actor, write_bundle

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("ziglang", "unicorn", "elftools")),
                                reason="the mcu extra is not installed (make install has it)")

HOPPER = QuantBits(6, 2, 2, 8)  # the paper's Hopper configuration: 11-16-16-3, 6-bit input, 2-bit core
N_OBS = 3000
ONES, ZEROS = np.ones(3, np.float32), np.zeros(3, np.float32)
BUILDS = [("cortex-m0", "int8"), ("cortex-m4", "int8"), ("cortex-m4", "packed"), ("rv32imc", "int8")]


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    norm = ObsNorm(rng.normal(0, 2, 11).astype(np.float32), rng.uniform(0.1, 5, 11).astype(np.float32))
    return integer.extract(warmed_actor(HOPPER, width=16), norm)


@pytest.fixture(scope="module")
def builds(model, tmp_path_factory):
    """One build per (target, layout), made once for the module: the sources, the build folder, the core."""
    root = tmp_path_factory.mktemp("mcu")
    out = {}
    for target, layout in BUILDS:
        src = root / f"src_{layout}"
        if not src.exists():
            src.mkdir()
            c_export.write_c(model, ONES, ZEROS, src, layout)
        t = mcu.TARGETS[target]
        elf = mcu.build(src, t, root / f"{target}_{layout}")
        out[target, layout] = (src, elf.parent, mcu.Core(t, elf))
    return out


@pytest.mark.parametrize("target,layout", BUILDS)
def test_bit_exact_on_emulated_core(model, builds, target, layout):
    """Float observations through qpolicy_quantize_obs, qpolicy_run and qpolicy_act_q15 on the core:
    the same integers as NumPy, software float on the cores without an FPU (M0, RV32IMC) included."""
    obs = mcu.verification_observations(model, N_OBS).obs
    assert np.isnan(obs).any() and np.isinf(obs).any()
    with np.errstate(over="ignore"):  # the largest float32 values overflow to infinity
        x = model.quantize_obs(obs)
    lo, hi = int_range(model.input_bits, True)
    assert x.min() == lo and x.max() == hi  # both ends of the input range are reached
    x_c, o_c, a_c = builds[target, layout][2].batch(model, obs)
    mcu.compare(model, obs, x_c, o_c, a_c, target)
    np.testing.assert_array_equal(o_c, model.run_int(x)[-1])


def test_a_difference_is_reported(model, builds):
    """The comparison names the first observation that differs: one changed weight in the Python
    model against the unchanged build."""
    changed = integer.IntegerModel(model.obs_norm, model.input_scale, model.input_bits,
                                   [integer.IntLayer(**vars(layer)) for layer in model.layers],
                                   model.tanh_lut, model.output_scale)
    w = changed.layers[2].weight = changed.layers[2].weight.copy()
    w[0, :] = np.where(w[0, :] > 0, w[0, :] - 1, w[0, :] + 1)
    obs = mcu.verification_observations(model, 500).obs
    with pytest.raises(QsearchError, match=rf"differs from the NumPy engine on \d+ of {len(obs)} observations; first observation"):
        mcu.verify(changed, builds["cortex-m4", "int8"][2], obs)


def test_report(model, builds):
    """Flash from the built files, stack measured in the emulator, instructions per action from float
    and from integer observations: the fast layout's network meets the issue's 2,400 on Cortex-M4 for
    this configuration, the packed one is slower and smaller; cores without an FPU carry software-float
    helpers, and their input quantization costs more than the FPU's."""
    reports = {key: mcu.measure(model, mcu.TARGETS[key[0]], key[1], b[1], core=b[2]) for key, b in builds.items()}
    for (target, layout), r in reports.items():
        size = c_export.write_c(model, ONES, ZEROS, builds[target, layout][0], layout)
        assert r.flash == r.engine_code + r.model_const + r.runtime_code + r.static_ram
        assert size.weights + size.thresholds <= r.model_const <= size.flash + 64
        assert 500 < r.engine_code < 4000 and r.static_ram == 0
        assert size.ram <= r.stack < size.ram + 256  # activation buffers plus saved registers
        assert r.latency_us == pytest.approx(r.instructions_per_action / mcu.TARGETS[target].mhz)
        assert r.latency_us_int_obs == pytest.approx(r.instructions_per_action_int_obs / mcu.TARGETS[target].mhz)
        assert r.instructions_per_action_int_obs_max >= r.instructions_per_action_int_obs > 480  # >= 1 per MAC
        assert r.instructions_per_action_max >= r.instructions_per_action > r.instructions_per_action_int_obs
        assert r.observations == 32
    m4, m4_packed = reports["cortex-m4", "int8"], reports["cortex-m4", "packed"]
    assert m4.instructions_per_action_int_obs <= 2400 < m4_packed.instructions_per_action_int_obs
    assert m4.model_const > m4_packed.model_const
    assert m4.runtime_code == 0 and m4.instructions_per_action - m4.instructions_per_action_int_obs < 1000
    quantize = {key: r.instructions_per_action - r.instructions_per_action_int_obs for key, r in reports.items()}
    for soft in ("cortex-m0", "rv32imc"):  # software float: the quantization of 11 inputs outweighs the FPU's
        assert reports[soft, "int8"].runtime_code > 1000
        assert quantize[soft, "int8"] > 3 * quantize["cortex-m4", "int8"]
    head, tail = m4.describe()[1:]
    assert head.startswith(f"cortex-m4: {m4.instructions_per_action:,.0f} instructions per action from a float "
                           "observation (qpolicy_quantize_obs then qpolicy_run; max") and "240 MHz" in head
    assert tail.startswith(f"cortex-m4: {m4.instructions_per_action_int_obs:,.0f} instructions per action from an "
                           "integer observation (qpolicy_run alone; max")


def test_float_path_is_one_call(model, builds):
    """The per-action count from a float observation is one call through both steps: the two steps
    counted apart, plus the few instructions of the caller, on the same observation."""
    t = mcu.TARGETS["rv32imc"]
    core = builds["rv32imc", "int8"][2]
    obs = mcu.random_observations(model, 1, np.random.default_rng(5))[0]
    x_at, o_at, obs_at = t.io_base, t.io_base + 4096, t.io_base + 8192
    core.uc.mem_write(obs_at, obs.tobytes())
    both = core.call("mcu_action_from_float", obs_at, x_at, o_at, count=True)
    quantize = core.call("qpolicy_quantize_obs", obs_at, x_at, count=True)
    run = core.call("qpolicy_run", x_at, o_at, count=True)
    assert 0 < both - (quantize + run) < 32
    assert quantize > run  # software float: the 11 inputs' quantization costs more than the network


def test_special_rows_whatever_n(model):
    """--verify N: N random observations and the special rows, the same set for N = 1 as for more:
    exact rounding ties of both parities and their neighbours, +inf, -inf and NaN in every position,
    values far out of range of both signs."""
    one, many = mcu.verification_observations(model, 1), mcu.verification_observations(model, 300)
    assert one.random == 1 and many.random == 300 and one.special == many.special
    assert len(one.obs) == 1 + sum(one.special.values()) and len(many.obs) == 300 + sum(many.special.values())
    np.testing.assert_array_equal(one.obs[1:], many.obs[300:])
    d = model.obs_dim
    lo, hi = int_range(model.input_bits, True)
    assert one.special == {"ties": hi - lo + 2, "next to ties": 2 * (hi - lo + 2), "+inf": d + 1, "-inf": d + 1,
                           "NaN": d + 1, "far out of range": 10}
    rows, at = {}, 1
    for name, n in one.special.items():
        rows[name], at = one.obs[at:at + n], at + n
    y = model.obs_norm(rows["ties"]) / model.input_scale
    on_tie = y - np.floor(y) == 0.5
    assert one.exact_ties == on_tie.sum() > len(y)  # more than one exact tie per row, on average
    assert set(np.floor(y[on_tie]).astype(int) % 2) == {0, 1}  # ties to even and to odd neighbours
    assert np.floor(y[on_tie]).min() < 0 < np.floor(y[on_tie]).max()
    for name, kind in (("+inf", np.isposinf), ("-inf", np.isneginf), ("NaN", np.isnan)):
        hit = kind(rows[name])  # each position alone, then all at once
        np.testing.assert_array_equal(hit[:d], np.eye(d, dtype=bool))
        assert hit[d].all()
    with np.errstate(over="ignore"):
        x = model.quantize_obs(rows["far out of range"])
        far_y = np.abs(model.obs_norm(rows["far out of range"]) / model.input_scale)
    assert (far_y > 2 * hi).all() and (x == lo).any() and (x == hi).any()
    assert not np.isnan(one.obs[:1]).any() and np.isfinite(one.obs[:1]).all()
    text = one.describe()
    assert text.startswith(f"1 random observation and {sum(one.special.values())} special ones: "
                           f"{hi - lo + 2} rows of rounding ties ({one.exact_ties} entries exactly on a tie), "
                           f"{2 * (hi - lo + 2)} rows next to them, {d + 1} rows with +inf, {d + 1} with -inf, "
                           f"{d + 1} with NaN, 10 far out of range")


def test_int8_rows_interleaved(rng):
    w = rng.integers(-128, 128, (7, 5)).astype(np.int8)
    stored = c_export.interleave_rows(w)
    assert stored.size == 8 * 5
    for r in range(8):
        for c in range(5):
            assert stored[(r // 4) * 4 * 5 + c * 4 + r % 4] == (w[r, c] if r < 7 else 0)


def test_nan_observations_in_both_engines(model, tmp_path):
    """A NaN entry is quantized to 0 (the normalized mean) by the NumPy engine and by the C engine on
    the host, whatever the other entries; infinities saturate."""
    obs = np.tile(model.obs_norm.mean, (3, 1)).astype(np.float32)
    obs[0, 0], obs[1, :] = np.nan, np.nan
    obs[2, [1, 2]] = [np.inf, -np.inf]
    x = model.quantize_obs(obs)
    lo, hi = int_range(model.input_bits, True)
    assert x[0].tolist() == [0] * 11 and x[1].tolist() == [0] * 11 and x[2, 1] == hi and x[2, 2] == lo
    if shutil.which("gcc"):
        src = tmp_path / "src"
        src.mkdir()
        c_export.write_c(model, ONES, ZEROS, src, "int8")
        mcu.verify_host(model, src, tmp_path, obs)



def test_export_target_verify_and_budget(capsys, tmp_path, bundle_dir):
    """`--target cortex-m4 --verify`: the sources, the build and its report; a flash budget the fast
    layout exceeds gives the packed one."""
    code, out, _ = run(capsys, "export", bundle_dir, "--format", "c", "--target", "cortex-m4", "--verify", "2000",
                       "--out", tmp_path / "c")
    assert code == 0, out
    checks = mcu.verification_observations(bundles.read(bundle_dir).integer, 2000)
    assert "layout: int8" in out and "instructions per action from a float observation" in out
    assert f"verified on the emulated cortex-m4, {checks.describe()}: the same integers" in out
    assert checks.describe().startswith("2,000 random observations and ")
    report = json.loads((tmp_path / "c" / "cortex-m4" / "report.json").read_text())
    assert report["instructions_per_action"] > report["instructions_per_action_int_obs"] > 0
    assert report["latency_us"] > report["latency_us_int_obs"] > 0
    assert (tmp_path / "c" / "cortex-m4" / "emulator.elf").exists() and (tmp_path / "c" / "cortex-m4" / "report.json").exists()
    flash = int(out.split("cortex-m4 (int8 weights): flash ")[1].split()[0])
    code, out, _ = run(capsys, "export", bundle_dir, "--format", "c", "--target", "cortex-m4",
                       "--flash-budget", str(flash - 1), "--out", tmp_path / "small")
    assert code == 0 and "layout: packed" in out
    assert "#define QP_LAYOUT_INT8 0" in (tmp_path / "small" / "qpolicy_config.h").read_text()
    code, out, _ = run(capsys, "export", bundle_dir, "--format", "c", "--verify", "1", "--out", tmp_path / "host")
    checks = mcu.verification_observations(bundles.read(bundle_dir).integer, 1)
    assert code == 0 and not (tmp_path / "host" / "host").exists()
    assert f"verified on this host, {checks.describe()}: the same integers as the Python engine" in out
    assert "1 random observation and " in out and " with NaN, " in out


def test_export_errors(capsys, tmp_path, bundle_dir):
    out = tmp_path / "out"
    assert "unknown target 'cortex-a53'" in refused(capsys, out, "export", bundle_dir, "--format", "c",
                                                           "--target", "cortex-a53")
    assert "unknown layout 'int4'" in refused(capsys, out, "export", bundle_dir, "--format", "c", "--layout", "int4")
    fp32 = write_bundle(tmp_path / "fp32", QuantActor(11, 3, PolicyConfig(width=8, quant=None)))
    assert "without an integer model" in refused(capsys, out, "export", fp32, "--format", "c", "--target", "rv32imc")
    err = refused(capsys, out, "export", bundle_dir, "--format", "c", "--target", "rv32imc", "--flash-budget", "1000")
    assert "no weight layout fits the flash budget of 1000 bytes" in err and "packed" in err
    assert "apply to --format c only" in refused(capsys, out, "export", bundle_dir, "--format", "json",
                                                        "--target", "cortex-m4")

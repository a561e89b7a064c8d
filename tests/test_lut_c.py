"""The C export of a logic-circuit (LUT) policy: the MLP export's API, compiled on the host and for
emulated cores (zig's clang, unicorn), the same integers as IntLUTModel's NumPy engine on >= 10,000
observations with every thermometer threshold's edges, infinities and NaN; its sizes and instructions
per action; bad models refused in one line; `qsearch export --format c` of a LUT bundle."""
import dataclasses
import importlib.util
import shutil

import numpy as np
import pytest

from qsearch import bundle as bundles
from qsearch.config import PolicyConfig, QuantBits, TrainConfig
from qsearch.deploy import c_export, mcu
from qsearch.errors import QsearchError
from qsearch.hw.policies import random_actor
from qsearch.obs_norm import ObsNorm
from qsearch.quant import lut_integer
from qsearch.quant.layers import int_range
from commands import run
from test_deploy_c import run_float, run_int

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or any(importlib.util.find_spec(m) is None for m in ("ziglang", "unicorn", "elftools")),
    reason="needs gcc and the mcu extra (make install has it)")

B, LUTS, K = 8, (64, 64), 4  # 88 input bits, two layers of 64 four-input tables, groups of 21
CFG = PolicyConfig(kind="lut", thermometer_bits=B, luts=LUTS, lut_inputs=K, mapping="random", quant=QuantBits(bits_out=8))
ONES, ZEROS = np.ones(3, np.float32), np.zeros(3, np.float32)
TARGETS = ("cortex-m4", "rv32imc")  # with an FPU, and with software float


@pytest.fixture(scope="module")
def actor():
    return random_actor(CFG, 11, 3, seed=1)  # random truth tables, the head's range set from random inputs


@pytest.fixture(scope="module")
def model(actor):
    rng = np.random.default_rng(3)
    norm = ObsNorm(rng.normal(0, 2, 11).astype(np.float32), rng.uniform(0.1, 5, 11).astype(np.float32))
    return lut_integer.extract(actor, norm)


@pytest.fixture(scope="module")
def checks(model):
    return mcu.verification_observations(model, 10_000)


@pytest.fixture(scope="module")
def src(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("lut_c")
    c_export.write_c(model, ONES, ZEROS, out)
    return out


@pytest.fixture(scope="module")
def cores(src):
    """One build per target, made once for the module: its folder and its emulated core."""
    out = {}
    for name in TARGETS:
        t = mcu.TARGETS[name]
        elf = mcu.build(src, t, src / name)
        out[name] = (elf.parent, mcu.Core(t, elf))
    return out


def engine(model, obs):
    with np.errstate(over="ignore"):  # the largest float32 values overflow to infinity, which saturates
        x = model.quantize_obs(obs)
    o = model.run_int(x)[-1]
    return x, o, model.tanh_lut[o - int_range(model.out_bits, True)[0]]


def test_host_build_equals_the_numpy_engine(model, src, checks, tmp_path):
    """The float path (qpolicy_quantize_obs, qpolicy_run, qpolicy_act_q15) on the verification rows,
    and the integer path on levels beyond both ends of the thermometer: the same integers as NumPy,
    over every level and many output integers."""
    exe = c_export.compile_harness(src, tmp_path / "harness")
    x_c, o_c, a_c = run_float(exe, model, checks.obs)
    x, o, a = engine(model, checks.obs)
    np.testing.assert_array_equal(x_c, x)
    np.testing.assert_array_equal(o_c, o)
    np.testing.assert_array_equal(a_c, a)
    assert set(np.unique(x)) == set(range(B + 1))
    assert np.all(x[np.isnan(checks.obs)] == 0)
    assert min(len(np.unique(o[:, i])) for i in range(3)) > 10  # a varied policy, not a constant
    mcu.verify_host(model, src, tmp_path, checks.obs)  # the entry point export uses: no difference either
    levels = np.random.default_rng(0).integers(-3, B + 4, (10_000, 11))
    o_c, a_c = run_int(exe, model, levels)
    o = model.run_int(levels)[-1]
    np.testing.assert_array_equal(o_c, o)
    np.testing.assert_array_equal(a_c, model.tanh_lut[o - int_range(model.out_bits, True)[0]])


def test_verification_rows_sit_on_and_beside_every_threshold(model, checks):
    """Each threshold in each column, exactly where a float32 observation's normalized value reaches it,
    its float32 neighbours below and above (level one lower, and the same), then infinities, NaN, far out;
    the same special rows whatever the number of random ones."""
    d, t = model.obs_dim, model.thresholds
    one = mcu.verification_observations(model, 1)
    assert one.special == checks.special == {"thresholds": B, "next to thresholds": 2 * B, "+inf": d + 1,
                                             "-inf": d + 1, "NaN": d + 1, "far out of range": 10}
    np.testing.assert_array_equal(one.obs[1:], checks.obs[10_000:])
    on = checks.obs[10_000:10_000 + B]
    below, above = np.split(checks.obs[10_000 + B:10_000 + 3 * B], 2)
    cycled = t[(np.arange(B)[:, None] + np.arange(d)) % B]
    level = np.searchsorted(t, cycled, side="right")  # the level a value exactly on the threshold reaches
    hit = model.obs_norm(on) == cycled
    assert checks.exact_ties == hit.sum() > B  # more than one entry per row, on average
    np.testing.assert_array_equal(model.quantize_obs(on)[hit], level[hit])
    for rows, side, expected in ((below, -np.inf, level - 1), (above, np.inf, level)):
        hit = model.obs_norm(rows) == np.nextafter(cycled, np.float32(side))
        assert hit.sum() > B
        np.testing.assert_array_equal(model.quantize_obs(rows)[hit], expected[hit])
    assert checks.describe().startswith(
        f"10,000 random observations and {3 * B + 3 * (d + 1) + 10} special ones: {B} rows on thermometer "
        f"thresholds ({checks.exact_ties} entries exactly on one), {2 * B} rows one float32 step either side, "
        f"{d + 1} rows with +inf")


@pytest.mark.parametrize("target", TARGETS)
def test_emulated_cores_equal_the_numpy_engine_and_are_measured(model, src, checks, cores, target):
    """The verification rows on the core (software float on the RV32IMC), then flash from the built
    files, the stack measured, and instructions per action from float and integer observations."""
    folder, core = cores[target]
    mcu.verify(model, core, checks.obs)
    x_c, o_c, _ = core.batch(model, checks.obs[:500])
    np.testing.assert_array_equal(o_c, engine(model, checks.obs[:500])[1])
    r = mcu.measure(model, mcu.TARGETS[target], "int8", folder, core=core)
    size = c_export.write_c(model, ONES, ZEROS, src)  # the same sources again, for their sizes
    assert r.layout == mcu.LUT_TABLES and r.describe()[0].startswith(f"{target} (bit-packed truth tables): flash ")
    assert size.flash - 64 <= r.model_const <= size.flash + 64 and r.static_ram == 0
    assert size.ram <= r.stack < size.ram + 256  # bit buffers plus saved registers
    nodes = sum(LUTS)
    assert r.instructions_per_action_max >= r.instructions_per_action > r.instructions_per_action_int_obs > 10 * nodes
    if target == "cortex-m4":  # measured 5,501 and 5,041 (c_lut's docstring)
        assert r.runtime_code == 0 and r.instructions_per_action_int_obs < 8_000


def test_a_difference_is_reported(model, checks, cores):
    """One node's truth table flipped in the Python model against the unchanged build: the comparison
    names the first observation that differs."""
    layers = [dataclasses.replace(layer, tables=layer.tables.copy()) for layer in model.layers]
    layers[-1].tables[0] ^= 1
    changed = dataclasses.replace(model, layers=layers)
    with pytest.raises(QsearchError, match=r"differs from the NumPy engine on \d+ of \d+ observations; first observation"):
        mcu.verify(changed, cores["cortex-m4"][1], checks.obs)


def test_the_same_api_as_an_mlp_export_and_the_sizes(model, src):
    """qpolicy.h is the MLP export's, byte for byte; the model data's bytes add up."""
    assert (src / "qpolicy.h").read_bytes() == (c_export.TEMPLATES / "qpolicy.h").read_bytes()
    assert (src / "qpolicy.c").read_bytes() == (c_export.TEMPLATES / "qpolicy_lut.c").read_bytes()
    config = (src / "qpolicy_config.h").read_text()
    for line in ("#define QP_LUT 1", f"#define QP_IN_MAX {B}", f"#define QP_LUT_INPUTS {K}", "#define QP_GROUP 21",
                 "#define QP_BUF_WORDS 3", "#define QP_OUT_MIN (-128)"):
        assert line in config
    size = c_export.write_c(model, ONES, ZEROS, src)
    assert (size.tables, size.connections, size.head, size.thresholds) == (2 * 64 * 16 // 8, 2 * 2 * 64 * K, 3 * 22, 4 * 16)
    assert (size.tanh_lut, size.floats, size.layer_table, size.ram) == (512, 4 * 28, 24, 2 * 3 * 4 + 3)
    assert size.describe()[0].startswith(f"flash: {size.flash} bytes of model data (truth tables 256, connections")


def test_bad_models_are_refused_in_one_line(model, tmp_path):
    def refused(**changes):
        with pytest.raises(QsearchError) as e:
            c_export.write_c(dataclasses.replace(model, **changes), ONES, ZEROS, tmp_path)
        assert not any(tmp_path.iterdir())  # nothing written
        return str(e.value)

    assert "finite and non-decreasing" in refused(thresholds=model.thresholds[::-1].copy())
    assert "finite and non-decreasing" in refused(thresholds=np.append(model.thresholds[:-1], np.nan).astype(np.float32))
    assert "int8_t; the head has 9 bits" in refused(out_bits=9)
    assert "does not fit 8 output bits" in refused(head=model.head + 200)
    short = lut_integer.LUTLayerInts(model.layers[1].connections[:, :2].copy(), model.layers[1].tables[:, :4].copy())
    assert "one LUT input count for every layer, not [2, 4]" in refused(layers=[model.layers[0], short])
    cut = lut_integer.LUTLayerInts(model.layers[1].connections, model.layers[1].tables[:, :8].copy())
    assert "LUT layer 1 has truth tables of shape (64, 8) for (64, 4) connections" in refused(layers=[model.layers[0], cut])
    wide = lut_integer.LUTLayerInts(model.layers[0].connections + 88, model.layers[0].tables)
    assert "LUT layer 0 reads inputs outside its 88 input bits" in refused(layers=[wide, model.layers[1]])
    assert "the head's table (3, 22) does not fit 3 groups of 22" in refused(group=22)
    with pytest.raises(QsearchError, match="unknown weight layout 'int4'"):
        c_export.write_c(model, ONES, ZEROS, tmp_path, "int4")


def test_export_format_c_of_a_lut_bundle(capsys, actor, model, tmp_path):
    """`qsearch export --format c --target cortex-m4 --verify` on a LUT bundle folder: the sources, the
    build measured and verified on the emulated core, one build whatever --layout says."""
    b = bundles.Bundle(TrainConfig(env_id="Hopper-v5", policy=CFG), actor, model.obs_norm, ONES, ZEROS, model)
    path = bundles.write(b, tmp_path / "bundle")
    code, out, err = run(capsys, "export", path, "--format", "c", "--target", "cortex-m4", "--verify", "1000",
                       "--out", tmp_path / "c")
    assert code == 0, out + err
    checks = mcu.verification_observations(bundles.read(path).integer, 1000)
    assert "layout: bit-packed truth tables\nflash: " in out and "bytes of model data (truth tables 256" in out
    assert "cortex-m4 (bit-packed truth tables): flash" in out and "instructions per action from a float" in out
    assert f"verified on the emulated cortex-m4, {checks.describe()}: the same integers as the Python engine" in out
    assert (tmp_path / "c" / "cortex-m4" / "report.json").exists()
    (tmp_path / "direct").mkdir()  # the bundle's model, saved and read back, gives the same C as the model
    c_export.write_c(model, ONES, ZEROS, tmp_path / "direct")
    assert (tmp_path / "c" / "qpolicy_model.h").read_bytes() == (tmp_path / "direct" / "qpolicy_model.h").read_bytes()
    code, out, _ = run(capsys, "export", path, "--format", "c", "--layout", "int8", "--out", tmp_path / "host")
    assert code == 0 and "layout: bit-packed truth tables" in out
    assert (tmp_path / "host" / "qpolicy_model.h").read_bytes() == (tmp_path / "c" / "qpolicy_model.h").read_bytes()

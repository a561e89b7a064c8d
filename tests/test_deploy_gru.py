"""A recurrent policy's C export: the GRU step in C equals the NumPy engine at every step of whole
sequences, the state carried on both sides, on this host and on emulated Cortex-M0, Cortex-M4 and
RV32IMC; reset restores the initial behaviour; `qsearch export --format c --verify` of a recurrent
bundle and its one-line failure; a stateless export keeps its files and its API."""
import copy
import functools
import importlib.util
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from qsearch import bundle as bundles
from qsearch.deploy import c_export, mcu, stateful
from qsearch.deploy.json_export import read_json
from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant import integer
from commands import run
from policies import gru_actor, write_bundle

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
needs_mcu = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("ziglang", "unicorn", "elftools")),
                               reason="the mcu extra is not installed (make install has it)")

SCALE, BIAS = np.array([0.4, 2.5], np.float32), np.array([0.1, -1.0], np.float32)
UNITS = 8  # gru_actor's


@functools.lru_cache(maxsize=None)
def _model(bits: int) -> integer.IntegerModel:
    rng = np.random.default_rng(bits)
    norm = ObsNorm(rng.normal(0, 2, 3).astype(np.float32), rng.uniform(0.1, 5, 3).astype(np.float32))
    return integer.extract(gru_actor(bits), norm)


def model(bits: int) -> integer.IntegerModel:
    return copy.deepcopy(_model(bits))


def export(m, folder, layout="int8"):
    folder.mkdir()
    return c_export.write_c(m, SCALE, BIAS, folder, layout)


def harness(m, tmp_path, layout="int8"):
    export(m, tmp_path / "src", layout)
    return c_export.compile_harness(tmp_path / "src", tmp_path / "harness")


@pytest.mark.parametrize("bits,layout", [(8, "int8"), (3, "packed"), (2, "int8"), (2, "packed")])
def test_c_on_host_equals_the_engine_at_every_step(tmp_path, bits, layout):
    """3,000 steps of random streams and the special rows (rounding ties, infinities, NaN, far out of
    range) in episodes of 100, the state carried: x, o, the Q1.15 and float actions and the new state
    at every step, through qpolicy_step_run, qpolicy_step_q15 and qpolicy_step alike."""
    m = model(bits)
    exe = harness(m, tmp_path, layout)
    assert f"#define QP_STATE_BITS {bits}" in (tmp_path / "src" / "qpolicy_config.h").read_text()
    streams = stateful.verification_streams(m, 3000)
    rows = stateful.host_rows(m, exe, streams.obs, streams.starts)
    stateful.compare(m, SCALE, BIAS, streams.obs, streams.starts, rows, "the host build")
    want = stateful.engine_steps(m, streams.obs, streams.starts)
    np.testing.assert_array_equal(rows["h"], want["h"])
    np.testing.assert_array_equal(rows["o"], want["o"])
    assert rows["agree"].all() and streams.episodes == 30 + 3
    # a real check: the state moves over its grid, and the same observation acts differently in
    # different states
    assert np.unique(want["h"]).size >= min(2**bits, 16) // 2
    assert np.unique(want["o"]).size > 4


def test_wide_types_int64_accumulators_and_int32_gate_tables(tmp_path):
    """An encoder bias at the ends of int32 makes the accumulators int64_t; a tanh threshold past int16
    makes the gate tables int32_t. Both engines still agree at every step."""
    m = model(8)
    m.encoder.x.bias[:2] = [2**31 - 1, -(2**31)]
    m.encoder.x.acc_bits = 33
    m.encoder.tanh[-1] = 40_000  # reachable: ax_n * 2^8 + r * ah_n spans +-65,408
    exe = harness(m, tmp_path)
    config = (tmp_path / "src" / "qpolicy_config.h").read_text()
    assert "#define QP_ACC_BITS 64" in config and "#define QP_GATE_TABLE_BITS 32" in config
    streams = stateful.verification_streams(m, 500)
    stateful.compare(m, SCALE, BIAS, streams.obs, streams.starts, stateful.host_rows(m, exe, streams.obs, streams.starts),
                     "the host build")


def test_reset_restores_the_initial_behaviour(tmp_path):
    """The same 60 observations three times: after a reset the C acts exactly as in the first episode;
    without one (the state carried on) it does not. The NumPy engine says the same."""
    m = model(3)
    exe = harness(m, tmp_path)
    obs = stateful.stream_observations(m, 60, np.random.default_rng(4))
    starts = np.zeros(180, bool)
    starts[[0, 60]] = True  # reset before the first and the second pass, not before the third
    rows = stateful.host_rows(m, exe, np.concatenate([obs] * 3), starts)
    first, again, carried = (np.concatenate([rows["o"], rows["h"]], 1)[k * 60:(k + 1) * 60] for k in range(3))
    np.testing.assert_array_equal(again, first)
    assert not np.array_equal(carried, first)
    want = stateful.engine_steps(m, np.concatenate([obs] * 3), starts)
    np.testing.assert_array_equal(rows["o"], want["o"])


def test_a_difference_is_named_by_its_step(tmp_path):
    """The state product's row of one unit's n gate changed in the Python model, against the unchanged
    C: the comparison names the first differing step and its episode in one line. The state is zero at
    each episode's start, so the change shows only once the state has moved."""
    m = model(3)
    exe = harness(m, tmp_path)
    changed = copy.deepcopy(m)
    row = changed.encoder.h.weight[2 * UNITS]
    changed.encoder.h.weight[2 * UNITS] = np.clip(-row - 1, -4, 3)
    streams = stateful.verification_streams(m, 400)
    rows = stateful.host_rows(m, exe, streams.obs, streams.starts)
    with pytest.raises(QsearchError) as e:
        stateful.compare(changed, SCALE, BIAS, streams.obs, streams.starts, rows, "the host build")
    message = str(e.value)
    assert "\n" not in message
    match = re.search(r"differs from the NumPy engine at \d+ of \d+ steps; first at step (\d+) of episode (\d+) "
                      r"\(row (\d+),", message)
    step, episode, row = map(int, match.groups())
    assert step >= 1 and row == (episode - 1) * stateful.EPISODE_STEPS + step  # the state carried the change


@needs_mcu
@pytest.mark.parametrize("target,bits,layout", [("cortex-m0", 3, "int8"), ("cortex-m4", 2, "packed"),
                                                ("rv32imc", 8, "int8")])
def test_emulated_cores_carry_the_state(tmp_path, target, bits, layout):
    """Cross-built with zig and run on unicorn: 300 steps of streams and the special rows through every
    stateful entry point, the state carried across calls in the core's memory, software float on the
    M0 and RV32IMC; then the report: RAM holds the state, instructions are per step."""
    m = model(bits)
    size = export(m, tmp_path / "src", layout)
    t = mcu.TARGETS[target]
    core = mcu.Core(t, mcu.build(tmp_path / "src", t, tmp_path / target))
    streams = stateful.verification_streams(m, 300)
    stateful.verify(m, SCALE, BIAS, core, streams)
    r = mcu.measure(m, t, layout, tmp_path / target, core=core, n_obs=8)
    assert r.recurrent and r.state == size.state == UNITS and r.ram == r.stack + r.state + r.static_ram
    assert size.ram <= r.stack < size.ram + 256 and r.static_ram == 0
    macs = sum(layer.weight.size for layer in c_export.all_layers(m))
    assert r.instructions_per_action_max >= r.instructions_per_action > r.instructions_per_action_int_obs > macs
    assert size.weights + size.thresholds + size.gate_tables <= r.model_const <= size.flash + 64
    head, step, _ = r.describe()
    assert f"state {UNITS}" in head and "(qpolicy_quantize_obs then qpolicy_step_run; max" in step


@pytest.fixture(scope="module")
def gru_bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("gru") / "bundle", gru_actor(2))


@needs_mcu
def test_export_verifies_a_recurrent_bundle(capsys, tmp_path, gru_bundle):
    """`qsearch export --format c --target cortex-m4 --verify N`: the stateful sources, the build, a
    report with the state in RAM, and the step-by-step verification; `--target host` the same on gcc."""
    code, out, err = run(capsys, "export", gru_bundle, "--format", "c", "--target", "cortex-m4", "--verify", "300",
                         "--out", tmp_path / "c")
    assert code == 0, err
    b = bundles.read(gru_bundle)
    streams = stateful.verification_streams(b.integer, 300)
    assert f"verified on the emulated cortex-m4, {streams.describe()}: the same integers as the Python engine at " \
           "every step" in out
    assert streams.describe().startswith("300 random observations and ") and "as 6 episodes of up to 100 steps" in out
    assert f"RAM: {UNITS} bytes of state (qpolicy_state" in out
    report = json.loads((tmp_path / "c" / "cortex-m4" / "report.json").read_text())
    assert report["recurrent"] and report["state"] == UNITS and report["ram"] == report["stack"] + UNITS
    assert "qpolicy_step_run" in report["instructions_note"]
    code, out, err = run(capsys, "export", gru_bundle, "--format", "c", "--verify", "1", "--out", tmp_path / "host")
    assert code == 0 and "verified on this host, 1 random observation and " in out and "at every step" in out


def test_a_mismatch_fails_the_export_in_one_line(capsys, tmp_path, gru_bundle, monkeypatch):
    """Should the C ever differ from the engine, `--verify` exits 2 with one line naming the step, and
    writes nothing. (Forced here: the engine's output at row 150 is changed.)"""
    engine_steps = stateful.engine_steps

    def off_by_one(*args):
        want = engine_steps(*args)
        want["o"][150, 0] += 1
        return want

    monkeypatch.setattr(stateful, "engine_steps", off_by_one)
    code, _, err = run(capsys, "export", gru_bundle, "--format", "c", "--verify", "200", "--out", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "the host build differs from the NumPy engine at 1 of " in err and "first at step 50 of episode 2 (row 150" in err
    assert not (tmp_path / "c").exists()


API = {"stateless": ("qpolicy_run", "qpolicy_act_q15"),
       "recurrent": ("qpolicy_reset", "qpolicy_step_run", "qpolicy_step_q15", "qpolicy_step")}


def test_each_export_has_its_own_api_and_a_stateless_one_is_unchanged(tmp_path, bundle_dir):
    """A stateless export's generated headers are those before recurrent exports (the configuration
    pinned, the model's arrays by name), and it has no stateful entry points; a recurrent export has
    no stateless ones, which would act without the state."""
    stateless = bundles.read(bundle_dir).integer
    export(stateless, tmp_path / "mlp")
    export(model(2), tmp_path / "gru")
    assert (tmp_path / "mlp" / "qpolicy_config.h").read_text() == STATELESS_CONFIG
    names = re.findall(r"static const \w+ (\w+)\[", (tmp_path / "mlp" / "qpolicy_model.h").read_text())
    assert names == [f"qp_{kind}_{i}" for i in range(3) for kind in ("weights", "bias", "thresholds")] + [
        "qp_layers", "qp_tanh_lut", "qp_obs_mean", "qp_obs_std", "qp_action_scale", "qp_action_bias"]
    for kind, other in (("mlp", "recurrent"), ("gru", "stateless")):
        src = tmp_path / kind
        for name in API["stateless" if other == "recurrent" else "recurrent"]:
            assert _defines(src, name)
        for name in API[other]:
            assert not _defines(src, name), name


def _defines(src, name) -> bool:
    """Whether the export in `src` declares `name` (gcc's preprocessed header)."""
    p = subprocess.run(["gcc", "-E", "-P", f"-I{src}", "-"], input='#include "qpolicy.h"\n', capture_output=True,
                       text=True, check=True)
    return re.search(rf"\b{name}\(", p.stdout) is not None


STATELESS_CONFIG = """/* Generated by qsearch export --format c: the model's dimensions and bit widths. */
#ifndef QPOLICY_CONFIG_H
#define QPOLICY_CONFIG_H

#define QP_OBS_DIM 11
#define QP_ACT_DIM 3
#define QP_N_LAYERS 3
#define QP_MAX_DIM 16
#define QP_BUF_DIM 16
#define QP_IN_BITS 6
#define QP_IN_MIN (-32)
#define QP_IN_MAX 31
#define QP_WEIGHT_BITS 2
#define QP_OUT_BITS 8
#define QP_OUT_MIN (-128)
#define QP_ACC_BITS 32
#define QP_LUT_ONE 32767
#define QP_LAYOUT_INT8 1

#endif
"""


def test_policy_json_carries_the_encoder(capsys, tmp_path, gru_bundle, bundle_dir):
    """policy.json of a recurrent bundle is version 2 with the encoder, and read back it runs every step
    as the bundle's engine does; a stateless one is the version 1 file, with no encoder; a later
    version is refused in one line."""
    assert run(capsys, "export", gru_bundle, "--format", "json", "--out", tmp_path / "gru")[0] == 0
    d = json.loads((tmp_path / "gru" / "policy.json").read_text())
    e = d["encoder"]
    assert d["version"] == 2 and list(d).index("encoder") == list(d).index("layers") - 1
    assert (e["kind"], e["width"], e["gate_bits"], e["state_bits"]) == ("gru", UNITS, 2, 2)
    assert (e["state_min"], e["state_max"], e["gate_min"], e["gate_max"], e["initial_state"]) == (-2, 1, 0, 3, 0)
    assert (e["x"]["in"], e["x"]["out"], e["h"]["in"], e["h"]["out"]) == (3, 3 * UNITS, UNITS, 3 * UNITS)
    assert len(e["sigmoid_thresholds"]) == len(e["tanh_thresholds"]) == 3 and d["layers"][0]["in"] == UNITS
    original, loaded = bundles.read(gru_bundle).integer, read_json(tmp_path / "gru" / "policy.json")
    streams = stateful.verification_streams(original, 1000)
    want, got = (stateful.engine_steps(m, streams.obs, streams.starts) for m in (original, loaded))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])

    assert run(capsys, "export", bundle_dir, "--format", "json", "--out", tmp_path / "mlp")[0] == 0
    d = json.loads((tmp_path / "mlp" / "policy.json").read_text())
    assert d["version"] == 1 and "encoder" not in d and not read_json(tmp_path / "mlp" / "policy.json").recurrent
    (tmp_path / "v4.json").write_text(json.dumps({**d, "version": 4}))
    with pytest.raises(QsearchError, match="is a version 4 policy file; this qsearch reads up to version 3"):
        read_json(tmp_path / "v4.json")


def test_compiles_for_32_bit_freestanding(tmp_path):
    """The stateful engine needs only <stdint.h> as well: strict C99 with -m32 -ffreestanding (compiled
    only; this machine has no 32-bit libc to link against, see tests/test_deploy_c.py)."""
    export(model(8), tmp_path / "src")
    p = subprocess.run(["gcc", "-m32", "-ffreestanding", *c_export.CFLAGS, "-Wundef", "-O2", f"-I{tmp_path / 'src'}", "-c",
                        str(tmp_path / "src" / "qpolicy.c"), "-o", str(tmp_path / "q32.o")], capture_output=True, text=True)
    if "cannot find" in p.stderr or "unrecognized command-line option" in p.stderr:
        pytest.skip(f"gcc has no 32-bit x86 target here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr

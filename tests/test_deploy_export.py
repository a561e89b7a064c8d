"""`qsearch export` in each format, and its errors: one line on stderr, exit code 2, nothing written."""
import importlib.util
import json
import subprocess

import numpy as np
import pytest

from qsearch import bundle as bundles
from qsearch.config import PolicyConfig, QuantBits
from qsearch.deploy import c_export
from qsearch.deploy.json_export import read_json
from qsearch.quant.actor import QuantActor
from commands import refused, run
from policies import hard_observations, write_bundle

BITS = QuantBits(6, 2, 2, 8)  # the paper's Hopper configuration: 6-bit input, 2-bit core




def test_json_export_round_trips_to_the_engine(capsys, tmp_path, bundle_dir, rng):
    code, out, _ = run(capsys, "export", bundle_dir, "--format", "json", "--out", tmp_path / "j")
    assert code == 0 and "policy.json" in out
    d = json.loads((tmp_path / "j" / "policy.json").read_text())
    assert d["format"] == "qsearch-integer-policy" and d["env_id"] == "Hopper-v5"
    assert (d["observe"], d["observation_indices"]) == ("all", None)
    assert [(l["in"], l["out"]) for l in d["layers"]] == [(11, 16), (16, 16), (16, 3)]
    assert d["output"]["action_scale"] == pytest.approx([0.4] * 3)
    original, loaded = bundles.read(bundle_dir).integer, read_json(tmp_path / "j" / "policy.json")
    obs = rng.normal(0, 3, (2000, 11)).astype(np.float32)
    np.testing.assert_array_equal(loaded.quantize_obs(obs), original.quantize_obs(obs))
    np.testing.assert_array_equal(loaded.act(original.obs_norm(obs)), original.act(original.obs_norm(obs)))


def test_c_export_prints_sizes_and_builds(capsys, tmp_path, bundle_dir, rng):
    code, out, _ = run(capsys, "export", bundle_dir, "--format", "c", "--out", tmp_path / "c")
    assert code == 0 and "flash:" in out and "RAM:" in out
    src = tmp_path / "c"
    assert sorted(p.name for p in src.iterdir()) == ["qpolicy.c", "qpolicy.h", "qpolicy_config.h", "qpolicy_model.h"]
    assert "#define QP_WEIGHT_BITS 2" in (src / "qpolicy_config.h").read_text()
    exe = c_export.compile_harness(src, tmp_path / "harness")
    model = bundles.read(bundle_dir).integer
    obs = hard_observations(model, rng, 1000) * 3  # raw observations around the bundle's normalization
    p = subprocess.run([str(exe), "float"], input=obs.astype(np.float32).tobytes(), capture_output=True, check=True)
    raw = np.frombuffer(p.stdout, np.uint8).reshape(len(obs), 11 + 3 * 3)
    o = model.run_int(model.quantize_obs(obs))[-1]
    np.testing.assert_array_equal(raw[:, :11].view(np.int8), model.quantize_obs(obs))
    np.testing.assert_array_equal(raw[:, 11:14].view(np.int8), o)


@pytest.mark.skipif(importlib.util.find_spec("qsearch.hw.qonnx_export") is None, reason="no QONNX exporter yet")
def test_qonnx_export(capsys, tmp_path, bundle_dir):
    import onnx

    code, out, _ = run(capsys, "export", bundle_dir, "--format", "qonnx", "--out", tmp_path / "q")
    assert code == 0 and "checked against the integer engine" in out
    graph = onnx.load(tmp_path / "q" / "policy.onnx").graph
    assert sum(n.op_type == "Quant" for n in graph.node) >= 4 and sum(n.op_type == "Gemm" for n in graph.node) == 3


@pytest.mark.skipif(importlib.util.find_spec("qsearch.hw.build_folder") is None, reason="no FINN build folder writer yet")
def test_finn_export(capsys, tmp_path, bundle_dir):
    code, out, _ = run(capsys, "export", bundle_dir, "--format", "finn", "--out", tmp_path / "f")
    assert code == 0 and "FINN build folder" in out
    folder = tmp_path / "f" / "finn_build"
    assert {"dataflow.onnx", "folding_config.json", "build.py", "build.json"} <= {p.name for p in folder.iterdir()}
    assert "build_dataflow_cfg" in (folder / "build.py").read_text()
    folding = json.loads((folder / "folding_config.json").read_text())
    assert any("PE" in attrs for attrs in folding.values())  # a folding was chosen for the MVAU layers
    assert json.loads((folder / "build.json").read_text())["finn_estimates"]["LUT"] > 0


def one_line_error(capsys, out_dir, *argv):
    return refused(capsys, out_dir, "export", *argv)


def test_errors(capsys, tmp_path, bundle_dir):
    out = tmp_path / "out"
    assert "unknown export format 'vhdl'" in one_line_error(capsys, out, bundle_dir, "--format", "vhdl")
    fp32 = write_bundle(tmp_path / "fp32", QuantActor(11, 3, PolicyConfig(width=8, quant=None)))
    assert "without an integer model" in one_line_error(capsys, out, fp32, "--format", "c")
    assert "neither a bundle folder nor a run id" in one_line_error(capsys, out, "0123abcd", "--format", "json")
    (tmp_path / "junk").mkdir()
    assert "not a qsearch bundle" in one_line_error(capsys, out, tmp_path / "junk", "--format", "json")
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "export", bundle_dir, "--format", "json", "--out", out)
    assert code == 2 and "--force" in err and (out / "keep.txt").read_text() == "mine"


def test_bundle_by_run_id(capsys, tmp_path, bundle_dir, monkeypatch):
    """A bundle logged to a real MLflow store (SQLite) is exported by its run id; an id the store does
    not hold is one line and exit 2."""
    import mlflow

    from qsearch.trial_record import BUNDLE_ARTIFACT

    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)  # creating the store logs INFO lines: done before the commands
    run_id = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "art"))).info.run_id
    client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
    capsys.readouterr()
    code, out, _ = run(capsys, "export", run_id, "--format", "json", "--tracking-uri", uri, "--out", tmp_path / "j")
    assert code == 0 and str(tmp_path / "cache") in out
    assert read_json(tmp_path / "j" / "policy.json").layers[0].weight.tolist() == \
        bundles.read(bundle_dir).integer.layers[0].weight.tolist()
    err = one_line_error(capsys, tmp_path / "out", "0123456789abcdef0123456789abcdef", "--format", "c",
                         "--tracking-uri", uri)
    assert "no run '0123456789abcdef0123456789abcdef'" in err

"""`qsearch export RUN --format mlflow`: the run's policy registered in a real (SQLite) tracking store,
loaded back by name and version, giving the integer engine's actions."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from qsearch import bundle as bundles
from qsearch.trial_record import BUNDLE_ARTIFACT
from commands import run


def test_registered_model_round_trip(capsys, tmp_path, bundle_dir, monkeypatch):
    import mlflow

    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("select_hopper", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(exp).info.run_id
    client.log_param(run_id, "env_id", "Hopper-v5")
    client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
    client.set_terminated(run_id)
    capsys.readouterr()
    for version in (1, 2):  # a new version per export
        code, out, err = run(capsys, "export", run_id, "--format", "mlflow", "--tracking-uri", uri)
        assert code == 0, err
        assert f"registered model select_hopper-Hopper-v5 version {version}" in out
    assert os.environ.get("MLFLOW_TRACKING_URI") != uri  # the export left the environment as it was
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the test's own loading: put back after it
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    model = mlflow.pyfunc.load_model("models:/select_hopper-Hopper-v5/2")
    b = bundles.read(bundle_dir)
    rng = np.random.default_rng(0)
    obs = (rng.normal(0, 3, (500, 11)) * b.obs_norm.std + b.obs_norm.mean).astype(np.float32)
    obs[0, 0] = np.nan
    actions = model.predict(obs)
    engine = b.integer.act(b.integer.obs_norm(obs)) * b.action_scale + b.action_bias
    np.testing.assert_array_equal(actions, engine.astype(np.float32))
    assert len(np.unique(actions[:, 0])) > 3  # the policy does respond to its input
    sig = model.metadata.signature
    assert list(sig.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 11]
    assert list(sig.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 3]
    local = mlflow.artifacts.download_artifacts("models:/select_hopper-Hopper-v5/2", dst_path=str(tmp_path / "dl"))
    names = {p.name for p in Path(local).rglob("*")}
    assert {"qpolicy.c", "qpolicy_model.h", "policy.onnx", "bundle.json", "requirements.txt"} <= names
    reqs = next(Path(local).rglob("requirements.txt")).read_text()
    assert "qsearch" in reqs
    versions = client.search_model_versions("name='select_hopper-Hopper-v5'")
    assert sorted(int(v.version) for v in versions) == [1, 2] and {v.run_id for v in versions} == {run_id}


def test_mlflow_format_errors(capsys, tmp_path, bundle_dir):
    code, _, err = run(capsys, "export", bundle_dir, "--format", "mlflow", "--tracking-uri",
                       f"sqlite:///{tmp_path / 'm.db'}")
    assert code == 2 and err.count("\n") == 1 and "give the run id" in err


def test_the_model_class_defines_without_mlflow_advice():
    """MLflow advises, on stderr, whenever a PythonModel without a predict() type hint is defined."""
    done = subprocess.run([sys.executable, "-W", "default", "-c", "import qsearch.deploy.mlflow_model"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "type hint" not in done.stderr.lower()

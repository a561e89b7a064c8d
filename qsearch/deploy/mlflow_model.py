"""`qsearch export RUN --format mlflow`: a run's policy as a registered MLflow model.

The model is a pyfunc whose `predict` runs qsearch's integer engine on raw observations (float32,
one row per observation) and returns the actions in the environment's units. A recurrent policy's
`predict` takes its rows as one episode's consecutive steps from the episode's start: the hidden
state starts at zero with every call and is carried from row to row (call it with the whole history
so far, or run the exported C, which keeps the state between calls). Its artifacts are the
bundle, with the C and QONNX exports beside it; its requirements name qsearch, so it loads wherever
qsearch is installed:

    mlflow.pyfunc.load_model("models:/selection_pendulum-InvertedPendulum-v5/1").predict(obs)

One registered model per search space and task, `<space>-<env id>` (the space is the run's
experiment); each export adds a version. The model is logged to the run itself, so the registry
links every version to the trial that trained it.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.models import infer_signature
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from qsearch import bundle as bundles
from qsearch import trial_record
from qsearch.errors import QsearchError

ARTIFACT_BUNDLE, ARTIFACT_C, ARTIFACT_QONNX = "bundle", "c", "qonnx"  # the model's own artifacts
REQUIREMENTS = ["qsearch"]
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class QsearchIntegerPolicy(mlflow.pyfunc.PythonModel):
    """The pyfunc: the bundle's integer engine on raw observations. Pickled by reference to this
    module, so loading it needs qsearch installed (the model's requirements say so)."""

    def load_context(self, context):
        self.bundle = bundles.read(Path(context.artifacts[ARTIFACT_BUNDLE]))

    # The hint is one MLflow accepts without inferring a schema from it (the signature comes from an
    # example); without any, MLflow prints advice to add one whenever this class is defined.
    def predict(self, context, model_input: np.ndarray, params=None):
        obs = np.asarray(model_input, np.float32).reshape(-1, self.bundle.integer.obs_dim)
        return act(self.bundle, obs)


def act(b: bundles.Bundle, obs: np.ndarray) -> np.ndarray:
    """Raw observations -> actions in the environment's units, through the integer engine (a recurrent
    policy: the rows are one episode's steps from its start, see the module's docstring)."""
    x = b.integer.obs_norm(np.asarray(obs, np.float32))
    if b.integer.recurrent:
        policy = b.integer.policy()
        a = np.array([policy(row[None])[0] for row in x], np.float32).reshape(len(x), b.integer.act_dim)
    else:
        a = b.integer.act(x)
    return (a * b.action_scale + b.action_bias).astype(np.float32)


@contextlib.contextmanager
def _narration_hidden():
    """MLflow narrates model logging (a pickling caution, "Successfully registered model") as log
    lines and prints on stderr; the lines `register` returns say what was done. --verbose
    (MLFLOW_LOGGING_LEVEL=INFO) shows MLflow's own."""
    if os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper() == "INFO":
        yield
        return
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def register(run_id: str, uri: str, bundle_path: Path, write_exports) -> list[str]:
    """Log the run's policy as a pyfunc model to the run and register it; returns what was done.
    write_exports(bundle, {"c": folder, "qonnx": folder}) writes the exports attached to the model."""
    b = bundles.read(bundle_path)
    if b.integer is None:
        raise QsearchError(f"run {run_id} holds an FP32 policy without an integer model; the MLflow model runs "
                           "the integer engine (train with quantization, or run `qsearch ptq` on it)")
    name = trial_record.registered_model_name(uri, run_id)
    example = b.integer.obs_norm.mean[None, :].astype(np.float32)
    signature = infer_signature(example, act(b, example))
    with tempfile.TemporaryDirectory() as tmp:
        exports = {ARTIFACT_C: Path(tmp) / ARTIFACT_C, ARTIFACT_QONNX: Path(tmp) / ARTIFACT_QONNX}
        for folder in exports.values():
            folder.mkdir()
        write_exports(b, exports)
        # (a recurrent policy has no QONNX export: its folder stays empty and is left out)
        artifacts = {ARTIFACT_BUNDLE: str(bundle_path), **{k: str(v) for k, v in exports.items() if any(v.iterdir())}}
        # MLflow's fluent API logs models; its URIs go into os.environ and into two module globals of
        # mlflow, all put back afterwards: a global left set would send every later MlflowClient made
        # without a registry URI in this process to this store's registry (mlflow 3.17 has no public
        # way to read the globals unresolved, hence the private names)
        saved = {k: os.environ.get(k) for k in URI_VARIABLES}
        saved_globals = (tracking_utils._tracking_uri, registry_utils._registry_uri)
        try:
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            with mlflow.start_run(run_id=run_id), _narration_hidden():
                info = mlflow.pyfunc.log_model(name=trial_record.MODEL_ARTIFACT, python_model=QsearchIntegerPolicy(),
                                               artifacts=artifacts, signature=signature,
                                               pip_requirements=REQUIREMENTS, registered_model_name=name)
        finally:
            mlflow.set_tracking_uri(saved_globals[0])
            mlflow.set_registry_uri(saved_globals[1])
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    version = info.registered_model_version
    return [f"registered model {name} version {version} (run {run_id}, {uri})",
            f"load: mlflow.pyfunc.load_model(\"models:/{name}/{version}\").predict(observations)"]

"""MLflow tracking: one parent run per search, one nested child run per trial.

Thin wrappers over MlflowClient. Nesting is MLflow's own convention: a child run carries the tag
`mlflow.parentRunId`, which the UI uses to fold trials under their search.
"""
from __future__ import annotations

import os
from pathlib import Path

from qsearch.errors import QsearchError

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "qsearch.trial_id"


def setup_environment() -> None:
    """Set before MLflow (or Ray) starts; users get the same defaults as the tests."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def default_uri(workdir: Path) -> str:
    # A SQLite store in the search's folder: MLflow's file store is deprecated and refuses to work
    # without MLFLOW_ALLOW_FILE_STORE.
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def client(uri: str):
    setup_environment()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment(uri: str, name: str, workdir: Path) -> str:
    """The experiment named after the search, created if missing. With a local store the artifacts
    go to the search's folder (MLflow's default is ./mlruns under whatever folder is current)."""
    c = client(uri)
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:"):
            location = (Path(workdir).resolve() / "mlartifacts").as_uri()
        return c.create_experiment(name, artifact_location=location)
    except Exception as e:  # an unreachable server is a user error: say so in one line
        if isinstance(e, QsearchError):
            raise
        raise QsearchError(f"MLflow tracking store {uri}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def start_parent(uri: str, experiment_id: str, name: str, params: dict) -> str:
    c = client(uri)
    run = c.create_run(experiment_id, run_name=name, tags={"qsearch.kind": "search"})
    log_params(c, run.info.run_id, params)
    return run.info.run_id


def log_params(c, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    # MLflow caps a param value at 6,000 characters; ours are short, but never fail a trial on it.
    items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):  # log_batch takes at most 100 params per call
        c.log_batch(run_id, params=items[i:i + 100])


def start_child(uri: str, experiment_id: str, parent_run_id: str, trial_id: str, name: str, params: dict):
    """A fresh child run for a trial. A run left RUNNING by an earlier attempt of the same trial (a
    retry, or a driver killed mid-search) is marked KILLED, so the finished children are exactly
    the finished trials."""
    c = close_stale(uri, experiment_id, trial_id, "KILLED")
    run = c.create_run(experiment_id, run_name=name, tags={PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id,
                                                           "qsearch.kind": "trial"})
    log_params(c, run.info.run_id, params)
    return c, run.info.run_id


def close_stale(uri: str, experiment_id: str, trial_id: str, status: str):
    """End the runs of a trial that an earlier attempt left RUNNING with `status`."""
    c = client(uri)
    stale = c.search_runs([experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and attributes.status = 'RUNNING'")
    for r in stale:
        c.set_terminated(r.info.run_id, status)
    return c


def log_metrics(c, run_id: str, metrics: dict, step: int) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
    if items:
        c.log_batch(run_id, metrics=items)

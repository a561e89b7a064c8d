"""MLflow plumbing: the environment, a client for a tracking URI, experiments, batched logging and
paged reads. Nothing here knows what a qsearch run records: that is qsearch/trial_record.py.

Thin wrappers over MlflowClient, so that every command reaches a store the same way and says in one
line when it cannot.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from qsearch.errors import QsearchError

PARAMS_PER_CALL = 100  # MLflow's log_batch takes at most 100 params per call
PAGE_SIZE = 1_000  # runs per search_runs request while paging through a store
# Experiments per search_experiments request: the most MLflow guarantees every server answers
# (service.proto, SearchExperiments.max_results: "at least 1,000 but may support more"; its SQL store
# takes up to 50,000), and also MLflow's default page, beyond which it says nothing without paging.
EXPERIMENT_PAGE_SIZE = 1_000


def setup_environment(verbose: bool = False) -> None:
    """Set before MLflow (or Ray) starts; users get the same defaults as the tests. An environment
    variable the user set wins. MLflow logs INFO lines (store creation, migrations) unless told
    otherwise; they say nothing a qsearch user acts on, so they show only with --verbose."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if verbose:
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO"
    else:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def default_uri(workdir: Path) -> str:
    # A SQLite store in the search's folder: MLflow's file store is deprecated and refuses to work
    # without MLFLOW_ALLOW_FILE_STORE.
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def store_error(uri: str, e: Exception) -> QsearchError:
    """An unreachable or foreign tracking store, in one line."""
    first = str(e).splitlines()[0] if str(e) else ""
    return QsearchError(f"MLflow tracking store {uri}: {type(e).__name__}: {first}")


def client(uri: str, create: bool = False):
    """A client for `uri`. A SQLite store that does not exist is refused, not created (MLflow would
    create an empty one and then report that the run is missing), unless `create` (a new search)."""
    setup_environment()
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not create:
            if not path.is_file():
                raise QsearchError(f"MLflow tracking store {uri}: {path} does not exist")
        elif path.parent.is_dir():
            # MlflowClient creates a new store's tables (MLflow's schema migrations) as it starts. Two
            # processes doing that at once (two selections started together on one new store) left it
            # broken for good, measured: every later command failed with "table _alembic_tmp_experiments
            # already exists". So the first creates it under a lock beside it, and the other waits.
            fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                return MlflowClient(tracking_uri=uri)
            finally:
                os.close(fd)
    return MlflowClient(tracking_uri=uri)


def experiment(uri: str, name: str, workdir: Path) -> str:
    """The experiment named after the search, created (with its store) if missing. With a local store
    the artifacts go to the search's folder (MLflow's default is ./mlruns under the current folder)."""
    c = client(uri, create=True)
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:"):
            location = (Path(workdir).resolve() / "mlartifacts").as_uri()
        try:
            return c.create_experiment(name, artifact_location=location)
        except Exception:
            # Created by another process since we looked (two selections sharing a store, started together).
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
    except Exception as e:  # an unreachable server is a user error: say so in one line
        if isinstance(e, QsearchError):
            raise
        raise store_error(uri, e) from None


def all_experiments(c, page_size: int | None = None) -> list[str]:
    """The ids of every active experiment in the store, page by page (EXPERIMENT_PAGE_SIZE unless given)."""
    return [e.experiment_id for e in _all_pages(c.search_experiments, page_size or EXPERIMENT_PAGE_SIZE)]


def search_all(c, experiment_ids: list[str], filter_string: str, page_size: int = PAGE_SIZE) -> list:
    """Every run matching `filter_string`, page by page."""
    if not experiment_ids:
        return []
    return _all_pages(lambda **page: c.search_runs(experiment_ids, filter_string=filter_string, **page), page_size)


def _all_pages(search, page_size: int) -> list:
    """Every item of a paged MLflow search: it answers one page per call (a PagedList whose token
    names the next page, empty after the last)."""
    items, token = [], None
    while True:
        page = search(max_results=page_size, page_token=token)
        items += list(page)
        token = page.token
        if not token:
            return items


def log_params(c, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), PARAMS_PER_CALL):
        c.log_batch(run_id, params=items[i:i + PARAMS_PER_CALL])


def log_metrics(c, run_id: str, metrics: dict, step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
    if items:
        c.log_batch(run_id, metrics=items)

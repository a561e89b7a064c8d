"""MLflow plumbing: the environment, a client for a tracking URI, experiments, batched logging and
paged reads. Nothing here knows what a qsearch run records: that is qsearch/trial_record.py.

Thin wrappers over MlflowClient, so that every command reaches a store the same way and says in one
line when it cannot.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from qsearch.errors import QsearchError

PARAMS_PER_CALL = 100  # MLflow's log_batch takes at most 100 params per call
PAGE_SIZE = 1_000  # runs per search_runs request while paging through a store
# Experiments per search_experiments request: the most MLflow guarantees every server answers
# (service.proto, SearchExperiments.max_results: "at least 1,000 but may support more"; its SQL store
# takes up to 50,000), and also MLflow's default page, beyond which it says nothing without paging.
EXPERIMENT_PAGE_SIZE = 1_000
METRICS_PER_CALL = 1_000  # MLflow's log_batch takes at most 1,000 metrics per call
# How long one request to a tracking server may take inside `one_attempt` (MLflow's default is 120 s).
# A log_batch or a bundle's upload answers in milliseconds; a server that takes longer is treated as
# down, and the caller's retry sends the request again.
REQUEST_TIMEOUT = 10
# HTTP answers that say "try again later" (MLflow's own list of transient responses, request_utils.py)
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


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


def metric_items(metrics: dict, step: int) -> list:
    """MLflow Metrics at `step`, stamped now: the numbers among `metrics`."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]


def log_metrics(c, run_id: str, metrics: dict, step: int) -> None:
    log_metric_items(c, run_id, metric_items(metrics, step))


def log_metric_items(c, run_id: str, items: list) -> None:
    for i in range(0, len(items), METRICS_PER_CALL):
        c.log_batch(run_id, metrics=items[i:i + METRICS_PER_CALL])


@contextmanager
def one_attempt():
    """MLflow requests inside make one attempt of at most REQUEST_TIMEOUT seconds.

    MLflow's REST client retries a failed request itself (mlflow 3.17, environment_variables.py and
    urllib3's Retry: MLFLOW_HTTP_REQUEST_MAX_RETRIES=7 retries, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=2,
    so waits of 0, 4, 8, 16, 32, 64 and 120 s, plus up to 1 s of jitter each; MLFLOW_HTTP_REQUEST_TIMEOUT
    =120 s per attempt): a request rides out about 4 minutes of a stopped server, holding its caller all
    along. qsearch's writes retry in trial_record instead, with a buffer and a limit of their own, so
    they ask MLflow for one attempt. MLflow reads these variables at each request, and offers no other
    per-call setting; they are set for the block and restored after it (a trial's worker and the
    driver make their MLflow calls from one thread)."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)}
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def transient(e: BaseException) -> bool:
    """Whether a failed MLflow call may succeed if tried again: the store did not answer (refused,
    reset, timed out) or answered that it is unavailable or overloaded (TRANSIENT_STATUS), rather than
    refusing the request itself (a bad value, a missing run)."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(e, MlflowException):  # MLflow wraps a connection error as an INTERNAL_ERROR (500)
        return e.get_http_status_code() in TRANSIENT_STATUS
    return isinstance(e, (ConnectionError, TimeoutError, requests.RequestException))

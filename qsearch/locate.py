"""Find policy bundles: a bundle folder, an MLflow run holding one, or the runs a selection tagged.

Export and hardware commands take a bundle reference without caring where it came from:

    locate_bundle("runs/x/bundle")                    # a folder: returned as it is
    locate_bundle("3f2a...", "sqlite:///runs/x/mlflow.db")  # a run id: its `bundle/` artifacts,
                                                      # downloaded once into a local cache folder
    selected_bundles("runs/select_pendulum")          # the bundles of the runs tagged qsearch.selected=true

The cache folder is $QSEARCH_CACHE, or ~/.cache/qsearch; a run's bundle lands in
<cache>/bundles/<run id>/bundle, written to a temporary folder first and renamed into place.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from qsearch import run_folder, tracking
from qsearch import trial_record as record
from qsearch.errors import QsearchError

def cache_dir() -> Path:
    return Path(os.environ.get("QSEARCH_CACHE") or Path.home() / ".cache" / "qsearch")


def tracking_uri_of(workdir_or_uri: str | Path) -> str:
    """The MLflow tracking URI of a search or selection folder; a URI is returned as it is."""
    text = str(workdir_or_uri)
    if "://" in text or text.startswith("sqlite:"):
        return text
    workdir = Path(text)
    if not workdir.is_dir():
        raise QsearchError(f"{workdir}: no such folder (expected a search's folder or a tracking URI)")
    return run_folder.tracking_uri(workdir)


def locate_bundle(ref: str | Path, tracking_uri: str | None = None) -> Path:
    """A local bundle folder for `ref`: a bundle folder, or the id of an MLflow run with a bundle."""
    from qsearch.bundle import MARKER

    path = Path(ref)
    if path.is_dir():
        if not (path / MARKER).is_file():
            raise QsearchError(f"{path} is not a qsearch bundle: {MARKER} is missing")
        return path
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise QsearchError(f"{ref} is neither a bundle folder nor a run id with a tracking URI "
                           "(give --tracking-uri or set MLFLOW_TRACKING_URI)")
    return _download(str(ref), uri)


def _download(run_id: str, uri: str) -> Path:
    from mlflow.exceptions import MlflowException

    from qsearch.bundle import MARKER

    c = tracking.client(uri)
    try:
        c.get_run(run_id)
    except MlflowException:
        raise QsearchError(f"no run {run_id!r} in the tracking store {uri}") from None
    except Exception as e:  # an unreachable server: one line
        raise tracking.store_error(uri, e) from None
    bundle = record.BUNDLE_ARTIFACT
    dest = cache_dir() / "bundles" / run_id / bundle
    if (dest / MARKER).is_file():  # run artifacts never change once logged: the cached copy is good
        return dest
    if not any(f.path == f"{bundle}/{MARKER}" for f in c.list_artifacts(run_id, bundle)):
        raise QsearchError(f"run {run_id} has no bundle in its artifacts (a failed or unfinished trial?)")
    # MLflow draws a progress bar per download: noise in a command's output, a handful of files here.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download.", dir=dest.parent))
    try:
        c.download_artifacts(run_id, bundle, str(tmp))
        shutil.rmtree(dest, ignore_errors=True)
        (tmp / bundle).rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def selected_trials(workdir_or_tracking_uri: str | Path) -> tuple[list[record.Trial], str]:
    """The trials a selection tagged qsearch.selected=true, and the store's URI; refused when none."""
    uri = tracking_uri_of(workdir_or_tracking_uri)
    trials = record.selected_trials(uri)
    if not trials:
        raise QsearchError(f"no selected runs (tag {record.SELECTED_TAG}=true) in {uri}: run `qsearch select` first")
    return trials, uri


def selected_bundles(workdir_or_tracking_uri: str | Path) -> list[Path]:
    """The bundles of the runs a selection tagged qsearch.selected=true (downloaded if needed)."""
    trials, uri = selected_trials(workdir_or_tracking_uri)
    return [locate_bundle(t.run_id, uri) for t in trials]

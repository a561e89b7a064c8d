"""Bundle references: folders, MLflow run ids (real SQLite store, real artifacts), selected runs."""
import json

import numpy as np
import pytest

from qsearch import bundle as bundles
from qsearch.config import PolicyConfig, TrainConfig
from qsearch.errors import QsearchError
from qsearch import tracking
from qsearch import trial_record as record
from qsearch.locate import locate_bundle, selected_bundles
from qsearch.obs_norm import ObsNorm
from qsearch.quant.actor import QuantActor


def write_bundle(out, seed=0):
    cfg = TrainConfig(env_id="InvertedPendulum-v5", policy=PolicyConfig(width=8, depth=1, quant=None),
                      total_steps=10, seed=seed)
    actor = QuantActor(4, 1, cfg.policy)
    b = bundles.Bundle(cfg, actor, ObsNorm.identity(4), np.ones(1, np.float32), np.zeros(1, np.float32))
    return bundles.write(b, out)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A SQLite store holding two trial runs with bundles, one tagged selected, and one run without."""
    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    workdir = tmp_path / "search"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    exp = tracking.experiment(uri, "locate-test", workdir)
    parent = record.start_search(uri, exp, "locate-test", {})
    runs = []
    for seed in (0, 1):
        out = write_bundle(tmp_path / f"b{seed}", seed)
        c, run = record.start_trial(uri, exp, parent, f"t{seed}", f"seed {seed}",
                                    record.trial_params(bundles.read(out).config, "locate-test", 1))
        record.finish_trial(c, run, {record.FINAL_RETURN: 1.0}, 10, str(out))
        record.end_trial(c, run)
        runs.append(run)
    record.set_selected(uri, ["InvertedPendulum-v5"], [runs[1]])
    empty = c.create_run(exp).info.run_id
    return workdir, uri, runs, empty


def test_folder_is_returned_as_it_is(tmp_path):
    out = write_bundle(tmp_path / "b")
    assert locate_bundle(out) == out
    (tmp_path / "foreign").mkdir()
    with pytest.raises(QsearchError, match="not a qsearch bundle"):
        locate_bundle(tmp_path / "foreign")


def test_run_id_downloads_the_bundle_once(store, tmp_path):
    workdir, uri, runs, _ = store
    path = locate_bundle(runs[0], uri)
    assert path.is_relative_to(tmp_path / "cache")
    b = bundles.read(path)
    assert b.config.seed == 0
    assert locate_bundle(runs[0], uri) == path  # cached: the same folder, no second download


def test_unknown_run_and_run_without_bundle_are_one_line_errors(store, monkeypatch):
    workdir, uri, _, empty = store
    with pytest.raises(QsearchError, match="no run 'deadbeef'"):
        locate_bundle("deadbeef", uri)
    with pytest.raises(QsearchError, match="has no bundle"):
        locate_bundle(empty, uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(QsearchError, match="neither a bundle folder nor a run id"):
        locate_bundle("deadbeef")


def test_selected_bundles_from_folder_or_uri(store):
    workdir, uri, runs, _ = store
    for ref in (workdir, uri):
        paths = selected_bundles(ref)
        assert len(paths) == 1 and bundles.read(paths[0]).config.seed == 1


def test_no_selected_runs_says_so(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    tracking.experiment(tracking.default_uri(workdir), "nothing", workdir)
    with pytest.raises(QsearchError, match="no selected runs"):
        selected_bundles(workdir)
    with pytest.raises(QsearchError, match="holds no search"):
        selected_bundles(tmp_path)


def test_eval_takes_a_run_id(store, capsys):
    from qsearch.cli import main

    _, uri, runs, _ = store
    assert main(["eval", runs[1], "--tracking-uri", uri, "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["env"] == "InvertedPendulum-v5"

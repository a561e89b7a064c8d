"""The set-up the README's cluster guide recommends, end to end: an MLflow tracking server backed by
PostgreSQL (from the `pgserver` wheel, through psycopg 3), both started here on loopback ports, with
a search and a selection on a Ray head tracked through it.

One PostgreSQL, one MLflow server and one Ray head for the module (PostgreSQL ~2 s, MLflow ~15 s and
Ray ~5 s to start).
"""
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from qsearch import trial_record as record
from qsearch import tracking
from qsearch.search.run import search
from qsearch.select.selection import select
from select_store import ENV, fill, selection_file
from services import BIN, free_port, space, start, start_mlflow, start_postgres, stop, stop_postgres, stop_ray

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(ray address, MLflow URL, PostgreSQL) with the MLflow server's store in that PostgreSQL."""
    root = tmp_path_factory.mktemp("tracking_server")
    ray_port = free_port()
    ray = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(ray_port),
                 "--include-dashboard", "false", "--disable-usage-stats"], open(root / "ray.log", "w"))
    pg = mlflow = None
    try:
        pg = start_postgres(root)
        mlflow, url = start_mlflow(pg.uri, root)
        yield f"127.0.0.1:{ray_port}", url, pg
    finally:
        if mlflow is not None:
            stop(mlflow)  # before PostgreSQL: its connections end first
        if pg is not None:
            stop_postgres(pg)
        stop_ray(ray)


def sql(pg, query: str, *args) -> list[tuple]:
    """Rows straight from the server's database, not through MLflow."""
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="mlflow") as c:
        return c.execute(query, args).fetchall()


def artifact_bytes(url: str, run_id: str, path: str) -> bytes:
    r = requests.get(f"{url}/get-artifact", params={"run_id": run_id, "path": path}, timeout=30)
    r.raise_for_status()
    return r.content


def check_trial(url: str, run, steps: list[int]) -> None:
    """A trial's run as the trainable leaves it: FINISHED, its curve over `steps`, its summary and
    its bundle, downloadable through the server."""
    assert run.info.status == "FINISHED"
    c = tracking.client(url)
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, record.EVAL_RETURN)) == steps
    assert {record.FINAL_RETURN, "cost", "train_seconds", "qf_loss", "actor_loss"} <= set(run.data.metrics)
    files = {f.path for f in c.list_artifacts(run.info.run_id, record.BUNDLE_ARTIFACT)}
    assert {"bundle/bundle.json", "bundle/actor.pt", "bundle/norm.npz", "bundle/eval.json"} <= files
    evaluation = json.loads(artifact_bytes(url, run.info.run_id, "bundle/eval.json"))
    assert evaluation["torch"]["mean"] == pytest.approx(run.data.metrics[record.FINAL_RETURN])


def test_search_through_a_postgresql_backed_server(server, tmp_path):
    address, url, pg = server
    started = time.perf_counter()
    out = search(space(tmp_path, "pg-search"), workdir=tmp_path / "w", address=address, tracking_uri=url)
    print(f"search of 4 trials: {time.perf_counter() - started:.0f} s")
    assert [r["status"] for r in out.rows] == ["done"] * 4

    c = tracking.client(url)
    exp = c.get_experiment_by_name("pg-search").experiment_id
    parent = c.get_run(out.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_done"] == 4
    trials = tracking.search_all(c, [exp], f"tags.`{record.KIND_TAG}` = '{record.TRIAL}'")
    assert len(trials) == 4
    assert {(t.data.params["configuration"].split("/")[1], t.data.params["seed"]) for t in trials} == \
        {(conf, seed) for conf in ("fp32", "i8w2a2o8") for seed in ("0", "1")}
    for t in trials:
        assert t.data.tags[record.PARENT_TAG] == out.parent_run_id
        check_trial(url, t, [150, 300])
    # The bundle that reached the server is the one the trial wrote into Tune's storage.
    for folder in (p for p in (tmp_path / "w" / "ray" / "pg-search").iterdir() if (p / "params.json").exists()):
        trial = json.loads((folder / "params.json").read_text())
        [run] = [t for t in trials if t.data.params["configuration"] == trial["configuration"]
                 and t.data.params["seed"] == str(trial["seed"])]
        assert artifact_bytes(url, run.info.run_id, "bundle/actor.pt") == (folder / "bundle" / "actor.pt").read_bytes()

    # And the records live in PostgreSQL: the runs and every evaluation point, read with SQL.
    rows = sql(pg, "select r.status, count(*) from runs r join experiments e on r.experiment_id = e.experiment_id "
                   "where e.name = %s group by r.status", "pg-search")
    assert rows == [("FINISHED", 5)]  # the search's run and its 4 trials
    [(points,)] = sql(pg, "select count(*) from metrics m join runs r on m.run_uuid = r.run_uuid "
                          "join experiments e on r.experiment_id = e.experiment_id "
                          "where e.name = %s and m.key = %s", "pg-search", record.EVAL_RETURN)
    assert points == 4 * 2


def test_selection_through_a_postgresql_backed_server(server, tmp_path):
    # FP32 returns 0 (an earlier search's trials, written through the server as the trainable writes
    # them): every quantized value matches, so each stage picks its smallest value and trains nothing
    # larger (speculation 0). Core bits 2 at width 64 and width 16 are trained (2 seeds each); input
    # bits 8 is the earlier stages' pick, so stage 3 trains nothing.
    address, url, pg = server
    path = selection_file(tmp_path, "pg-selection", top={"seeds": [0, 1], "steps": 200, "eval_every": 100},
                          speculation=0, widths=[16, 32], input_bits=[8])
    workdir = tmp_path / "sel"
    workdir.mkdir()
    assert fill(url, workdir, path, lambda conf, seed: 0.0 if conf.policy.quant is None else None,
                experiment="pg-earlier-search") == 2
    started = time.perf_counter()
    out = io.StringIO()
    outcome = select(path, workdir=workdir, tracking_uri=url, address=address, noise=False, stream=out)
    print(f"selection of 4 trained trials: {time.perf_counter() - started:.0f} s")
    text = out.getvalue()
    assert "stage core: 8 trials, 2 reused from the tracking store, at most 6 to train" in text
    chosen = outcome.selected[ENV]
    assert (chosen.core_bits, chosen.width, chosen.input_bits) == (2, 16, 8)

    c = tracking.client(url)
    trained = [r for r in tracking.search_all(c, tracking.all_experiments(c),
                                              f"tags.`{record.KIND_TAG}` = '{record.TRIAL}'")
               if r.data.params.get("env_id") == ENV and r.data.params["steps"] == "200"
               and r.data.params["fp32"] == "False"]
    assert sorted(r.data.params["configuration"].split("/")[2] for r in trained) == ["h16x2", "h16x2", "h64x2", "h64x2"]
    for r in trained:
        check_trial(url, r, [100, 200])

    # The selection's result, recorded: its run FINISHED with its cost and files, its picks tagged.
    [run] = [r for r in tracking.search_all(c, tracking.all_experiments(c),
                                            f"tags.`{record.KIND_TAG}` = '{record.SELECTION}'")
             if r.data.params["space"] == str(path.resolve())]
    assert run.info.status == "FINISHED"
    assert run.data.metrics[record.STEPS_SPENT] == 4 * 200
    saved = json.loads(artifact_bytes(url, run.info.run_id, "selection.json"))
    assert saved["selected"][ENV]["configuration"] == chosen.configuration
    assert saved == json.loads((workdir / "selection.json").read_text())
    tagged = [t for t in record.selected_trials(url) if t.configuration == chosen.configuration]
    assert sorted(t.seed for t in tagged) == [0, 1]
    assert {t.run_id for t in tagged} == {t.run_id for t in chosen.trials}


@pytest.mark.parametrize("args, message", [
    (["--stores", "nfs"], "tracking_load: --stores: 'nfs' is not one of sqlite, server"),
    (["--trials", "0"], "tracking_load: --trials, --writes and --server-workers must be at least 1"),
    (["--trials", "1000"], "tracking_load: --trials 1000: at 0.0625 CPU each they would not all run at once"),
    (["--server-env", "POOL"], "tracking_load: --server-env: 'POOL' is not NAME=VALUE"),
    (["--out", "other.json"], "tracking_load: other.json: not a data file of this bench"),
    (["--report", "missing.json"], "tracking_load: [Errno 2] No such file or directory: 'missing.json'"),
    (["--report", "other.json"], "tracking_load: other.json: not a data file of this bench"),
])
def test_the_load_bench_refuses_bad_input_in_one_line(tmp_path, args, message):
    (tmp_path / "other.json").write_text('{"bench": "open_synthesis"}')
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "tracking_load.py"), *args], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1

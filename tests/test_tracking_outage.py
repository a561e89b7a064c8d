"""The tracking server stopped for ~20 s in the middle of a search and started again (issue 25): the
trials keep training, every metric and final record arrives once, and the search ends FINISHED.

Real components: a Ray head (2 CPUs) and an `mlflow server` on SQLite, both on loopback ports; the
server is stopped with SIGTERM to its process group and started again on the same port and store.
"""
import threading
import time
from collections import Counter

import requests
import yaml

from qsearch import trial_record as record
from qsearch.search.run import search
from services import BIN, free_port, space, sqlite_store, start, start_mlflow, stop, stop_ray, wait_healthy

OUTAGE = 20  # seconds from stopping the server to starting it again (it then takes ~15 s to answer)
STEPS, EVAL_EVERY = 8_000, 2_000  # ~40 s of training per trial on an idle machine: well past the outage
PROGRESS_STEPS = list(range(1_000, STEPS + 1, 1_000))  # every 1,000 steps (rl/common.REPORT_EVERY)
EVAL_STEPS = list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))


def get(url, endpoint, **params):
    r = requests.get(f"{url}/api/2.0/mlflow/{endpoint}", params=params, timeout=30)
    r.raise_for_status()
    return r.json()


def runs(url, name):
    exp = get(url, "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]
    r = requests.post(f"{url}/api/2.0/mlflow/runs/search", json={"experiment_ids": [exp], "max_results": 100},
                      timeout=30)
    r.raise_for_status()
    return r.json().get("runs", [])


def kind(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}.get(record.KIND_TAG)


def history(url, run_id, key):
    return get(url, "metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


def test_a_search_rides_out_a_stopped_tracking_server(tmp_path):
    root = tmp_path / "services"
    root.mkdir()
    ray_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    ray = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(ray_port),
                 "--include-dashboard", "false", "--disable-usage-stats"], open(root / "ray.log", "w"))
    server = [start_mlflow(sqlite_store(root), root, port, wait=False)[0]]
    window, problems = {}, []

    def outage():
        """Stop the server once both trials have logged progress, start it again OUTAGE s later."""
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                try:
                    trials = [r for r in runs(url, "outage") if kind(r) == record.TRIAL]
                    if len(trials) == 2 and all(r["data"].get("metrics") for r in trials):
                        break
                except (requests.RequestException, KeyError):  # no experiment or run yet
                    pass
                time.sleep(0.5)
            else:
                raise AssertionError("the trials logged no progress")
            window["stop"] = time.time()
            # uvicorn closes the port at once; `mlflow server` itself did not exit within 20 s of SIGTERM
            # (measured), and stop() then kills it
            stop(server[0])
            time.sleep(max(0.0, window["stop"] + OUTAGE - time.time()))  # the fault: nothing listens on the port
            server[0] = start_mlflow(sqlite_store(root), root, port, log_name="mlflow2.log", wait=False)[0]
            wait_healthy(url, server[0], root / "mlflow2.log")
            window["back"] = time.time()
        except BaseException as e:
            problems.append(e)

    try:
        wait_healthy(url, server[0], root / "mlflow.log")
        yml = space(tmp_path, "outage", steps=STEPS, seeds=(0,))  # FP32 and 2-bit core: two trials at once
        data = yaml.safe_load(yml.read_text())
        yml.write_text(yaml.safe_dump({**data, "eval_every": EVAL_EVERY}))
        fault = threading.Thread(target=outage, daemon=True)
        fault.start()
        out = search(yml, workdir=tmp_path / "w", address=f"127.0.0.1:{ray_port}", tracking_uri=url)
        ended = time.time()
        fault.join(300)
        assert not problems, problems
        assert window["back"] < ended  # the server was down in the middle of the search

        assert [r["status"] for r in out.rows] == ["done", "done"]
        found = runs(url, "outage")
        [parent] = [r for r in found if kind(r) == record.SEARCH]
        trials = [r for r in found if kind(r) == record.TRIAL]
        assert parent["info"]["status"] == "FINISHED" and parent["info"]["run_id"] == out.parent_run_id
        assert len(trials) == 2 and {r["info"]["status"] for r in trials} == {"FINISHED"}
        for r in trials:
            run_id = r["info"]["run_id"]
            speed = history(url, run_id, "steps_per_s")
            # every progress step exactly once: nothing lost, nothing doubled
            assert sorted(m["step"] for m in speed) == PROGRESS_STEPS
            assert sorted(m["step"] for m in history(url, run_id, record.EVAL_RETURN)) == EVAL_STEPS
            assert sorted(m["step"] for m in history(url, run_id, "qf_loss")) == PROGRESS_STEPS
            for key in ("final_return", "final_return_std", "cost", "work_seconds", "train_seconds"):
                assert [m["step"] for m in history(url, run_id, key)] == [STEPS], key
            # The trial trained on while the server was down: several progress steps were logged then
            # (stamped when logged) and arrived afterwards. A write that waited for the server (MLflow's own
            # retries) would hold the trial at one step until the server was back.
            during = [m["step"] for m in speed if window["stop"] * 1000 < m["timestamp"] < window["back"] * 1000]
            assert len(during) >= 2, (window, sorted((m["step"], m["timestamp"]) for m in speed))
            files = {f["path"] for f in get(url, "artifacts/list", run_id=run_id, path="bundle")["files"]}
            assert {"bundle/bundle.json", "bundle/actor.pt", "bundle/norm.npz", "bundle/history.json"} <= files
        counts = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
        assert (counts["trials_done"], counts["trials_failed"]) == (2, 0)
    finally:
        stop(server[0])
        stop_ray(ray)

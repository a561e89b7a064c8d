"""A search against a real `mlflow server` (SQLite store) that is stopped in the middle and started
again on the same port and store: what arrives, what fails, how long the trials were held up.

    python bench/tracking_outage.py [--steps 12000] [--outage 20]

Starts its own Ray head (2 CPUs) and MLflow server on loopback ports, runs a search of two tiny
InvertedPendulum-v5 SAC trials, and once both have logged progress, stops the server (SIGTERM to its
process group), waits --outage seconds and starts it again. Prints, per trial: its run's status,
progress steps logged (and any missing or doubled), the longest gap between two consecutive progress
writes (the time a write held the trial up, plus the normal 1,000-step interval), and the bundle
artifacts. The server is started again --outage seconds after it has exited (`mlflow server` 3.17 did
not exit within 15-20 s of SIGTERM, although uvicorn closed the port at once; stop() then kills it).

Measured (2 cores shared with other jobs, load 5-17, --steps 20000 --outage 20):
  before issue 25 (MLflow's own retries): server down 93 s; both trials FINISHED, 20/20 progress steps,
    none doubled, bundle and summary there; but one write held each trial for 151 and 157 s (the
    longest gap between two progress writes; ~30 s otherwise at that load).
  after (trial_record.ProgressLog, PATIENCE): server down 52 s; the same complete records, and the
    longest gap 9 and 14 s: training went on through the outage.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from services import BIN, free_port, sqlite_store, start, start_mlflow, stop, wait_healthy  # noqa: E402


def api(url, path, **body):
    r = requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30)
    r.raise_for_status()
    return r.json()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12_000)
    ap.add_argument("--outage", type=float, default=20.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="outage-"))
    ray_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    ray = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(ray_port),
                 "--include-dashboard", "false", "--disable-usage-stats"], open(root / "ray.log", "w"))
    server = [start_mlflow(sqlite_store(root), root, port)[0]]
    space = root / "outage.yaml"
    space.write_text(yaml.safe_dump({
        "name": "outage", "envs": ["InvertedPendulum-v5"], "algo": "sac", "steps": args.steps, "seeds": [0],
        "algo_config": {"learning_starts": 100, "batch_size": 32, "critic_width": 16, "sigma_width": 8},
        "eval_every": 3000, "eval_episodes": 2, "final_episodes": 2, "policy": {"width": 8},
        "sweep": [{"fp32": True}, {"scope": "core", "bits": 2}]}))
    times = {}

    def outage():
        # Stop once both trials have logged progress: the outage falls in the middle of their training.
        while True:
            try:
                exp = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name",
                                   params={"experiment_name": "outage"}, timeout=5).json()["experiment"]["experiment_id"]
                kids = api(url, "runs/search", experiment_ids=[exp],
                           filter="tags.`qsearch.kind` = 'trial'").get("runs", [])
                if len(kids) == 2 and all(k["data"].get("metrics") for k in kids):
                    break
            except (requests.RequestException, KeyError):
                pass
            time.sleep(0.5)
        times["stop"] = time.time()
        stop(server[0])
        times["stopped"] = time.time()
        time.sleep(args.outage)
        server[0] = start_mlflow(sqlite_store(root), root, port, log_name="mlflow2.log", wait=False)[0]
        times["restart"] = time.time()
        wait_healthy(url, server[0], root / "mlflow2.log")
        times["healthy"] = time.time()

    from qsearch.search.run import search

    t = threading.Thread(target=outage, daemon=True)
    t.start()
    began = time.time()
    try:
        out = search(space, workdir=root / "w", address=f"127.0.0.1:{ray_port}", tracking_uri=url)
        print("search rows:", [(r["configuration"], r["status"], r.get("error")) for r in out.rows])
    except BaseException as e:  # what the driver saw
        print(f"search raised {type(e).__name__}: {str(e)[:500]}")
    ended = time.time()
    t.join(120)
    print(f"search {ended - began:.0f} s; server stopped at +{times['stop'] - began:.1f} s "
          f"(exited in {times['stopped'] - times['stop']:.1f} s), restarted at +{times['restart'] - began:.1f} s, "
          f"answering at +{times['healthy'] - began:.1f} s: down {times['healthy'] - times['stop']:.1f} s")

    exp = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "outage"},
                       timeout=30).json()["experiment"]["experiment_id"]
    runs = api(url, "runs/search", experiment_ids=[exp], max_results=100)["runs"]
    expected = sorted({s for s in range(1, args.steps + 1) if s % 1000 == 0 or s % 3000 == 0 or s == args.steps})
    for r in runs:
        tags = {x["key"]: x["value"] for x in r["data"].get("tags", [])}
        print(f"run {tags.get('mlflow.runName')!r} kind {tags.get('qsearch.kind')} status {r['info']['status']}"
              + (f" error {tags['qsearch.error'][:300]!r}" if "qsearch.error" in tags else ""))
        if tags.get("qsearch.kind") != "trial":
            continue
        rid = r["info"]["run_id"]
        hist = requests.get(f"{url}/api/2.0/mlflow/metrics/get-history",
                            params={"run_id": rid, "metric_key": "steps_per_s"}, timeout=30).json().get("metrics", [])
        steps = Counter(m["step"] for m in hist)
        stamps = sorted(m["timestamp"] for m in hist)
        gap = max((b - a for a, b in zip(stamps, stamps[1:])), default=0) / 1000
        missing = [s for s in expected if s not in steps]
        doubled = [s for s, n in steps.items() if n > 1]
        final = {m["key"] for m in r["data"].get("metrics", [])} & {"final_return", "cost", "work_seconds"}
        files = requests.get(f"{url}/api/2.0/mlflow/artifacts/list", params={"run_id": rid, "path": "bundle"},
                             timeout=30).json().get("files", [])
        print(f"  progress steps {len(steps)}/{len(expected)} missing {missing} doubled {doubled}; "
              f"longest gap between progress writes {gap:.1f} s; summary {sorted(final)}; bundle files {len(files)}")
    stop(server[0])
    stop(ray)
    print("logs in", root)


if __name__ == "__main__":
    main()

"""The tracking store under load: many concurrent Ray Tune trials that only write through qsearch's
trial record (no training), against a local SQLite store and against an MLflow server on PostgreSQL.

  .venv/bin/python bench/tracking_load.py [--trials 32] [--writes 500] [--stores sqlite server] [--out FILE.json]
  .venv/bin/python bench/tracking_load.py --report docs/results/tracking_load.json   # table from the data alone

Each trial asks for 1/16 of a CPU, so 32 run at once on 2 cores. A trial imports MLflow, waits until
every trial is up (a file barrier: the writes start together, not staggered by Ray's worker
start-up), then does what the trainable does, flat out: `start_trial` (a child run with the trial's
params and machine tags), --writes `tracking.log_metrics` calls of len(KEYS) metrics each at steps
1..N, `finish_trial` (the summary metrics and a small bundle folder as artifacts), `end_trial`. An
exception in a call is counted and the trial goes on; a trial whose run could not be created stops.

Afterwards the store is read back: every run's status, its metric points (get_metric_history per key)
and its bundle's files. Per store: errors (exceptions raised in trials), lost metric points (expected
minus found), the write phase's wall time (first write to last end, every trial writing at once) and
throughput (log_metrics calls and metric points per second), per-call latency.

Stores: `sqlite` is sqlite:///<tmp>/mlflow.db, opened by every trial process (qsearch's default store,
a search's own folder); `server` is `mlflow server` (--server-workers) on a PostgreSQL 16 from the
pgserver wheel through psycopg, both started here on loopback ports (tests/services.py's helpers), the
trials talking to it over HTTP as they would from other nodes.

--out FILE.json adds the run (its stores, date, command and machine) to that file; --report FILE.json
prints the Markdown table of every run in such a file and writes it beside it as <name>_table.md,
without running anything.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

KEYS = ("qf_loss", "actor_loss", "alpha", "steps_per_s")  # what a SAC trial logs at each progress step
STORES = ("sqlite", "server")
CPU_PER_TRIAL = 1 / 16
BARRIER_TIMEOUT_S = 600  # all trials up within this, or the trial writes anyway (and says so)


def trial(config: dict, uri: str, experiment_id: str, parent: str, writes: int, folder: str, trials: int):
    """One lightweight trial: the trial record's calls, timed, exceptions counted; what it saw goes to
    folder/results/<i>.json (not through Tune's result loggers: one latency per call)."""
    from qsearch import machine, tracking
    from qsearch import trial_record as record

    # As in a real trial, MLflow and torch are imported (machine.describe, which start_trial records,
    # imports torch) before the barrier: the writes then start together.
    tracking.client(uri)
    machine.describe()
    i = config["i"]
    barrier = Path(folder, "barrier")
    (barrier / f"up-{i}").touch()
    waited = time.time()
    while len(os.listdir(barrier)) < trials and time.time() - waited < BARRIER_TIMEOUT_S:
        time.sleep(0.05)
    all_up = len(os.listdir(barrier)) >= trials

    errors, first_error = 0, ""
    latencies = {"record": [], "metrics": []}  # seconds per call: start/finish/end, and log_metrics

    def call(kind, f, *args):
        nonlocal errors, first_error
        t = time.perf_counter()
        try:
            return f(*args)
        except Exception as e:  # the measurement: what a trial would have seen raised
            errors += 1
            # the whole message on one line: SQLAlchemy's first line can be a preamble ("raised as a
            # result of Query-invoked autoflush") with the cause ("database is locked") after it
            first_error = first_error or f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
            return None
        finally:
            latencies[kind].append(time.perf_counter() - t)

    start = write_start = write_end = time.time()
    params = record.encode({"bench": "tracking_load", "trial": i, "writes": writes, "configuration": f"load-{i}"})
    started = call("record", record.start_trial, uri, experiment_id, parent, f"load-{i}", f"load-{i}", params)
    if started is not None:
        c, run_id = started
        write_start = time.time()
        for step in range(1, writes + 1):
            call("metrics", tracking.log_metrics, c, run_id, {k: step + j / 10 for j, k in enumerate(KEYS)}, step)
        write_end = time.time()
        bundle = Path(tempfile.mkdtemp(prefix="load-bundle-"))
        (bundle / "bundle.json").write_text(json.dumps({"trial": i}))
        (bundle / "eval.json").write_text(json.dumps({"torch": {"mean": float(i), "std": 0.0}}))
        call("record", record.finish_trial, c, run_id, {record.FINAL_RETURN: float(i), "cost": 1.0}, writes, str(bundle))
        call("record", record.end_trial, c, run_id)
        shutil.rmtree(bundle, ignore_errors=True)
    Path(folder, "results", f"{i}.json").write_text(json.dumps(
        {"errors": errors, "first_error": first_error, "start": start, "write_start": write_start,
         "write_end": write_end, "end": time.time(), "run_created": started is not None, "all_up": all_up,
         "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
         **{f"{k}_ms": [x * 1000 for x in v] for k, v in latencies.items()}}))


def run_store(kind: str, uri: str, trials: int, writes: int, folder: Path) -> dict:
    """One measurement: the trials against `uri`, then the store read back."""
    from ray import tune

    from qsearch import ray_session
    from qsearch import trial_record as record
    from qsearch import tracking

    name = f"load-{kind}"
    experiment_id = tracking.experiment(uri, name, folder)  # creates the store (and its tables) here, not in a trial
    parent = record.start_search(uri, experiment_id, name, {"trials": trials, "writes": writes})
    (folder / "barrier").mkdir()
    (folder / "results").mkdir()
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    t0 = time.perf_counter()
    with ray_session.session(None):
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trial, uri=uri, experiment_id=experiment_id, parent=parent,
                                                     writes=writes, folder=str(folder), trials=trials),
                                {"cpu": CPU_PER_TRIAL}),
            param_space={"i": tune.grid_search(list(range(trials)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=trials),
            run_config=tune.RunConfig(name=name, storage_path=str(folder / "ray"), verbose=0))
        grid = tuner.fit()
    fit_s = time.perf_counter() - t0
    results = [json.loads(f.read_text()) for f in (folder / "results").iterdir()]
    crashed = sum(r.error is not None for r in grid)  # a trial whose process died, not an exception in a call

    # Read back through the same URI, as a selection would.
    c = tracking.client(uri)
    runs = tracking.search_all(c, [experiment_id], f"tags.`{record.KIND_TAG}` = '{record.TRIAL}'")
    found = sum(len(c.get_metric_history(r.info.run_id, k)) for r in runs for k in KEYS)
    bundles = sum({"bundle/bundle.json", "bundle/eval.json"} <= {f.path for f in c.list_artifacts(r.info.run_id, "bundle")}
                  for r in runs)
    latencies = sorted(x for m in results for x in m["metrics_ms"])
    record_ms = sorted(x for m in results for x in m["record_ms"])
    # The write phase: from the first log_metrics call to the last one, every trial writing at once.
    writing = max(m["write_end"] for m in results) - min(m["write_start"] for m in results)
    expected = trials * writes * len(KEYS)
    calls = len(latencies)
    return {
        "store": kind, "trials": trials, "writes_per_trial": writes, "keys_per_write": len(KEYS),
        "errors": sum(m["errors"] for m in results), "trials_with_errors": sum(m["errors"] > 0 for m in results),
        "first_errors": sorted({m["first_error"] for m in results if m["first_error"]})[:5],
        "trials_crashed": crashed, "all_up_together": all(m["all_up"] for m in results),
        "runs": len(runs), "runs_finished": sum(r.info.status == "FINISHED" for r in runs), "bundles": bundles,
        "points_expected": expected, "points_found": found, "points_lost": expected - found,
        "write_phase_s": writing, "trials_s": max(m["end"] for m in results) - min(m["start"] for m in results),
        "fit_s": fit_s, "calls": calls, "calls_per_s": calls / writing, "points_per_s": found / writing,
        "latency_ms_median": statistics.median(latencies), "latency_ms_p99": latencies[int(0.99 * (len(latencies) - 1))],
        "latency_ms_max": latencies[-1], "record_call_ms_median": statistics.median(record_ms),
        "record_call_ms_max": record_ms[-1], "trial_max_rss_mb": max(m["max_rss_mb"] for m in results),
    }


def measure(kind: str, trials: int, writes: int, root: Path, server_workers: int, server_env: dict) -> dict:
    folder = root / kind
    folder.mkdir()
    if kind == "sqlite":
        from qsearch import tracking

        return run_store(kind, tracking.default_uri(folder), trials, writes, folder)
    from services import start_mlflow, start_postgres, stop, stop_postgres

    t0 = time.perf_counter()
    pg = start_postgres(folder)
    pg_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        mlflow, url = start_mlflow(pg.uri, folder, workers=server_workers, env=server_env)
        mlflow_s = time.perf_counter() - t0
        try:
            out = run_store(kind, url, trials, writes, folder)
        finally:
            stop(mlflow)
    finally:
        stop_postgres(pg)
    print(f"server: PostgreSQL up in {pg_s:.1f} s, MLflow server (migrations on an empty database) in {mlflow_s:.1f} s",
          flush=True)
    return {**out, "server_workers": server_workers, "server_env": server_env, "postgres_start_s": pg_s,
            "mlflow_start_s": mlflow_s}


def table(data: dict) -> str:
    """One row per store of every run in the data file."""
    head = ("| run | store | trials x writes | errors (trials) | metric points lost / expected | runs FINISHED | bundles "
            "| write phase | log_metrics calls/s | points/s | latency median / p99 / max |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    names = {"sqlite": "local SQLite file", "server": "MLflow server on PostgreSQL"}
    rows = []
    for run in data["runs"]:
        for r in run["stores"]:
            store = names[r["store"]]
            if r["store"] == "server":
                store += f" ({r['server_workers']} workers{''.join(f', {k}={v}' for k, v in r.get('server_env', {}).items())})"
            rows.append(row(run["date"], store, r))
    return head + "\n".join(rows) + "\n"


def row(date: str, store: str, r: dict) -> str:
    return (f"| {date} | {store} | {r['trials']} x {r['writes_per_trial']} | {r['errors']} ({r['trials_with_errors']}) "
            f"| {r['points_lost']:,} / {r['points_expected']:,} | {r['runs_finished']} / {r['trials']} "
            f"| {r['bundles']} / {r['trials']} | {r['write_phase_s']:.0f} s | {r['calls_per_s']:.0f} "
            f"| {r['points_per_s']:,.0f} | {r['latency_ms_median']:.0f} / {r['latency_ms_p99']:.0f} / "
            f"{r['latency_ms_max']:,.0f} ms |")


def read_data(path: Path) -> dict:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("bench") != "tracking_load" or "runs" not in data:
        raise ValueError(f"{path}: not a data file of this bench (no \"bench\": \"tracking_load\" with runs)")
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=32, help="concurrent trials (each 1/16 CPU)")
    p.add_argument("--writes", type=int, default=500, help=f"log_metrics calls per trial ({len(KEYS)} metrics each)")
    p.add_argument("--stores", nargs="+", default=list(STORES), help=f"which stores, of {', '.join(STORES)}")
    p.add_argument("--server-workers", type=int, default=4, help="the MLflow server's worker processes")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the MLflow server (e.g. MLFLOW_SQLALCHEMYSTORE_POOLCLASS=NullPool)")
    p.add_argument("--out", type=Path, metavar="FILE.json",
                   help="add this run to FILE.json (created if missing; earlier runs in it are kept)")
    p.add_argument("--report", type=Path, metavar="FILE.json",
                   help="only print the table from such a file, and write it beside it as <name>_table.md")
    a = p.parse_args()
    try:
        if a.report:
            text = table(read_data(a.report))
            (a.report.parent / f"{a.report.stem}_table.md").write_text(text)
            print(text, end="")
            return 0
        bad = [s for s in a.stores if s not in STORES]
        if bad:
            raise ValueError(f"--stores: {bad[0]!r} is not one of {', '.join(STORES)}")
        if a.trials < 1 or a.writes < 1 or a.server_workers < 1:
            raise ValueError("--trials, --writes and --server-workers must be at least 1")
        server_env = dict(e.split("=", 1) for e in a.server_env if "=" in e)
        if len(server_env) != len(a.server_env):
            raise ValueError(f"--server-env: {next(e for e in a.server_env if '=' not in e)!r} is not NAME=VALUE")
        runs = read_data(a.out)["runs"] if a.out and a.out.exists() else []  # refused now, not after the run
        if a.trials * CPU_PER_TRIAL > (os.cpu_count() or 1):
            raise ValueError(f"--trials {a.trials}: at {CPU_PER_TRIAL:.4g} CPU each they would not all run at once "
                             f"on {os.cpu_count()} CPUs")
    except (OSError, ValueError, KeyError, TypeError) as e:  # bad input: one line, exit 2
        print(f"tracking_load: {e}", file=sys.stderr)
        return 2

    from qsearch import tracking

    tracking.setup_environment()
    root = Path(tempfile.mkdtemp(prefix="tracking-load-"))
    try:
        stores = []
        for kind in a.stores:
            print(f"{kind}: {a.trials} trials x {a.writes} writes ...", flush=True)
            # The machine is shared: its load (1-minute average) before and after says what else ran.
            load_before = os.getloadavg()[0]
            out = measure(kind, a.trials, a.writes, root, a.server_workers, server_env)
            stores.append({**out, "load_before": load_before, "load_after": os.getloadavg()[0]})
            print(json.dumps(stores[-1], indent=1), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    run = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "stores": stores}
    data = {"bench": "tracking_load", "runs": runs + [run]}
    if a.out:
        a.out.write_text(json.dumps(data, indent=1) + "\n")
    print(table({"runs": [run]}), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Distributed search end to end, with real components: a local Ray (2 CPUs, started here with
`ray start --head`) and a real `mlflow server` on a loopback port, queried over its REST API.

One Ray and one MLflow server are shared by the whole module (Ray ~5 s and MLflow ~15 s to start).
"""
import json
import subprocess
import time

import pytest
import requests
import yaml

from qsearch import bundle as bundles
from qsearch.cli import main
from qsearch.search.run import search
from qsearch.select import pareto
from services import BIN, ENV, assert_same_bundle, free_port, space, sqlite_store, start, start_mlflow, stop, stop_ray

@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """(ray address, MLflow URL), both started in parallel."""
    root = tmp_path_factory.mktemp("services")
    ray_port = free_port()
    ray = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(ray_port),
                 "--include-dashboard", "false", "--disable-usage-stats"], open(root / "ray.log", "w"))
    mlflow = None
    try:
        mlflow, url = start_mlflow(sqlite_store(root), root)
        yield f"127.0.0.1:{ray_port}", url
    finally:
        if mlflow is not None:
            stop(mlflow)
        stop_ray(ray)


def api(url, path, **body):
    r = requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30) if body else \
        requests.get(f"{url}/api/2.0/mlflow/{path}", timeout=30)
    r.raise_for_status()
    return r.json()


def children(url, name):
    exp = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name},
                       timeout=30).json()["experiment"]["experiment_id"]
    parents = api(url, "runs/search", experiment_ids=[exp], filter="tags.`qsearch.kind` = 'search'")["runs"]
    assert len(parents) == 1
    parent = parents[0]
    kids = api(url, "runs/search", experiment_ids=[exp], max_results=1000,
               filter=f"tags.`mlflow.parentRunId` = '{parent['info']['run_id']}'").get("runs", [])
    return parent, kids


def tags(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run):
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def test_search_tracked_in_mlflow(services, tmp_path):
    address, url = services
    out = search(space(tmp_path, "tiny"), workdir=tmp_path / "w", address=address, tracking_uri=url)
    assert [r["status"] for r in out.rows] == ["done"] * 4
    assert "InvertedPendulum-v5/fp32/h8x2" in out.table and "+-" in out.table

    parent, kids = children(url, "tiny")
    assert parent["info"]["status"] == "FINISHED" and parent["info"]["run_id"] == out.parent_run_id
    assert len(kids) == 4 and {k["info"]["status"] for k in kids} == {"FINISHED"}
    seen = {(params(k)["configuration"], params(k)["seed"]) for k in kids}
    assert seen == {(c, s) for c in ("InvertedPendulum-v5/fp32/h8x2", "InvertedPendulum-v5/i8w2a2o8/h8x2")
                    for s in ("0", "1")}
    q = next(k for k in kids if params(k)["fp32"] == "False")
    p = params(q)
    assert (p["env_id"], p["bits_weight"], p["bits_act"], p["bits_in"], p["bits_out"], p["width"], p["steps"]) == \
        ("InvertedPendulum-v5", "2", "2", "8", "8", "8", "300")
    assert tags(q)["qsearch.machine.device"] == "cpu"  # no GPU asked for
    run_id = q["info"]["run_id"]
    hist = requests.get(f"{url}/api/2.0/mlflow/metrics/get-history",
                        params={"run_id": run_id, "metric_key": "eval_return_mean"}, timeout=30).json()["metrics"]
    assert [m["step"] for m in hist] == [150, 300]  # evaluation return over environment steps
    metrics = {m["key"] for m in q["data"]["metrics"]}
    assert {"eval_return_mean", "steps_per_s", "qf_loss", "actor_loss", "final_return", "cost"} <= metrics
    files = requests.get(f"{url}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "bundle"},
                         timeout=30).json()["files"]
    assert {"bundle/bundle.json", "bundle/actor.pt", "bundle/integer.npz"} <= {f["path"] for f in files}

    # Workers run trial after trial (reused actors): each trial's folder in Tune's storage holds the
    # bundle of that trial, not of the one its worker ran before.
    folders = [p for p in (tmp_path / "w" / "ray" / "tiny").iterdir() if (p / "params.json").exists()]
    assert len(folders) == 4
    for folder in folders:
        trial = json.loads((folder / "params.json").read_text())
        b = bundles.read(folder / "bundle")
        assert (b.config.seed, b.config.policy.quant is None) == (trial["seed"], "/fp32/" in trial["configuration"])
        assert json.loads((folder / "trial.json").read_text())["final_return"] == b.evaluation["torch"]["mean"]


def test_same_configuration_and_seed_give_the_same_bundle_in_train_and_in_tune(services, tmp_path):
    """One short Hopper-v5 QAT configuration through `qsearch train` (its own process) and as a
    one-trial Tune search (a Ray worker): the same actor.pt, norm.npz and integer.npz bytes, the same
    learning history and evaluation apart from timing (docs/results' pages rely on it)."""
    address, url = services
    algo = {"learning_starts": 200, "batch_size": 32, "critic_width": 32, "sigma_width": 16}
    data = {"name": "runners", "envs": ["Hopper-v5"], "algo": "sac", "steps": 600, "seeds": [3],
            "eval_every": 300, "eval_episodes": 2, "final_episodes": 2, "policy": {"width": 16},
            "algo_config": algo, "sweep": [{"scope": "core", "bits": 2}]}
    (tmp_path / "runners.yaml").write_text(yaml.safe_dump(data))
    out = search(tmp_path / "runners.yaml", workdir=tmp_path / "w", address=address, tracking_uri=url)
    assert [r["status"] for r in out.rows] == ["done"]
    [trial] = [p for p in (tmp_path / "w" / "ray" / "runners").iterdir() if (p / "params.json").exists()]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in algo.items()]
    subprocess.run([str(BIN / "qsearch"), "train", "--env", "Hopper-v5", "--steps", "600", "--seed", "3",
                    "--eval-every", "300", "--episodes", "2", "--width", "16", "--scope", "core", "--bits", "2",
                    *flags, "--out", str(tmp_path / "train")], check=True, env=ENV, capture_output=True)

    trained = tmp_path / "train"
    assert_same_bundle(trial / "bundle", trained)
    history = json.loads((trained / "history.json").read_text())
    assert [h["step"] for h in history] == [300, 600] and all(h["steps_per_s"] > 0 for h in history)


def test_failing_trial_recorded_while_others_finish(services, tmp_path):
    address, url = services
    # A learning rate of 1e30 really diverges: NaN within the first few hundred steps.
    sweep = [{"fp32": True}, {"fp32": True, "algo_config": {"q_lr": 1e30}}]
    out = search(space(tmp_path, "diverging", seeds=[0], sweep=sweep, retries=1), workdir=tmp_path / "w",
                 address=address, tracking_uri=url)
    by_conf = {r["configuration"]: r for r in out.rows}
    assert by_conf["InvertedPendulum-v5/fp32/h8x2"]["status"] == "done"
    bad = by_conf["InvertedPendulum-v5/fp32/h8x2/q_lr=1e+30"]
    assert bad["status"] == "failed" and "training diverged" in bad["error"]
    parent, kids = children(url, "diverging")
    assert parent["info"]["status"] == "FAILED"  # not every trial finished
    status = sorted((params(k)["configuration"], k["info"]["status"]) for k in kids)
    # the failing trial ran twice (one retry), and both attempts are recorded as failed, with the error
    assert status == [("InvertedPendulum-v5/fp32/h8x2", "FINISHED"),
                      ("InvertedPendulum-v5/fp32/h8x2/q_lr=1e+30", "FAILED"),
                      ("InvertedPendulum-v5/fp32/h8x2/q_lr=1e+30", "FAILED")]
    assert all("diverged" in tags(k)["qsearch.error"] for k in kids if k["info"]["status"] == "FAILED")
    summary = (tmp_path / "w" / "summary.txt").read_text()
    assert "q_lr=1e+30" in summary


def test_resume_after_driver_killed(services, tmp_path):
    address, url = services
    # FP32 policies at two widths: the fastest trials (no brevitas warm-up), to keep the test short
    yml = space(tmp_path, "resumed", sweep=[{"fp32": True, "width": [8, 12]}])
    workdir = tmp_path / "w"
    cmd = [str(BIN / "qsearch"), "search", str(yml), "--workdir", str(workdir), "--address", address,
           "--tracking-uri", url]
    log = open(tmp_path / "first.log", "w")
    driver = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    trials = workdir / "ray" / "resumed"
    deadline = time.time() + 240
    while not list(trials.glob("*/trial.json")):  # kill after the first trial has finished
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline
        time.sleep(0.5)
    driver.kill()  # SIGKILL: no chance to clean up, as when a laptop sleeps or a login node drops
    driver.wait()
    # train_seconds is a measured time: the same file content means the same training run
    finished_before = {p.parent.name: p.read_text() for p in trials.glob("*/trial.json")}
    assert 1 <= len(finished_before) < 4

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=ENV, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    done = {p.parent.name: p.read_text() for p in trials.glob("*/trial.json")}
    assert len(done) == 4
    for name, text in finished_before.items():  # finished trials were not run again
        assert done[name] == text
    rows = json.loads((workdir / "trials.json").read_text())
    assert sorted((r["configuration"], r["seed"], r["status"]) for r in rows) == sorted(
        (c, s, "done") for c in ("InvertedPendulum-v5/fp32/h8x2", "InvertedPendulum-v5/fp32/h12x2") for s in (0, 1))

    parent, kids = children(url, "resumed")
    assert parent["info"]["status"] == "FINISHED"
    finished = [tags(k)["qsearch.trial_id"] for k in kids if k["info"]["status"] == "FINISHED"]
    assert len(finished) == 4 and len(set(finished)) == 4  # every trial done exactly once
    started = [tags(k)["qsearch.trial_id"] for k in kids]
    for name in finished_before:  # ... and a trial finished before the kill was started only once
        trial_id = "_".join(name.split("_")[2:4])
        assert started.count(trial_id) == 1, (trial_id, started)
    # a trial cut off by the kill left a run that is now marked KILLED, not one still RUNNING
    assert {k["info"]["status"] for k in kids} <= {"FINISHED", "KILLED"}


def test_summary_table_mean_std_over_seeds():
    from qsearch.search.summary import table

    text = table([{"configuration": "a", "status": "done", "final_return": 1.0},
                  {"configuration": "a", "status": "done", "final_return": 3.0},
                  {"configuration": "b", "status": "failed", "final_return": None}])
    a, b = text.splitlines()[1:]
    assert a.split() == ["a", "2", "0", "0", "2.0", "+-", "1.0"]
    assert b.split() == ["b", "0", "1", "0", "-"]


def test_ui_refuses_a_folder_without_a_store(tmp_path, capsys):
    from qsearch.cli import main

    assert main(["ui", "--workdir", str(tmp_path)]) == 2
    assert "no MLflow store" in capsys.readouterr().err


def test_optuna_with_asha(services, tmp_path):
    address, url = services
    search_config = {"searcher": "optuna", "num_samples": 4, "objectives": ["return", "cost"],
                     "scheduler": "asha", "grace_steps": 150, "reduction_factor": 2}
    yml = space(tmp_path, "tpe", steps=450, seeds=(0,), sweep=[{"fp32": True, "width": [8, 12, 16]}],
                search=search_config)
    out = search(yml, workdir=tmp_path / "w", address=address, tracking_uri=url)
    keys = {f"InvertedPendulum-v5/fp32/h{w}x2" for w in (8, 12, 16)}
    assert len(out.rows) == 4  # num_samples trials, each a configuration Optuna picked from the space
    assert {r["configuration"] for r in out.rows} <= keys and {r["seed"] for r in out.rows} == {0}
    # ASHA may stop a trial at a rung (150 or 300 steps); a stopped trial has no final return
    assert {r["status"] for r in out.rows} <= {"done", "stopped"} and any(r["status"] == "done" for r in out.rows)
    assert all((r["final_return"] is None) == (r["status"] == "stopped") for r in out.rows)
    parent, kids = children(url, "tpe")
    assert parent["info"]["status"] == "FINISHED"
    status = sorted(k["info"]["status"] for k in kids)
    assert status == sorted("FINISHED" if r["status"] == "done" else "KILLED" for r in out.rows)
    assert all("qsearch.error" not in tags(k) for k in kids)  # stopped is not failed


def test_a_search_over_logic_circuit_sizes_their_hardware_and_the_pareto_report(services, tmp_path, capsys):
    """A space's `policy: lut` group beside FP32 and a QAT network: LUT trials with their own labels and
    settings in MLflow, their cost the bits of their truth tables, bundles with the LUT integer model;
    then `qsearch hw --flow open --all-trials` builds every quantized trial's design and `qsearch
    report` draws return against LUTs, networks and logic circuits on one figure."""
    address, url = services
    sweep = [{"fp32": True}, {"scope": "core", "bits": 2},
             {"policy": "lut", "thermometer_bits": 4, "luts": [[8, 4], [16]], "lut_inputs": 3, "mapping": "random"}]
    workdir = tmp_path / "w"
    out = search(space(tmp_path, "luts", seeds=[0], sweep=sweep), workdir=workdir, address=address, tracking_uri=url)
    assert [r["status"] for r in out.rows] == ["done"] * 4
    _, kids = children(url, "luts")
    lut = {params(k)["configuration"]: k for k in kids if params(k)["policy"] == "lut"}
    assert set(lut) == {"InvertedPendulum-v5/lut/t4/l8-4k3/random/o8", "InvertedPendulum-v5/lut/t4/l16k3/random/o8"}
    run = lut["InvertedPendulum-v5/lut/t4/l8-4k3/random/o8"]
    assert {k: params(run)[k] for k in ("luts", "thermometer_bits", "lut_inputs")} == \
        {"luts": "8,4", "thermometer_bits": "4", "lut_inputs": "3"}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["cost"] == 12 * 2**3
    folders = [p for p in (workdir / "ray" / "luts").iterdir() if (p / "params.json").exists()]
    kinds = sorted(type(bundles.read(f / "bundle").integer).__name__ for f in folders)
    assert kinds == ["IntLUTModel", "IntLUTModel", "IntegerModel", "NoneType"]

    assert main(["hw", str(workdir), "--flow", "open", "--all-trials", "--targets", "1e6", "--out", str(workdir / "hw"),
                 "--address", address]) == 0
    hw = json.loads((workdir / "hw" / "hw.json").read_text())
    assert len(hw["rows"]) == 3 and set(hw["runs"].values()) == {k["info"]["run_id"] for k in kids if params(k)["fp32"] == "False"}
    capsys.readouterr()
    assert main(["report", "--workdir", str(workdir)]) == 0
    assert f"{pareto.FIGURE}: drawn" in capsys.readouterr().out
    assert (workdir / "report" / pareto.FIGURE).stat().st_size > 10_000
    section = (workdir / "report" / "report.md").read_text().split("## Return vs hardware cost")[1].split("## Figures")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "/" in line]
    assert sorted(r[1] for r in rows) == ["lut", "lut", "mlp"]  # (FP32 is the band, no point)
    assert any(r[-1].strip(" |") == "*" for r in rows)  # the cheapest design is always on the front
    assert all(int(r[6]) >= 1 and float(r[3].replace(",", "")) > 0 for r in rows)  # latency in cycles, LUTs

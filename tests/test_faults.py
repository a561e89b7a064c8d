"""Trials that survive losing their machine, on a Ray cluster of two nodes on this machine: a head
without CPUs (as a login node) and a worker node where the trials run.

- the worker process of a running trial killed with SIGKILL: Tune retries the trial (retries: 1), and
  it continues from its latest checkpoint;
- the whole worker node killed with SIGKILL, and a replacement node joining (a preempted spot
  instance and the one that replaces it): the trial continues from its checkpoint in the search's
  storage on the new node.
Either way the trial's bundle is the one an uninterrupted run gives, and MLflow holds exactly one
FINISHED run per trial identity, the killed attempt's run marked KILLED.
"""
import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from qsearch import pipeline
from qsearch import trial_record as record
from qsearch import tracking
from qsearch.search import space as spaces
from services import BIN, ENV, assert_same_bundle, free_port, start, stop_ray

def cpus(address) -> float:
    """The cluster's CPUs, as `ray status` counts them."""
    status = subprocess.run([str(BIN / "ray"), "status", "--address", address], capture_output=True, text=True,
                            env=ENV).stdout
    return sum(float(line.split("/")[1].split()[0]) for line in status.splitlines() if line.strip().endswith(" CPU"))


def wait_for(what, check, timeout=240):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def join_worker(address, log):
    """A worker node with one CPU, joined and counted by the head."""
    node = start([str(BIN / "ray"), "start", "--block", "--address", address, "--num-cpus", "1",
                  "--disable-usage-stats"], log)
    wait_for("the worker node", lambda: cpus(address) >= 1 or node.poll() is not None, 120)
    assert node.poll() is None
    return node


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, root): a head with no CPUs; each test joins its own worker node."""
    root = tmp_path_factory.mktemp("faults")
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "0", "--port", str(port),
                  "--include-dashboard", "false", "--disable-usage-stats"], open(root / "head.log", "w"))
    wait_for("the head", lambda: subprocess.run([str(BIN / "ray"), "status", "--address", address],
                                                capture_output=True, env=ENV).returncode == 0, 120)
    yield address, root
    stop_ray(head)


def one_trial_space(tmp_path, name):
    data = {"name": name, "envs": ["InvertedPendulum-v5"], "algo": "sac", "steps": 1500, "seeds": [2],
            "algo_config": {"learning_starts": 200, "batch_size": 32, "critic_width": 16, "sigma_width": 8},
            "eval_every": 500, "eval_episodes": 2, "final_episodes": 2, "policy": {"width": 8},
            "sweep": [{"scope": "core", "bits": 2}], "retries": 1, "checkpoint_every": 500}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_search(path, tmp_path, address, uri, storage):
    """`qsearch search` as a user starts it on the cluster (the driver on the head)."""
    return subprocess.Popen([str(BIN / "qsearch"), "search", str(path), "--workdir", str(tmp_path / "w"),
                             "--address", address, "--tracking-uri", uri, "--storage", str(storage)],
                            env=ENV, stdout=open(tmp_path / "driver.log", "w"), stderr=subprocess.STDOUT)


def launch(tmp_path, name, address):
    """A one-trial search `name` started on the cluster: (space file, storage, tracking URI, driver)."""
    path, storage, uri = one_trial_space(tmp_path, name), tmp_path / "storage", f"sqlite:///{tmp_path / 'mlflow.db'}"
    return path, storage, uri, run_search(path, tmp_path, address, uri, storage)


def trial_folder(storage, name):
    folders = [p for p in (storage / name).glob("*") if (p / "params.json").exists()] \
        if (storage / name).exists() else []
    return folders[0] if folders else None


def first_checkpoint(storage, name):
    folder = trial_folder(storage, name)
    return folder is not None and any(p.is_dir() for p in folder.glob("checkpoint_*"))


def state_knows_checkpoint(storage, name) -> bool:
    """Whether Tune's saved experiment state (experiment_state-*.json, the trial's checkpoint manager
    cloudpickled as hex) names a checkpoint folder."""
    for path in (storage / name).glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError):
            continue  # being written
        for _, runtime in trials:
            manager = json.loads(runtime)["checkpoint_manager"]["value"]
            if b"checkpoint_0000" in bytes.fromhex(manager):
                return True
    return False


def check_outcome(path, tmp_path, storage, name, uri, driver):
    assert driver.wait(600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    rows = json.loads((tmp_path / "w" / "trials.json").read_text())
    assert [r["status"] for r in rows] == ["done"]
    folder = trial_folder(storage, name)
    assert not list(folder.glob("checkpoint_*"))  # removed once the trial is done

    # The same bundle as a run that never stopped.
    space = spaces.load(path)
    cfg = space.train_config(space.configurations[0], 2)
    pipeline.run(cfg, tmp_path / "whole", episodes=space.final_episodes)
    assert_same_bundle(tmp_path / "whole", folder / "bundle")

    # One FINISHED run for the trial, with its whole history; the killed attempt's run KILLED.
    c = tracking.client(uri)
    runs = tracking.search_all(c, tracking.all_experiments(c), f"tags.`{record.KIND_TAG}` = '{record.TRIAL}'")
    statuses = sorted(r.info.status for r in runs)
    assert statuses == ["FINISHED", "KILLED"], statuses
    assert len({r.data.tags[record.KEY_TAG] for r in runs}) == 1
    [finished] = [r for r in runs if r.info.status == "FINISHED"]
    steps = [m.step for m in c.get_metric_history(finished.info.run_id, "eval_return_mean")]
    assert sorted(steps) == [500, 1000, 1500]
    assert finished.data.tags[record.CONTINUED_TAG] in ("500", "1000")  # not trained again from step 0


def test_worker_process_killed(cluster, tmp_path):
    address, root = cluster
    node = join_worker(address, open(tmp_path / "worker.log", "w"))
    try:
        path, storage, uri, driver = launch(tmp_path, "proc_kill", address)
        wait_for("the first checkpoint", lambda: first_checkpoint(storage, "proc_kill") or driver.poll() is not None)
        # The trial's worker process, as Tune records it with every result.
        results = trial_folder(storage, "proc_kill") / "result.json"
        wait_for("a result", lambda: results.exists() and results.read_text().strip())
        pid = json.loads(results.read_text().splitlines()[0])["pid"]
        os.kill(pid, signal.SIGKILL)
        check_outcome(path, tmp_path, storage, "proc_kill", uri, driver)
    finally:
        stop_ray(node)


def test_worker_node_killed_and_replaced(cluster, tmp_path):
    address, root = cluster
    node = join_worker(address, open(tmp_path / "worker1.log", "w"))
    replacement = None
    try:
        path, storage, uri, driver = launch(tmp_path, "node_kill", address)
        wait_for("the first checkpoint", lambda: first_checkpoint(storage, "node_kill") or driver.poll() is not None)
        os.killpg(node.pid, signal.SIGKILL)  # the node's raylet, object store and workers at once
        node.wait()
        replacement = join_worker(address, open(tmp_path / "worker2.log", "w"))
        check_outcome(path, tmp_path, storage, "node_kill", uri, driver)
    finally:
        for n in (node, replacement):
            if n is not None:
                stop_ray(n)


def test_resumed_search_continues_the_trial_from_its_checkpoint(cluster, tmp_path):
    """The driver killed (a login node lost) after the trial's first checkpoint; `--resume` continues
    the unfinished trial from that checkpoint rather than from step 0."""
    address, root = cluster
    node = join_worker(address, open(tmp_path / "worker.log", "w"))
    try:
        path, storage, uri, driver = launch(tmp_path, "driver_kill", address)
        # Killed once the driver has saved a search state that knows the checkpoint: a resumed search
        # continues from the checkpoints Tune's saved state lists (saved every few seconds).
        wait_for("the checkpoint in the driver's saved state", lambda: state_knows_checkpoint(storage, "driver_kill"))
        driver.kill()
        driver.wait()
        resumed = subprocess.Popen([str(BIN / "qsearch"), "search", str(path), "--workdir", str(tmp_path / "w"),
                                    "--address", address, "--resume"],
                                   env=ENV, stdout=open(tmp_path / "driver.log", "w"), stderr=subprocess.STDOUT)
        check_outcome(path, tmp_path, storage, "driver_kill", uri, resumed)
    finally:
        stop_ray(node)

"""A two-node Ray cluster on this machine (a head and a worker joined by address, as on a real
cluster): a search writes its trials to storage given with --storage, and `qsearch hw --resource finn`
runs its FINN tasks where the custom resource is, which only the worker node offers."""
import json
import subprocess
import time

import pytest

from services import BIN, ENV, free_port, space, start, stop_ray


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "1", "--port", str(port),
                  "--include-dashboard", "false", "--disable-usage-stats"], open(root / "head.log", "w"))
    worker = None
    try:
        worker = start([str(BIN / "ray"), "start", "--block", "--address", address, "--num-cpus", "1",
                        "--resources", '{"finn": 1}', "--disable-usage-stats"], open(root / "worker.log", "w"))
        deadline = time.time() + 180
        while True:  # both nodes up: 2 CPUs, and the worker's finn resource
            status = subprocess.run([str(BIN / "ray"), "status", "--address", address], capture_output=True,
                                    text=True, env=ENV).stdout
            if "0.0/2.0 CPU" in status and "finn" in status:
                break
            assert head.poll() is None and worker.poll() is None and time.time() < deadline, status
            time.sleep(1)
        yield address
    finally:
        if worker is not None:
            stop_ray(worker)
        stop_ray(head)


def test_search_on_two_nodes_with_shared_storage_then_hw_on_the_finn_node(cluster, tmp_path):
    yml = space(tmp_path, "two_nodes", seeds=(0,), sweep=[{"scope": "core", "bits": 2}, {"fp32": True}])
    storage = tmp_path / "shared"
    done = subprocess.run([str(BIN / "qsearch"), "search", str(yml), "--workdir", str(tmp_path / "w"),
                           "--address", cluster, "--storage", str(storage)],
                          capture_output=True, text=True, env=ENV, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = {json.loads((d / "params.json").read_text())["configuration"]: d
              for d in (storage / "two_nodes").iterdir() if (d / "params.json").exists()}
    assert len(trials) == 2 and all((d / "trial.json").exists() and (d / "bundle" / "bundle.json").exists()
                                    for d in trials.values())
    assert not (tmp_path / "w" / "ray").exists()  # everything went to the given storage

    quantized = trials["InvertedPendulum-v5/i8w2a2o8/h8x2"] / "bundle"
    hw = subprocess.run([str(BIN / "qsearch"), "hw", str(quantized), "--address", cluster, "--resource", "finn",
                         "--targets", "1e3", "--out", str(tmp_path / "hw")],
                        capture_output=True, text=True, env=ENV, timeout=300)
    assert hw.returncode == 0, hw.stdout[-3000:] + hw.stderr[-3000:]
    rows = [r for r in (tmp_path / "hw" / "hw.csv").read_text().splitlines()[1:] if r]
    assert len(rows) == 1 and "1000" in rows[0]

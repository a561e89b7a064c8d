"""One way into Ray for every command (qsearch/ray_session.py): a private local Ray by default,
quiet, offering a named resource; $RAY_ADDRESS joined; a Ray already running left alone."""
import os
import socket
import subprocess
import sys

import ray

from qsearch import ray_session
from commands import run

# Prints the cluster this process is in and whether ray_session started it.
PROBE = ("from qsearch import ray_session; import ray; started = ray_session.start(); "
         "print(ray.get_runtime_context().gcs_address, started)")


def probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)


def test_a_private_local_ray_offers_the_resource_and_is_shut_down_after():
    assert not ray.is_initialized()
    with ray_session.session(resource="finn"):
        cpus = ray.cluster_resources()["CPU"]
        assert ray.cluster_resources()["finn"] == cpus >= 1
        assert ray_session.start() is False  # already up: a nested start joins, and must not shut it down
        with ray_session.session():
            pass
        assert ray.is_initialized()
    assert not ray.is_initialized()


def test_ray_address_is_joined_and_the_start_is_quiet():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with ray_session.session():
        address = ray.get_runtime_context().gcs_address
        joined = probe({**env, "RAY_ADDRESS": address})
        own = probe(env)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split() == [address, "True"]
    assert own.returncode == 0, own.stderr
    assert own.stdout.split()[0] != address  # without RAY_ADDRESS: its own Ray, not the one running here
    assert "Started a local Ray instance" not in own.stderr


def test_a_cluster_nothing_answers_at_is_refused_before_anything_is_written(capsys, tmp_path, monkeypatch):
    """Ray alone would retry such an address for minutes; qsearch refuses it in one line."""
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    space, work = "search_spaces/selection_pendulum.yaml", tmp_path / "w"
    code, _, err = run(capsys, "select", space, "--workdir", work, "--address", f"127.0.0.1:{port}")
    assert code == 2 and err.count("\n") == 1 and f"nothing answers at 127.0.0.1:{port}" in err
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    code, _, err = run(capsys, "search", space, "--workdir", work)
    assert code == 2 and err.count("\n") == 1 and f"Ray cluster 127.0.0.1:{port}" in err
    monkeypatch.delenv("RAY_ADDRESS")
    code, _, err = run(capsys, "search", space, "--workdir", work, "--address", "nohost")
    assert code == 2 and "not an address" in err
    assert not work.exists()

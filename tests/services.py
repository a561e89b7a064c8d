"""Real services for tests: starting and stopping Ray and MLflow processes, and small search spaces."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

BIN = Path(sys.executable).parent
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true",
       "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log):
    # A session of its own, so that teardown ends exactly this process group and nothing else.
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def stop(proc):
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


def start_mlflow(root: Path, port: int, log_name: str = "mlflow.log"):
    """An `mlflow server` on 127.0.0.1:port with its SQLite store and artifacts in `root`: started again
    with the same root and port, it is the same server."""
    return start([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                  "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                  "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                 open(root / log_name, "a"))


def wait_healthy(url: str, proc, log: Path, timeout: float = 180) -> None:
    """Until the MLflow server at `url` answers /health (~15 s after it starts, measured)."""
    deadline = time.time() + timeout
    while True:
        try:
            if requests.get(f"{url}/health", timeout=5).ok:
                return
        except requests.RequestException:  # not listening yet, or still starting its worker
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, f"mlflow server did not answer {url}/health"
        time.sleep(0.5)


def space(tmp_path, name, steps=300, seeds=(0, 1), sweep=None, retries=0, search=None) -> Path:
    data = {
        "name": name, "envs": ["InvertedPendulum-v5"], "algo": "sac", "steps": steps, "seeds": list(seeds),
        "algo_config": {"learning_starts": 100, "batch_size": 32, "critic_width": 16, "sigma_width": 8},
        "eval_every": 150, "eval_episodes": 2, "final_episodes": 2, "policy": {"width": 8},
        "sweep": sweep or [{"fp32": True}, {"scope": "core", "bits": 2}], "retries": retries,
        **({"search": search} if search else {}),
    }
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


TIMING = {"steps_per_s", "seconds", "train_seconds"}  # how long, not what: the only fields allowed to differ


def untimed(value):
    """A bundle's JSON with its timing fields dropped, at any depth."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def assert_same_bundle(a: Path, b: Path) -> None:
    """Same result: the same actor.pt, norm.npz and integer.npz bytes, and the same history, evaluation
    and bundle record apart from timing (what runners and continued runs must keep; docs/results rely on it)."""
    import json

    for name in ("actor.pt", "norm.npz", "integer.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in ("history.json", "eval.json", "bundle.json"):
        assert untimed(json.loads((a / name).read_text())) == untimed(json.loads((b / name).read_text())), name

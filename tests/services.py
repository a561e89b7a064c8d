"""Real services for tests: starting and stopping Ray and MLflow processes, and small search spaces."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

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

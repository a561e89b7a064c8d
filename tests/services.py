"""Real services for tests: starting and stopping Ray, MLflow and PostgreSQL processes, and small search spaces."""
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


def start(cmd, log, env=None, **popen):
    # A session of its own, so that teardown ends exactly this process group and nothing else.
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**ENV, **(env or {})},
                            start_new_session=True, **popen)


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


def stop_ray(proc):
    """Stop a `ray start --block` node: SIGTERM to it alone first, so that it drains the node while the
    cluster's GCS still answers (~2 s). A SIGTERM to its whole process group ended a head's GCS first,
    and the drain then waited out its 30 s timeout (measured), in every teardown. Then stop() for
    whatever is left of the group."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    stop(proc)


def start_mlflow(backend_uri: str, folder: Path, port: int | None = None, workers: int = 1, env: dict | None = None,
                 log_name: str = "mlflow.log", wait: bool = True):
    """An MLflow tracking server on 127.0.0.1:port (a free one by default) over `backend_uri`, artifacts
    in folder/artifacts, its log in folder/<log_name>, `env` added to its environment. Started again
    with the same store, folder and port, it is the same server. Returns (process, URL), once it
    answers /health unless not `wait`."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                  "--backend-store-uri", backend_uri, "--artifacts-destination", str(folder / "artifacts"),
                  "--workers", str(workers)], open(folder / log_name, "a"), env=env)
    if wait:
        try:
            wait_healthy(url, proc, folder / log_name)
        except BaseException:
            stop(proc)
            raise
    return proc, url


def sqlite_store(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def wait_healthy(url: str, proc, log: Path, timeout: float = 180) -> None:
    """Until the MLflow server at `url` answers /health (~15 s after it starts on SQLite, measured)."""
    deadline = time.time() + timeout
    while True:
        try:
            if requests.get(f"{url}/health", timeout=5).ok:
                return
        except requests.RequestException:  # not listening yet, or still starting its worker
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"mlflow server did not answer {url}/health:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


# PostgreSQL from the `pgserver` wheel (the package registry's self-contained PostgreSQL 16: binaries
# and libraries in the wheel, no system install). Its own `pgserver.get_server(folder)` listens on a
# Unix socket only (postgres -h ""), and under root it adds a `pgserver` system user and opens up the
# permissions of every folder above the data folder; these tests want a loopback port and no changes
# to the machine, so they run the wheel's binaries themselves. Measured here: initdb ~1.4 s, then the
# server accepts connections ~0.3 s after it starts.
PG_USER = "postgres"  # the database's superuser, made by initdb (not a system user)
PG_DATABASE = "mlflow"


def postgres_bin() -> Path:
    # pgserver's README names this folder pgserver.POSTGRES_BIN_PATH, but 0.1.4 does not export it, and
    # importing pgserver sets up its own server manager: find the folder without importing the package.
    spec = importlib.util.find_spec("pgserver")
    if spec is None:
        raise RuntimeError("pgserver is not installed (the project's test extra installs it)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass
class Postgres:
    proc: subprocess.Popen
    port: int
    data: Path
    owned_temp: Path | None  # a folder outside `folder` to remove after stopping (see start_postgres)

    @property
    def uri(self) -> str:
        """The database for MLflow, as SQLAlchemy names it with psycopg 3."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"


def start_postgres(folder: Path, timeout: float = 60) -> Postgres:
    """A fresh PostgreSQL server on a loopback port with an empty database PG_DATABASE; data in
    folder/pgdata, log in folder/postgres.log. Stop it with stop_postgres."""
    import psycopg

    popen, owned = {}, None
    data = folder / "pgdata"
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root (CI and these machines run tests as root): run it as
        # `nobody`. nobody cannot enter pytest's temporary folders (mode 0700, root's), so the data
        # folder goes to a folder of its own under the system's temporary folder, removed on stop.
        nobody = pwd.getpwnam("nobody")
        popen = dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
        owned = Path(tempfile.mkdtemp(prefix="qsearch-pg-"))
        os.chown(owned, nobody.pw_uid, nobody.pw_gid)
        data = owned / "pgdata"
    log = open(folder / "postgres.log", "w")
    # trust: only this machine's loopback can connect, and the server lives as long as the test.
    subprocess.run([str(postgres_bin() / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                    "--encoding=UTF8", "--no-sync"], stdout=log, stderr=subprocess.STDOUT, check=True, **popen)
    port = free_port()
    # -k "": no Unix socket (its path length limit and folder permissions are not worth it); TCP only.
    proc = start([str(postgres_bin() / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", ""],
                 log, **popen)
    pg = Postgres(proc, port, data, owned)
    deadline = time.time() + timeout
    try:
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres",
                                     autocommit=True) as c:
                    c.execute(f"CREATE DATABASE {PG_DATABASE}")  # MLflow creates tables, not the database
                return pg
            except psycopg.OperationalError:  # not accepting connections yet
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{(folder / 'postgres.log').read_text()[-2000:]}")
                time.sleep(0.1)
    except BaseException:
        stop_postgres(pg)
        raise


def stop_postgres(pg: Postgres) -> None:
    stop(pg.proc)  # SIGTERM to its process group: the backends end their sessions, then the server stops (~1 s)
    if pg.owned_temp is not None:
        shutil.rmtree(pg.owned_temp, ignore_errors=True)


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

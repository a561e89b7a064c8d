"""`qsearch ui`: the MLflow UI on a search's tracking store, bound to 127.0.0.1 only."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch import tracking


def command(uri: str, port: int) -> list[str]:
    # one worker: a UI for one person; mlflow's default of 4 costs ~2 GB and a minute to start here
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]


def serve(workdir: str | None = None, tracking_uri: str | None = None, port: int = 5000) -> int:
    if bool(workdir) == bool(tracking_uri):
        raise QsearchError("give one of --workdir or --tracking-uri")
    if not 1 <= port <= 65535:
        raise QsearchError(f"--port must be from 1 to 65535, got {port}")
    if workdir:
        db = Path(workdir) / "mlflow.db"
        if not db.exists():
            raise QsearchError(f"{workdir}: no MLflow store (no mlflow.db); is it a search's --workdir?")
        tracking_uri = tracking.default_uri(Path(workdir))
    tracking.setup_environment()
    print(f"MLflow UI on {tracking_uri}: http://127.0.0.1:{port}  (Ctrl-C stops it)", flush=True)
    # Replace this process: signals (Ctrl-C, kill) then reach the server itself, not a wrapper.
    cmd = command(tracking_uri, port)
    os.execv(cmd[0], cmd)

"""The folder of a search or a selection: its default place, its files, its store, whole-or-nothing
JSON writes, and telling a search's folder from a selection's. Every command that reads or writes
one (search, select, report, --plan, locate, demo) goes through here.

    runs/<name>/            the default folder (the space's name)
      search.json           a search's state: space file, tracking URI, storage, experiment, parent run
      select.json           a selection's state: space file, tracking URI, experiment, selection run
      select.lock           held (flock) by the `qsearch select` running in the folder: one at a time
      selection.json        a selection's record (qsearch/select/selection_record.py)
      selection.md          its tables, as printed
      noise.json            its noise robustness curves
      stages/               each stage's search space as it ran (YAML) and its searches
      mlflow.db, mlartifacts/   the default tracking store (SQLite) and its artifacts
      report/               `qsearch report`
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from qsearch import tracking
from qsearch.errors import QsearchError

ROOT = Path("runs")
SEARCH_STATE = "search.json"
SELECT_STATE = "select.json"
SELECT_LOCK = "select.lock"
SELECTION_RECORD = "selection.json"
SELECTION_TABLES = "selection.md"
NOISE = "noise.json"
STAGES = "stages"
REPORT = "report"
SEARCH, SELECTION = "search", "selection"
STATE_FILES = {SELECTION: SELECT_STATE, SEARCH: SEARCH_STATE}


def default(name: str) -> Path:
    """Where a search or selection named `name` lives unless told otherwise."""
    return ROOT / name


def of(name: str, workdir: str | Path | None) -> Path:
    """The folder given, else the default one for `name`; absolute."""
    return Path(workdir or default(name)).resolve()


def write_text(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a file. The temporary name is this process's own,
    so that two writers of one file never write into each other's temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise QsearchError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise QsearchError(f"{path} is damaged: not JSON ({e})") from None


def kind(folder: Path) -> str | None:
    """SEARCH or SELECTION by the state file the folder holds; None: neither."""
    return next((k for k, name in STATE_FILES.items() if (Path(folder) / name).is_file()), None)


def state(folder: Path, expected: str | None = None) -> dict:
    """The state file of a search's or selection's folder (of the `expected` kind, if given)."""
    found = kind(folder)
    if found is None or (expected and found != expected):
        names = STATE_FILES[expected] if expected else " or ".join(STATE_FILES.values())
        raise QsearchError(f"{folder} holds no {expected or 'search or selection'} (no {names})")
    data = read_json(Path(folder) / STATE_FILES[found])
    if not isinstance(data, dict) or "tracking_uri" not in data:
        raise QsearchError(f"{Path(folder) / STATE_FILES[found]} is damaged: no tracking_uri")
    return data


def tracking_uri(folder: Path) -> str:
    """The tracking store of a search's or selection's folder; a bare store (mlflow.db) is taken too."""
    if kind(folder) is not None:
        return state(folder)["tracking_uri"]
    if (Path(folder) / "mlflow.db").is_file():
        return tracking.default_uri(folder)
    raise QsearchError(f"{folder} holds no search: no {' or '.join(STATE_FILES.values())} and no mlflow.db")


@contextmanager
def held(folder: Path, command: str, name: str = SELECT_LOCK):
    """One `qsearch <command>` in `folder` at a time: an exclusive flock on folder/<name>, held while
    the block runs. Another process holding it is refused in one line naming it.

    Why flock and not "create the file if absent": the kernel drops a flock when its process ends,
    however it ends (SIGKILL, out of memory), so a lock left by a killed process is simply taken over,
    with no stale-lock guessing, and no window where two processes both take over a stale one. The
    file stays in the folder; its text (pid, host, start) only names the holder for the message.
    Limits: a folder on NFS needs a kernel and server with working locks (Linux maps flock to NFS
    byte-range locks); a folder synced between machines some other way is not protected."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QsearchError(f"{folder} is in use by another `qsearch {command}` ({_holder(path)}): wait for it "
                               "to end, or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    """Who holds a lock, from its text: "pid N on HOST, since TIME". The holder writes it just after
    taking the lock, so a text not there yet is read again for a moment."""
    for _ in range(20):
        try:
            h = json.loads(path.read_text())
            return f"pid {h['pid']} on {h['host']}, since {h['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "pid not known"

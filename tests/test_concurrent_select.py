"""Two `qsearch select` at once (issue 25): one selection per folder (select.lock, a second refused in
one line, a killed holder's lock taken over). Real MLflow stores (SQLite)."""
import json
import os
import signal
import subprocess
import sys

from qsearch import run_folder
from qsearch.cli import main
from qsearch.select import selection_record as rec
from select_store import filled_selection


def _hold(folder):
    """A process holding the folder's select lock until killed."""
    code = ("import sys, time; from qsearch import run_folder\n"
            "with run_folder.held(sys.argv[1], 'select'):\n    print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    assert p.stdout.readline() == "held\n"
    return p


def test_a_busy_folder_is_refused_in_one_line_and_a_killed_holders_lock_taken_over(tmp_path, capsys):
    path, workdir, uri = filled_selection(tmp_path)
    holder = _hold(workdir)
    try:
        files = sorted(workdir.rglob("*"))
        assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"qsearch: error: {workdir} is in use by another `qsearch select` (pid {holder.pid} on ")
        assert err.count("\n") == 1 and "wait for it to end, or use another --workdir" in err
        assert sorted(workdir.rglob("*")) == files and not (workdir / run_folder.SELECT_STATE).exists()  # nothing written
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # Killed: its lock file still names it, and the next selection takes the lock over.
    assert json.loads((workdir / run_folder.SELECT_LOCK).read_text())["pid"] == holder.pid
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 0
    assert json.loads((workdir / run_folder.SELECT_LOCK).read_text())["pid"] == os.getpid()
    assert rec.SelectionRecord.from_json(json.loads((workdir / "selection.json").read_text())).selected

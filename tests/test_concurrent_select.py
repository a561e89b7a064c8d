"""Two `qsearch select` at once (issue 25): one selection per folder (select.lock, a second refused in
one line, a killed holder's lock taken over), and two finished runs of one trial counted once. Real
MLflow stores (SQLite)."""
import io
import json
import os
import signal
import subprocess
import sys

from qsearch import run_folder, tracking
from qsearch import trial_record as record
from qsearch.cli import main
from qsearch.select import selection_record as rec
from qsearch.select.selection import select
from select_store import ENV, fill, filled_selection


def _finished_runs(uri):
    c = tracking.client(uri)
    return tracking.search_all(c, tracking.all_experiments(c), record.FINISHED_TRIALS)


def test_two_finished_runs_of_one_trial_count_once(tmp_path):
    path, workdir, uri = filled_selection(tmp_path)  # paper_like returns
    first = {t.key: t.run_id for t in record.read_trials(uri)}
    # The same trials once more, finished later (as a second selection sharing the store leaves them),
    # with other returns: were they counted, FP32 and every value would move.
    fill(uri, workdir, path, lambda conf, seed: 0.0, experiment="second-search")
    assert len(_finished_runs(uri)) == 2 * len(first)
    assert {t.key: t.run_id for t in record.read_trials(uri)} == first  # one per key: the first finished
    both = [record._trial(r) for r in _finished_runs(uri)]
    index = record.Index(both)  # the stage's reader picks the same run from both
    assert all(index.find(t.params).run_id == first[t.key] for t in both)
    out = io.StringIO()
    outcome = select(path, workdir=workdir, noise=False, stream=out)
    assert out.getvalue().count(" 0 to train") == 3
    chosen = outcome.selected[ENV]
    assert (chosen.core_bits, chosen.width, chosen.input_bits) == (3, 32, 4)  # paper_like's pick
    for stage in outcome.stages:
        for value in stage.envs[0].values:
            assert sorted(t.seed for t in value.trials) == [0, 1, 2]  # each seed once
            assert {t.run_id for t in value.trials} <= set(first.values())
    # Both runs of each selected trial tagged (two selections' tags interleaved): read once per key.
    c = tracking.client(uri)
    for r in _finished_runs(uri):
        if r.data.params["configuration"] == chosen.configuration:
            c.set_tag(r.info.run_id, record.SELECTED_TAG, "true")
    assert sorted(t.seed for t in record.selected_trials(uri)) == [0, 1, 2]
    # A selection clears every tagged run of the environment, the second run of a trial too.
    select(path, workdir=workdir, noise=False, stream=io.StringIO())
    tagged = [r for r in _finished_runs(uri) if r.data.tags.get(record.SELECTED_TAG) == "true"]
    assert sorted(r.info.run_id for r in tagged) == sorted(t.run_id for t in chosen.trials)


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

"""Two `qsearch select` at once (issue 25): one selection per folder (select.lock, a second refused in
one line, a killed holder's lock taken over), two finished runs of one trial counted once, claims
(a RUNNING run of a trial makes another selection's trial wait and reuse it), and two real selections
started together on one store: every trial trained once, both records complete.

Real MLflow stores (SQLite) and real Ray; the one test that trains takes about a minute."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from qsearch import run_folder, tracking
from qsearch import trial_record as record
from qsearch.cli import main
from qsearch.select import selection_record as rec
from qsearch.select.selection import select
from qsearch.select import spec
from select_store import ENV, fill, filled_selection, selection_file, superset


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
    capsys.readouterr()  # MLflow's log lines from creating the store (printed only in a fresh process)
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


def _trial_run(uri, workdir, key_of=0):
    """A trial run started as the trainable starts one (RUNNING, its key tagged): (client, run id, key)."""
    sel = spec.load(selection_file(workdir.parent))
    space = superset(sel)
    conf = space.configurations[key_of]
    exp = tracking.experiment(uri, "claims", workdir)
    parent = record.start_search(uri, exp, "a search", {})
    params = space.trial_params(conf, 0)
    c, run = record.start_trial(uri, exp, parent, f"t-{time.time_ns()}", "trial", params)
    return c, run, record.trial_key(params)


def test_a_running_trial_is_a_claim_that_a_younger_one_waits_for_and_reuses(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    c, older, key = _trial_run(uri, workdir)
    _, younger, _ = _trial_run(uri, workdir)
    assert record.live_claims(uri, key, younger) == [older]
    assert record.live_claims(uri, key, older) == []  # the older one never waits for the younger
    assert record.claim(uri, key, older) is None  # so it trains
    assert record.live_claims(uri, key, younger, stale_after=0) == []  # a silent claim is taken for dead
    record.heartbeat(c, older)
    assert float(c.get_run(older).data.tags[record.HEARTBEAT_TAG]) > time.time() - 5

    def finish():  # the older trial ends its training a second later
        time.sleep(1)
        tracking.log_metrics(c, older, {record.FINAL_RETURN: 123.0}, 50)
        record.end_trial(c, older)

    threading.Thread(target=finish).start()
    polls = []
    started = time.time()
    reused = record.claim(uri, key, younger, waiting=lambda: polls.append(1), poll=0.2)
    assert reused.run_id == older and reused.final_return == 123.0 and time.time() - started >= 1 and polls
    record.end_reused(c, younger, reused)
    run = c.get_run(younger)
    assert run.info.status == "KILLED" and run.data.tags[record.REUSED_TAG] == older
    assert [t.run_id for t in record.read_trials(uri)] == [older]
    # A claim that ends without finishing (stopped, failed): the waiting trial trains it itself.
    c2, other, key2 = _trial_run(uri, workdir, key_of=1)
    _, waiting, _ = _trial_run(uri, workdir, key_of=1)
    threading.Thread(target=lambda: (time.sleep(0.5), record.end_trial(c2, other, stopped="stopped"))).start()
    assert record.claim(uri, key2, waiting, poll=0.2) is None


def _trained(out: str) -> int:
    """Trials a selection trained, from its cost line "... (N trials, ..."."""
    line = next(line for line in out.splitlines() if line.startswith("environment steps:"))
    return int(line.split("(")[1].split()[0])


def test_two_selections_started_together_on_one_store_train_each_trial_once(tmp_path):
    # A in folder a; B in folder b on A's store (new: both create it at once); C in folder a too.
    path = selection_file(tmp_path, name="together", top={"seeds": [0, 1], "policy": {"width": 8, "depth": 2}},
                          core_bits=[2], widths=[4], input_bits=[4], speculation="all")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    uri = tracking.default_uri(a)
    cmd = [sys.executable, "-m", "qsearch.cli", "select", str(path), "--no-noise", "--workdir"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    procs = {}
    for name, extra in (("A", [str(a)]), ("B", [str(b), "--tracking-uri", uri]), ("C", [str(a)])):
        procs[name] = subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=env, start_new_session=True)
        time.sleep(0.3)
    try:
        res = {name: (p.wait(600), *p.communicate()) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    # Folder a: exactly one of A and C ran; the other was refused in one line naming it.
    refused = [n for n in ("A", "C") if res[n][0] == 2]
    assert len(refused) == 1, {n: r[2][-2000:] for n, r in res.items()}
    ran = "C" if refused == ["A"] else "A"
    rc, out, err = res[refused[0]]
    assert err == (f"qsearch: error: {a} is in use by another `qsearch select` (pid {procs[ran].pid} on "
                   f"{os.uname().nodename}, since {err.split(', since ')[1].split(')')[0]}): wait for it to end, "
                   "or use another --workdir\n") and out == ""
    assert res[ran][0] == res["B"][0] in (0, 1), (res[ran][2][-2000:], res["B"][2][-2000:])
    # Every trial trained once: one FINISHED run per trial key, the two selections' trainings add up to it.
    finished = Counter(record.trial_key(dict(r.data.params)) for r in _finished_runs(uri))
    assert set(finished.values()) == {1} and len(finished) == 8  # FP32, core 2, width 4, input 4 x 2 seeds
    assert _trained(res[ran][1]) + _trained(res["B"][1]) == 8
    c = tracking.client(uri)
    reused = tracking.search_all(c, tracking.all_experiments(c), f"tags.`{record.REUSED_TAG}` != ''")
    assert all(r.info.status == "KILLED" and finished[record.trial_key(dict(r.data.params))] == 1 for r in reused)
    # Both records whole and the same selection, on the same runs.
    records = [rec.SelectionRecord.from_json(json.loads((w / "selection.json").read_text())) for w in (a, b)]
    assert records[0].stages == records[1].stages and records[0].fp32 == records[1].fp32
    assert records[0].cost.trained + records[1].cost.trained == 8
    assert sorted(t.seed for t in record.selected_trials(uri)) == ([0, 1] if records[0].selected else [])

"""The selection record (qsearch/select/selection_record.py) tells every value's state truthfully,
whichever source the one stage walk (qsearch/select/walk.py) runs on.

The case a real Tune run on 2 cores cannot force, a value started speculatively and then stopped when
a smaller value matched, is driven two ways: in the replay, and through `qsearch select` with the
lazy searcher and stopper driven in a fixed order (the script stands in for Ray Tune's scheduling
only: the searcher, stopper, tracking store, record, tables and report are the real ones)."""
import io
import json

import pytest
from ray.tune.search import Searcher

from qsearch import tracking
from qsearch import trial_record as record
from qsearch.cli import main
from qsearch.select import lazy, replay, report, spec
from qsearch.select import selection_record as rec
from qsearch.select.selection import select
from qsearch.select.store import Store
from qsearch.select.walk import walk
from select_store import ENV, filled_selection, paper_like, selection_file


def every_value_matches(conf, seed):
    return 1000.0


def outcomes(returns):
    return lambda space, conf, seed: replay.Outcome(returns(conf, seed), {25: returns(conf, seed)})


def core_states(record_):
    return [(v.value, v.state) for v in record_.stage("core").envs[0].values]


def test_the_replay_records_a_speculative_value_stopped_as_not_needed(tmp_path):
    # 6 slots, 3 seeds: FP32 and core 2 start at once; core 3 starts (speculation 1) as FP32's slots
    # free up, and is stopped at its next report, once core 2 has matched.
    sel = spec.load(selection_file(tmp_path))
    r = replay.replay(sel, outcomes(every_value_matches), lazy.Strategy(speculation=1), 6)
    assert core_states(r.record) == [(2, rec.MATCHED), (3, rec.STOPPED), (4, rec.NOT_NEEDED)]
    stopped = r.record.stage("core").envs[0].values[1]
    assert stopped.detail == "core bits 2 matches FP32" and stopped.margin is None and not stopped.stats.n
    assert all(t.stopped.startswith("not needed: core bits 2 matches FP32") for t in stopped.trials)
    assert len(stopped.trials) == 3 and r.picks == replay.full_grid(sel, outcomes(every_value_matches))


class ScriptedTune:
    """Ray Tune's part of a stage search, in a fixed order, on 4 slots: FP32 and core 2 start; FP32
    finishes; core 3 starts (speculation 1) and reports at step 10; core 2 finishes and matches; core
    3 reports at step 20 and the stopper stops it. Each trial is a run in the store, as the trainable
    writes it."""

    def __init__(self):
        self.calls = 0

    def __call__(self, space, workdir, address, tracking_uri, searcher, total, storage, share_running):
        assert share_running  # a selection's stages wait for a trial another search trains (not scripted here)
        self.calls += 1
        uri, confs = tracking_uri, {c.key: c for c in space.configurations}
        exp = tracking.experiment(uri, space.name, workdir)
        parent = record.start_search(uri, exp, space.name, {})
        running = {}

        def start():
            while len(running) < 4:
                tid = f"{space.name}-{len(searcher.trials)}"
                got = searcher.suggest(tid)
                if got is None or got == Searcher.FINISHED:
                    return
                conf = confs[got["configuration"]]
                c, run = record.start_trial(uri, exp, parent, tid, conf.key, space.trial_params(conf, got["seed"]))
                running[tid] = (conf, c, run)

        def report(bits, step):
            for tid, (conf, c, run) in list(running.items()):
                if (conf.policy.quant.bits_weight if conf.policy.quant else "fp32") != bits:
                    continue
                result = {"step": step, record.EVAL_RETURN: 1000.0}
                tracking.log_metrics(c, run, {record.EVAL_RETURN: 1000.0}, step)
                if step == space.steps:
                    result[record.FINAL_RETURN] = 1000.0
                    tracking.log_metrics(c, run, {record.FINAL_RETURN: 1000.0}, step)
                    record.end_trial(c, run)
                elif searcher.stopper(tid, result):
                    record.end_trial(c, run, stopped="stopped early by the scheduler")
                else:
                    continue
                searcher.on_trial_complete(tid, result)
                del running[tid]

        start()
        report("fp32", space.steps)
        start()
        report(3, 10)
        report(2, space.steps)
        report(3, 20)
        start()
        assert not running and searcher.suggest("late") == Searcher.FINISHED


def test_select_records_and_reports_a_speculative_value_stopped_as_not_needed(tmp_path, monkeypatch):
    import qsearch.search.run

    tune = ScriptedTune()
    monkeypatch.setattr(qsearch.search.run, "search", tune)
    path = selection_file(tmp_path, top={"seeds": [0, 1]}, widths=[64], input_bits=[8])  # stage 1 only trains
    workdir = tmp_path / "sel"
    out = io.StringIO()
    result = select(path, workdir=workdir, noise=False, stream=out)
    assert tune.calls == 1
    assert core_states(result) == [(2, rec.MATCHED), (3, rec.STOPPED), (4, rec.NOT_NEEDED)]
    saved = rec.SelectionRecord.from_json(json.loads((workdir / "selection.json").read_text()))
    assert saved == result
    core3 = saved.stage("core").envs[0].values[1]
    assert [t.stopped for t in core3.trials] == ["not needed: core bits 2 matches FP32"] * 2
    assert all(t.run_id and t.final_return is None and t.curve == {10: 1000.0, 20: 1000.0} for t in core3.trials)
    md = (workdir / "selection.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("  core bits    3"))
    assert "stopped: not needed" in line and "core bits 2 matches FP32" in line and "failed" not in line
    assert "  core bits    4           not trained  not needed: core bits 2 matches FP32" in md
    assert "(6 trials, 2 of them stopped early)" in out.getvalue()
    assert report.not_trained(report.gather(workdir), "core") == {ENV: [3, 4]}
    # Again: the store answers everything, and the stopped trials are still told as stopped.
    again = select(path, workdir=workdir, noise=False, stream=io.StringIO())
    assert tune.calls == 1 and core_states(again) == core_states(result)


def test_plan_replay_and_select_decide_the_stages_alike(tmp_path):
    path, workdir, uri = filled_selection(tmp_path)
    sel = spec.load(path)
    selected = select(path, workdir=workdir, noise=False, stream=io.StringIO())
    planned = walk(sel, Store(uri))  # what `--plan` walks
    grid = walk(sel, replay.Grid(outcomes(paper_like)), lazy.Strategy(speculation=None))

    def decisions(r):
        return [(s.stage, e.env_id, e.chosen, [(v.value, v.state) for v in e.values]) for s in r.stages for e in s.envs]
    assert decisions(selected) == decisions(planned) == decisions(grid)
    assert [d[2] for d in decisions(selected)] == [3, 32, 4]
    lazy_replay = replay.replay(sel, outcomes(paper_like), lazy.Strategy(speculation=1), 2)
    assert [(s.stage, e.chosen) for s in lazy_replay.record.stages for e in s.envs] == \
        [(s.stage, e.chosen) for s in selected.stages for e in s.envs]


def as_version_1(r: rec.SelectionRecord) -> dict:
    """A selection.json as qsearch wrote it before the record had a version (its rows and notes)."""
    def rows(e):
        return [{"value": v.value, "configuration": v.configuration, "mean": v.stats.mean, "std": v.stats.std,
                 "seeds": list(v.stats.seeds), "match": v.state == rec.MATCHED, "detail": v.detail,
                 "eligible": v.stats.n >= 3, "note": "", "trials": [t.to_json() for t in v.trials]} for v in e.values]
    data = r.to_json()
    return {"space": r.name, "rule": r.rule, "fp32": data["fp32"], "selected": data["selected"], "unmatched": {},
            "stage_tables": ["..."], "cost": data["cost"],
            "stages": {s.stage: {e.env_id: {"fp32_mean": e.fp32.mean, "fp32_std": e.fp32.std,
                                            "chosen": e.pick.configuration, "rows": rows(e)} for e in s.envs}
                       for s in r.stages}}


def test_an_older_selection_json_is_read_and_a_newer_one_refused(tmp_path, capsys):
    path, workdir, uri = filled_selection(tmp_path)
    current = select(path, workdir=workdir, noise=False, stream=io.StringIO())
    old = rec.SelectionRecord.from_json(as_version_1(current))
    assert old.version == 1 and core_states(old) == core_states(current)
    assert old.selected[ENV].configuration == current.selected[ENV].configuration
    (workdir / "selection.json").write_text(json.dumps(as_version_1(current)))
    assert main(["report", "--workdir", str(workdir)]) == 0  # the report reads it
    capsys.readouterr()
    (workdir / "selection.json").write_text(json.dumps({**current.to_json(), "version": rec.RECORD_VERSION + 1}))
    assert main(["report", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"selection record version {rec.RECORD_VERSION + 1}" in err and "upgrade qsearch" in err
    assert len(err.splitlines()) == 1


def test_a_value_state_is_one_of_the_known_ones():
    with pytest.raises(ValueError, match="unknown state"):
        rec.Value(2, "c", "no match")

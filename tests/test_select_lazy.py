"""Lazy selection stages (qsearch/select/lazy.py): the full grid's selection from fewer trials.

Replays (no training) check that every speculation gives the full grid's picks on outcome sets
built to be hard (no match anywhere, a match only at the largest value, ties on the band's edge,
missing seeds, random draws) and under every rule; two real selections on Ray Tune and MLflow check
that skipped trials never start, that stopped trials are KILLED with their reason, and that an
interrupted selection carries on."""
import io
import json
import re

import numpy as np
import pytest

from qsearch import tracking
from qsearch import trial_record as record
from qsearch.cli import main
from qsearch.errors import QsearchError
from qsearch.select import figures, lazy, replay, report, spec, tables
from qsearch.select.parity import Rule, verdict
from qsearch.select.results import Stats
from qsearch.select.selection import select
from select_store import ENV, fill, paper_like, selection_file

FP32_RETURNS = (990.0, 1000.0, 1010.0)
BOUND = float(np.mean(FP32_RETURNS) - np.std(FP32_RETURNS))  # the sigma rule's edge, computed as it does


def fp32_or(value):
    """returns(conf, seed): FP32 990/1000/1010 by seed, quantized from value(conf, seed)."""
    return lambda conf, seed: FP32_RETURNS[seed] if conf.policy.quant is None else value(conf, seed)


def largest_only(conf, seed):
    q = conf.policy.quant
    return 1000.0 + seed if (q.bits_weight, conf.policy.width, q.bits_in) == (4, 64, 8) else 500.0


def on_the_edge(conf, seed):
    # Core 2 a hair below the edge, everything else exactly on it: ties between values and on the bound.
    return BOUND - 1e-9 if conf.policy.quant.bits_weight == 2 else BOUND


def random_set(draw):
    def returns(conf, seed):
        rng = np.random.default_rng([draw, sum(map(ord, conf.key)), seed])
        q = conf.policy.quant
        if q is None:
            return float(rng.normal(1000, 20))
        return float(rng.normal(1000 - 40 * (8 - q.bits_weight) - 0.5 * (64 - conf.policy.width) - 10 * (8 - q.bits_in), 20))
    return returns


OUTCOME_SETS = {
    "paper_like": paper_like,
    "no match at any value": fp32_or(lambda conf, seed: 100.0),
    "a match only at the largest value": fp32_or(largest_only),
    "ties at the bound": fp32_or(on_the_edge),
    "a missing seed moves the pick": lambda conf, seed: (
        None if conf.policy.quant is not None and conf.policy.quant.bits_weight == 3 and seed == 2
        else paper_like(conf, seed)),
    **{f"random draw {d}": random_set(d) for d in range(4)},
}


def outcomes(returns):
    return lambda space, conf, seed: replay.Outcome(returns(conf, seed))


@pytest.mark.parametrize("name", OUTCOME_SETS)
def test_every_speculation_selects_what_the_full_grid_selects(tmp_path, name):
    sel = spec.load(selection_file(tmp_path))
    o = outcomes(OUTCOME_SETS[name])
    reference = replay.full_grid(sel, o)
    grid = replay.replay(sel, o, lazy.Strategy(speculation=None), 1)
    assert grid.picks == reference
    for k in (0, 1, 2, None):
        for slots in (1, 2, 50):
            r = replay.replay(sel, o, lazy.Strategy(speculation=k), slots)
            assert r.picks == reference, (k, slots)
            assert r.steps <= grid.steps and r.notes == 0


@pytest.mark.parametrize("rule", ["welch", "bootstrap"])
def test_the_tests_rules_select_what_the_full_grid_selects(tmp_path, rule):
    sel = spec.load(selection_file(tmp_path, rule=rule))
    for name in ("paper_like", "random draw 0", "random draw 1"):
        o = outcomes(OUTCOME_SETS[name])
        assert replay.replay(sel, o, lazy.Strategy(speculation=0), 2).picks == replay.full_grid(sel, o)


def test_the_expected_picks_of_the_hard_sets(tmp_path):
    sel = spec.load(selection_file(tmp_path))
    picks = {name: replay.full_grid(sel, outcomes(OUTCOME_SETS[name]))[ENV]
             for name in ("no match at any value", "a match only at the largest value", "ties at the bound",
                          "a missing seed moves the pick", "paper_like")}
    assert picks == {"no match at any value": None, "a match only at the largest value": (4, 64, 8),
                     "ties at the bound": (3, 16, 2), "a missing seed moves the pick": (4, 32, 4),
                     "paper_like": (3, 32, 4)}


def test_strictly_lazy_trains_only_up_to_the_match(tmp_path):
    sel = spec.load(selection_file(tmp_path))
    r = replay.replay(sel, outcomes(paper_like), lazy.Strategy(speculation=0), 1)
    # FP32, core 2 (fails), core 3 (matches); width 16 (fails), 32; input 2 (fails), 4. Core 4 never.
    assert r.trials == 3 * (3 + 2 + 2) and r.steps == 21 * 50
    grid = replay.replay(sel, outcomes(paper_like), lazy.Strategy(speculation=None), 1)
    assert grid.trials == 24


def test_the_lazy_order_and_what_is_not_needed(tmp_path):
    sel = spec.load(selection_file(tmp_path))
    space = sel.stage_space("core", {})
    lz = lazy.stage_of(sel, "core", space, lazy.Strategy(speculation=1))
    fp32 = next(c.key for c in space.configurations if c.policy.quant is None)
    core = {c.policy.quant.bits_weight: c.key for c in space.configurations if c.policy.quant}
    started = []
    while (nxt := lz.next_trial()) not in (None, lazy.FINISHED):
        lz.start(*nxt)
        started.append(nxt)
    # FP32 and the smallest value, then one value of speculation; core 4 waits.
    assert started == [(fp32, 0), (fp32, 1), (fp32, 2), (core[2], 0), (core[2], 1), (core[2], 2),
                       (core[3], 0), (core[3], 1), (core[3], 2)]
    for seed in (0, 1, 2):
        lz.end(fp32, seed, FP32_RETURNS[seed])
        assert lz.not_needed(core[3]) is None
        lz.end(core[2], seed, 1000.0)
    assert lz.not_needed(core[3]) == "not needed: core bits 2 matches FP32"
    assert lz.next_trial() == lazy.FINISHED  # core 4 never starts
    assert lz.decision(lz.envs[0]) == (True, 2)
    assert lz.not_needed(core[4]) == "not needed: core bits 2 matches FP32"


def test_adaptive_seeds_decide_a_clear_no_match_on_fewer_seeds_and_a_match_on_all(tmp_path):
    sel = spec.load(selection_file(tmp_path, top={"seeds": [0, 1, 2, 3, 4]}))
    space = sel.stage_space("core", {})
    lz = lazy.stage_of(sel, "core", space, lazy.Strategy(speculation=0, adaptive_seeds=2))
    fp32 = next(c.key for c in space.configurations if c.policy.quant is None)
    core = {c.policy.quant.bits_weight: c.key for c in space.configurations if c.policy.quant}
    for seed in range(5):
        lz.end(fp32, seed, 1000.0 + 10 * seed)
    assert lz.wanted() == [(core[2], 0), (core[2], 1)]
    lz.end(core[2], 0, 100.0)
    lz.end(core[2], 1, 100.0)
    assert lz.value_state(lz.envs[0], 2, core[2]).note == "adaptive seeds: no match on 2 of 5 seeds"
    assert lz.wanted() == [(core[3], 0), (core[3], 1)]
    for seed in (0, 1):
        lz.end(core[3], seed, 1020.0)
    assert lz.wanted() == [(core[3], 2), (core[3], 3)]  # could match: the next batch
    for seed in (2, 3):
        lz.end(core[3], seed, 1020.0)
    assert lz.wanted() == [(core[3], 4)] and not lz.decided()  # a match is decided on all seeds
    lz.end(core[3], 4, 1020.0)
    assert lz.decision(lz.envs[0]) == (True, 3)


def test_a_band_floor_lets_a_near_ceiling_value_match():
    # Measured (issue 12): InvertedDoublePendulum-v5, FP32 9,359.2 +- 0.7, a 2-bit core 9,356.5 +- 1.1.
    fp32, core2 = Stats((9358.5, 9359.9)), Stats((9355.4, 9357.6))
    assert not verdict(core2, fp32, Rule("sigma")).match
    assert verdict(core2, fp32, Rule("sigma", min_band=0.01)).match
    assert "no band floor" in Rule().describe() and "band floor of 1.0%" in Rule(min_band=0.01).describe()


def test_a_band_floor_stays_with_the_rule_given_on_the_command_line(tmp_path, capsys):
    path = selection_file(tmp_path, min_band=0.01)
    assert main(["select", str(path), "--rule", "welch", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "min_band floors the sigma rule's band; the welch rule has no band" in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("selection, message", [
    ({"speculation": -1}, "selection.speculation: must be a number of values (0: strictly lazy) or all"),
    ({"speculation": "some"}, "selection.speculation: must be a number of values"),
    ({"min_band": 1.5}, "selection.min_band: must be a fraction in [0, 1)"),
    ({"min_band": 0.01, "rule": "welch"}, "selection.min_band: floors the sigma rule's band"),
    ({"early_reject": 0}, "selection.early_reject: must be a positive number"),
    ({"adaptive_seeds": 4}, "selection.adaptive_seeds: must be at most 3"),
])
def test_plan_of_a_bad_space_is_one_line_exit_2(tmp_path, capsys, selection, message):
    path = selection_file(tmp_path, **selection)
    assert main(["select", str(path), "--plan", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()


def test_plan_counts_per_strategy_and_what_the_store_leaves(tmp_path, capsys):
    path = selection_file(tmp_path, speculation="all")
    assert spec.load(path).speculation is None
    assert main(["select", str(path), "--plan", "--workdir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "full grid (speculation all) <- this space" in out and "no tracking store yet" in out
    # 1 env x 3 seeds x (FP32 + 3 core bits + 2 widths + 2 input bits) = 24; strictly lazy at best
    # FP32 and one value per stage: 3 x (1 + 1 + 1 + 1) = 12.
    row = next(line for line in out.splitlines() if "lazy, speculation 0" in line).split()
    assert row[3:7] == ["24", "1,200", "12", "600"]
    assert not (tmp_path / "w").exists()  # nothing written
    workdir = tmp_path / "sel"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    fill(uri, workdir, path, fp32_or(lambda conf, seed: None))  # FP32 only: stage 1 is not decided yet
    assert main(["select", str(path), "--plan", "--tracking-uri", uri, "--workdir", str(tmp_path / "w")]) == 0
    assert "3 of the stages' trials there; remaining at most 21 trials, 1,050 environment steps" in capsys.readouterr().out


def _kinds(uri):
    """configuration -> [(status, stop reason, early rejection)] of every trial run in the store."""
    c = tracking.client(uri)
    out = {}
    for r in c.search_runs(tracking.all_experiments(c), f"tags.`{record.KIND_TAG}` = '{record.TRIAL}'"):
        out.setdefault(r.data.params["configuration"], []).append(
            (r.info.status, r.data.tags.get(record.STOP_REASON_TAG), r.data.tags.get(record.REJECTED_TAG)))
    return out


class Interrupt(io.StringIO):
    """The selection's output stream, interrupting it (as Ctrl-C would) once stage 1 is done."""

    def write(self, s):
        if "stage width" in s:
            raise KeyboardInterrupt
        return super().write(s)


def test_a_real_lazy_selection_never_starts_what_it_skips_and_resumes(tmp_path):
    # FP32 (in the store, as an earlier search left it) returns 0: every quantized value matches, so
    # the smallest of each stage is picked and nothing larger is needed. Width 64 and input 8 are the
    # earlier picks, so stage 2 trains width 16 only, and stage 3 nothing.
    path = selection_file(tmp_path, top={"seeds": [0, 1]}, speculation=0, widths=[16, 32], input_bits=[8])
    workdir = tmp_path / "sel"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    fill(uri, workdir, path, lambda conf, seed: 0.0 if conf.policy.quant is None else None)
    with pytest.raises(KeyboardInterrupt):
        select(path, workdir=workdir, noise=False, stream=Interrupt())
    runs = _kinds(uri)
    core = {k.split("/")[1]: v for k, v in runs.items() if "/h64x2" in k}
    assert core == {"fp32": [("FINISHED", None, None)] * 2, "i8w2a2o8": [("FINISHED", None, None)] * 2}
    trials = json.loads((workdir / "stages" / "core-1" / "trials.json").read_text())  # Tune's trials
    assert sorted((r["configuration"].split("/")[1], r["seed"], r["status"]) for r in trials) == [
        ("i8w2a2o8", 0, "done"), ("i8w2a2o8", 1, "done")]  # core 3 and 4 never started
    out = io.StringIO()
    outcome = select(path, workdir=workdir, noise=False, stream=out)  # carries on after the interruption
    text = out.getvalue()
    assert "stage core: 8 trials, 4 reused from the tracking store, 0 to train" in text
    assert "stage input: 2 trials, 2 reused from the tracking store, 0 to train" in text
    assert outcome.selected[ENV].core_bits == 2 and outcome.selected[ENV].width == 16
    runs = _kinds(uri)
    assert sorted(runs) == [f"{ENV}/fp32/h64x2", f"{ENV}/i8w2a2o8/h16x2", f"{ENV}/i8w2a2o8/h64x2"]  # nothing else ran
    assert all(s == [("FINISHED", None, None)] * 2 for s in runs.values())
    assert "core bits    3           not trained  not needed: core bits 2 matches FP32" in text
    assert "width   32           not trained  not needed: width 16 matches FP32" in text
    assert "environment steps: 100 trained by this selection (2 trials, 0 of them stopped early)" in text
    data = report.gather(workdir)
    assert report.not_trained(data, "core") == {ENV: [3, 4]} and report.not_trained(data, "width") == {ENV: [32]}
    # one core bit width trained (2; 3 and 4 not needed): a single-point panel is not drawn
    assert not figures.bitwidth(data.trials, data.fp32, data.fp32_width, tmp_path / "fig1.png", {ENV: [3, 4]})
    assert "## Cost" in report.markdown(data, {name: False for name, _, _ in report.FIGURES})
    c = tracking.client(uri)
    last = c.search_runs(tracking.all_experiments(c), f"tags.`{record.KIND_TAG}` = '{record.SELECTION}'",
                         order_by=["attributes.start_time DESC"])[0]
    assert last.data.metrics[record.STEPS_SPENT] == 100 and last.data.metrics[record.STEPS_GRID] == 12 * 50


def test_early_rejection_stops_trials_killed_with_the_reason_and_a_rerun_trains_nothing(tmp_path, capsys):
    # FP32's curve (in the store) is at 1.5e6 by step 500, far beyond any real return: every
    # quantized trial lies below it from half the budget on, at steps 500 and 750 of 1,000 (two
    # checkpoints in a row), and is stopped there. The other seed of the value, running beside it,
    # is stopped too: rejected as well, or not needed once its value is decided.
    path = selection_file(tmp_path, top={"seeds": [0, 1], "steps": 1000, "eval_every": 250}, speculation=0,
                          early_reject=3, core_bits=[2])
    workdir = tmp_path / "sel"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    fill(uri, workdir, path, lambda conf, seed: 3e6 if conf.policy.quant is None else None)
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 1
    out = capsys.readouterr().out
    runs = _kinds(uri)["InvertedPendulum-v5/i8w2a2o8/h64x2"]
    assert sorted(s for s, _, _ in runs) == ["KILLED", "KILLED"]  # never FAILED
    reasons = sorted(why.split(":")[0] for _, why, _ in runs)
    assert reasons in (["early rejection", "early rejection"], ["early rejection", "not needed"])
    assert any(rej and rej.startswith("step 750: evaluation return") for _, _, rej in runs)
    assert "early rejection at step 750" in out and "no configuration matches FP32" in out
    assert "(2 trials, 2 of them stopped early)" in out
    # Run again: the early rejection recorded in the store stands, nothing is trained.
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 1
    assert "stage core: 4 trials, 2 reused from the tracking store, 0 to train" in capsys.readouterr().out
    # Other settings (a threshold of 10 half-widths, not 3): the recorded rejections do not stand, so
    # the value is trained again, and rejected again under the new settings.
    selection_file(tmp_path, top={"seeds": [0, 1], "steps": 1000, "eval_every": 250}, speculation=0,
                   early_reject=10, core_bits=[2])
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 1
    out = capsys.readouterr().out
    assert "stage core: 4 trials, 2 reused from the tracking store, at most 2 to train" in out
    runs = _kinds(uri)["InvertedPendulum-v5/i8w2a2o8/h64x2"]
    assert len(runs) == 4 and all(s == "KILLED" for s, _, _ in runs)
    settings = [json.loads(r.data.tags[record.REJECTION_SETTINGS_TAG]) for r in tracking.search_all(
        tracking.client(uri), tracking.all_experiments(tracking.client(uri)), f"tags.`{record.KIND_TAG}` = 'trial'")
        if record.REJECTION_SETTINGS_TAG in r.data.tags]
    assert sorted({s["early_reject"] for s in settings}) == [3.0, 10.0]


LUT_SIZES = [{"thermometer_bits": 8, "luts": [256], "lut_inputs": 4, "mapping": "random"},
             {"thermometer_bits": 8, "luts": [16, 16], "lut_inputs": 4, "mapping": "random"},
             {"thermometer_bits": 8, "luts": [64, 64], "lut_inputs": 4, "mapping": "random"}]


def with_circuits(network):
    """network's returns for FP32 and networks; logic circuits of fewer than 100 nodes fail, larger match."""
    return lambda conf, seed: (998.0 if sum(conf.policy.luts) > 100 else 600.0) if conf.policy.lut else network(conf, seed)


@pytest.mark.parametrize("network", [paper_like, fp32_or(lambda conf, seed: 100.0)], ids=["paper_like", "no network matches"])
def test_a_lut_stage_picks_the_smallest_matching_circuit_beside_the_network(tmp_path, network):
    sel = spec.load(selection_file(tmp_path, lut_sizes=LUT_SIZES))
    assert [sum(s["luts"]) for s in sel.lut_sizes] == [32, 128, 256]  # by node count
    plain = replay.full_grid(spec.load(selection_file(tmp_path, name="plain")), outcomes(network))
    lazy_run = replay.replay(sel, outcomes(with_circuits(network)), lazy.Strategy(speculation=0), 1)
    record = lazy_run.record
    assert replay.picks(record) == plain  # the network's selection is what it is without stage lut
    st = record.stage("lut")
    assert [(v.value, v.state) for v in st.envs[0].values] == [(32, "failed"), (128, "matched"), (256, "not needed")]
    assert record.lut_picks[ENV].configuration == f"{ENV}/lut/t8/l64-64k4/random/o8"
    assert record.describe(record.lut_picks[ENV].configuration) == "LUT 64-64 of 4 inputs, thermometer 8b"
    d = record.to_json()
    assert d["version"] == 3 and d["lut_picks"][ENV]["configuration"] == record.lut_picks[ENV].configuration
    again = rec_from_json(json.loads(json.dumps(d)))
    assert again.lut_picks == record.lut_picks and again.selected == record.selected
    text = tables.markdown(record)
    assert "LUT nodes  128" in text and "smallest logic circuit matching FP32: LUT 64-64 of 4 inputs" in text


def rec_from_json(d):
    from qsearch.select.selection_record import SelectionRecord

    return SelectionRecord.from_json(d)


@pytest.mark.parametrize("sizes, message", [
    ([{"luts": [[8], [16]]}], "selection.lut_sizes[0]: is one size"),
    ([{"thermometer_bits": 200}], "selection.lut_sizes[0].thermometer_bits: must be at most 127"),
    ([{"luts": [64]}, {"luts": [32, 32]}], "sizes must differ in node count"),
    ([{"colour": 1}], "selection.lut_sizes[0].colour: unknown key"),
])
def test_bad_lut_sizes_are_one_line(tmp_path, sizes, message):
    with pytest.raises(QsearchError, match=re.escape(message)):
        spec.load(selection_file(tmp_path, lut_sizes=sizes))

"""Staged selection on synthetic results in a real MLflow store (no training): each stage, ties,
missing seeds, no configuration matching, reuse of finished trials, tags, and bad input."""
import io
import json

import pytest

from qsearch.cli import main
from qsearch.errors import QsearchError
from qsearch import tracking
from qsearch import trial_record as record
from qsearch.select import lazy, replay, spec
from qsearch.select import selection_record as rec
from qsearch.select.parity import Rule
from qsearch.select.results import Stats
from qsearch.select.selection import noise_models, select
from qsearch.select.stages import pick
from qsearch.select.tables import selection_table
from qsearch.select.walk import walk
from select_store import ENV, filled_selection, paper_like, selection_file

FP32 = Stats((990.0, 1000.0, 1010.0), (0, 1, 2))


def s(*returns):
    return Stats(tuple(returns), tuple(range(len(returns))))


def test_pick_takes_the_smallest_match_even_over_a_better_larger_one():
    o = pick("core", ENV, [(4, "c4", s(1100, 1100, 1100)), (2, "c2", s(600, 600, 600)),
                           (3, "c3", s(995, 995, 995))], FP32, Rule(), 3)
    assert o.chosen.value == 3
    assert [r.value for r in o.rows] == [2, 3, 4]


def test_pick_tie_on_the_band_edge_and_between_candidates():
    edge = FP32.mean - FP32.std
    o = pick("width", ENV, [(32, "w32", s(edge, edge, edge)), (16, "w16", s(edge, edge, edge))], FP32, Rule(), 3)
    assert o.chosen.value == 16  # both on the edge (a match): the smaller one


def test_pick_skips_a_candidate_with_missing_seeds():
    o = pick("core", ENV, [(2, "c2", s(1000, 1000)), (3, "c3", s(1000, 1000, 1000))], FP32, Rule(), 3)
    assert o.chosen.value == 3
    assert not o.rows[0].eligible and o.rows[0].verdict.match


def test_pick_with_no_match_says_so():
    o = pick("core", ENV, [(2, "c2", s(10, 10, 10)), (3, "c3", s(20, 20, 20))], FP32, Rule(), 3)
    assert o.chosen is None


def test_three_stages_on_a_store_that_holds_every_result(tmp_path):
    path, workdir, uri = filled_selection(tmp_path)
    out = io.StringIO()
    outcome = select(path, workdir=workdir, noise=False, stream=out)
    text = out.getvalue()
    assert text.count("to train") == 3 and "0 to train" in text  # every stage answered by the store
    assert not (workdir / "stages").exists()  # no search was started, so no stage space was recorded
    chosen = outcome.selected[ENV]
    assert (chosen.core_bits, chosen.width, chosen.input_bits) == (3, 32, 4)
    assert chosen.stats.mean == pytest.approx(998.0) and chosen.fp32.mean == pytest.approx(1000.0)
    # Stage 2 held the stage-1 width 64 as a candidate, stage 3 the 8-bit input.
    assert [v.value for v in outcome.stage("width").envs[0].values] == [16, 32, 64]
    assert [v.value for v in outcome.stage("input").envs[0].values] == [2, 4, 8]
    tagged = record.selected_trials(uri)
    assert sorted(t.seed for t in tagged) == [0, 1, 2]
    assert {t.configuration for t in tagged} == {chosen.configuration}
    table_text = selection_table(outcome)
    assert "998.0 +- 8.2" in table_text and "1000.0 +- 8.2" in table_text and "sigma" in table_text
    saved = json.loads((workdir / "selection.json").read_text())
    assert saved["version"] == 2 and saved["selected"][ENV]["configuration"] == chosen.configuration  # no stage lut
    assert rec.SelectionRecord.from_json(saved) == outcome  # the file holds the whole record


def test_a_second_select_trains_nothing_and_retags(tmp_path):
    path, workdir, uri = filled_selection(tmp_path)
    select(path, workdir=workdir, noise=False, stream=io.StringIO())
    # Same space again: every stage is answered by the store, and the tags are set once more.
    out = io.StringIO()
    outcome = select(path, workdir=workdir, noise=False, stream=out, rule=Rule("sigma"))
    assert out.getvalue().count(" 0 to train") == 3
    assert len(record.selected_trials(uri)) == 3
    c = tracking.client(uri)
    kinds = [r.data.tags.get(record.KIND_TAG) for r in c.search_runs(tracking.all_experiments(c))]
    assert kinds.count(record.SELECTION) == 2 and kinds.count(record.SEARCH) == 1  # the synthetic one
    assert outcome.selected[ENV].core_bits == 3


def grid(returns):
    """A walk over every outcome: returns(conf, seed) -> final return, None for a failed trial."""
    return replay.Grid(lambda space, conf, seed: replay.Outcome(returns(conf, seed)))


def test_missing_seeds_move_the_pick(tmp_path):
    # Core 3 lost seed 2 (its trial failed): 2 of 3 seeds is too few, so core 4 is picked.
    sel = spec.load(selection_file(tmp_path))
    lost = lambda conf, seed: None if conf.policy.quant and conf.policy.quant.bits_weight == 3 and seed == 2 \
        else paper_like(conf, seed)  # noqa: E731
    core = walk(sel, grid(lost), lazy.Strategy(speculation=None)).stage("core").envs[0]
    assert core.chosen == 4
    assert [(v.value, v.state) for v in core.values] == [(2, rec.FAILED), (3, rec.FAILED_TO_TRAIN), (4, rec.MATCHED)]
    assert core.values[1].detail == "2 of 3 seeds finished (needs 3)" and core.values[1].stats.seeds == (0, 1)


def test_no_configuration_matching_selects_nothing(tmp_path, capsys):
    path, workdir, uri = filled_selection(tmp_path, lambda conf, seed: 1000.0 + seed if conf.policy.quant is None else 100.0)
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 1
    out = capsys.readouterr().out
    assert "no configuration matches FP32 (core bits [2, 3, 4]); nothing selected" in out
    assert "stage width" not in out  # nothing got past stage 1: no later stage ran
    assert record.selected_trials(uri) == []


def test_no_fp32_baseline_is_one_line(tmp_path):
    sel = spec.load(selection_file(tmp_path))
    with pytest.raises(QsearchError, match="no FP32 baseline to compare with: 0 of 3"):
        walk(sel, grid(lambda conf, seed: None if conf.policy.quant is None else 900.0))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("selection"), "selection: missing: this is a search space"),
    (lambda d: d.update(sweep=[{"fp32": True}]), "sweep: a selection space has no sweep"),
    (lambda d: d["selection"].update(rule="median"), "selection.rule: unknown rule 'median'"),
    (lambda d: d["selection"].update(core_bits=[1]), "selection.core_bits[0]: must be at least 2"),
    (lambda d: d["selection"].update(min_seeds=4), "selection.min_seeds: must be at most 3"),
    (lambda d: d["selection"].update(extra=1), "selection.extra: unknown key"),
    (lambda d: d["selection"].pop("widths"), "selection.widths: missing"),
    (lambda d: d["selection"].update(noise_models="all"), "selection.noise_models: must be one of final, stages"),
    (lambda d: d.update(search={"searcher": "optuna"}), "search.searcher: selection trains every"),
    (lambda d: d.update(search={"scheduler": "asha"}), "search.scheduler: a selection stops trials itself"),
    (lambda d: d.update(search={"grace_steps": 10}), "search.grace_steps: a selection chooses and stops its own"),
])
def test_bad_selection_spaces_are_one_line_exit_2(tmp_path, capsys, change, message):
    import yaml

    path = selection_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    assert main(["select", str(path), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_select_of_a_missing_file_and_a_foreign_folder(tmp_path, capsys):
    assert main(["select", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = selection_file(tmp_path)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "search.json").write_text("{}")
    assert main(["select", str(path), "--workdir", str(tmp_path / "w")]) == 2
    assert "holds a search, not a selection" in capsys.readouterr().err


def test_min_band_from_the_command_line_passes_a_ceiling(tmp_path, capsys):
    """FP32 at a task's ceiling (std 0): a quantized 99.5% fails the paper's rule and passes with a 1% floor."""
    path, workdir, uri = filled_selection(tmp_path, lambda conf, seed: 1000.0 if conf.policy.quant is None else 995.0)
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise"]) == 1
    assert record.selected_trials(uri) == []
    assert main(["select", str(path), "--workdir", str(workdir), "--no-noise", "--min-band", "0.01"]) == 0
    assert "with a band floor of 1.0%" in capsys.readouterr().out
    assert {t.params["bits_weight"] for t in record.selected_trials(uri)} == {"2"}
    assert main(["select", str(path), "--workdir", str(workdir), "--min-band", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "min_band must lie in [0, 1)" in err and err.count("\n") == 1


def test_the_noise_study_evaluates_the_final_pick_or_every_stages_pick(tmp_path):
    """paper_like picks core 3 (width 64, input 8), then width 32, then input 4: `stages` evaluates
    all three picks besides FP32, each under its configuration, the selected one last."""
    path, workdir, _ = filled_selection(tmp_path)
    assert spec.load(path).noise_models == "final"
    result = select(path, workdir=workdir, noise=False, stream=io.StringIO())
    final, stages = noise_models(result, "final")[ENV], noise_models(result, "stages")[ENV]
    assert list(final) == ["fp32", "selected"] and list(stages) == ["fp32", "core", "width", "selected"]
    assert [result.describe(m["configuration"]) for m in list(stages.values())[1:]] == [
        "core 3b, width 64, input 8b", "core 3b, width 32, input 8b", "core 3b, width 32, input 4b"]
    assert stages["selected"]["stages"] == ["input"] and final["selected"] == stages["selected"]
    assert [t.seed for t in stages["core"]["trials"]] == [0, 1, 2] and len(stages["fp32"]["trials"]) == 3


def test_a_configuration_two_stages_picked_is_evaluated_once(tmp_path):
    """No narrower width and no fewer input bits match: every stage picks core 3 at width 64 with 8-bit input."""
    def wide(conf, seed):
        q, p = conf.policy.quant, conf.policy
        if q is not None and (p.width < 64 or q.bits_in < 8):
            return 500.0
        return paper_like(conf, seed)
    sel = spec.load(selection_file(tmp_path, noise_models="stages"))
    assert sel.noise_models == "stages"
    result = walk(sel, grid(wide), lazy.Strategy(speculation=None))
    models = noise_models(result, "stages")[ENV]
    assert list(models) == ["fp32", "selected"] and models["selected"]["stages"] == ["core", "width", "input"]
    assert [p.stages for p in result.picks(ENV)] == [("core", "width", "input")]

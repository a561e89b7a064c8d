"""`qsearch report` on synthetic results in real MLflow stores: every figure written and non-empty,
the Markdown summary, the MLflow artifacts, and bad input (one line, exit 2)."""
import io
import json
import os
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

from qsearch.cli import main
from qsearch.search import space as spaces
from qsearch import tracking
from qsearch import trial_record as record
from qsearch.select import figures
from qsearch.select import pareto
from qsearch.select import selection_record as rec
from qsearch.select.report import FIGURES, gather, noise_curves

# what a selection without open-flow designs can draw: every figure but return against hardware cost
DRAWABLE = [name for name, _, _ in FIGURES if name != pareto.FIGURE]
from qsearch.select.parity import Rule, verdict
from qsearch.select.results import Stats
from qsearch.trial_record import Trial
from qsearch.select.selection import noise_models as selection_noise_models, select
from select_store import ENV, fill_space, filled_selection, selection_file


def search_folder(tmp_path, returns, sweep):
    """A search's folder as `qsearch search` leaves it: search.json, a store, a parent run, trials."""
    workdir = tmp_path / "search"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    space = spaces.parse({"name": "sens", "envs": [ENV, "Pendulum-v1"], "steps": 50, "seeds": [0, 1, 2],
                          "policy": {"width": 64}, "sweep": sweep}, "sens.yaml")
    exp = tracking.experiment(uri, space.name, workdir)
    parent = record.start_search(uri, exp, space.name, {})
    fill_space(uri, workdir, space, returns, exp, parent=parent)
    (workdir / "search.json").write_text(json.dumps({"space_name": space.name, "tracking_uri": uri,
                                                     "experiment_id": exp, "parent_run_id": parent}))
    return workdir, uri, parent


def scope_returns(conf, seed):
    """Falls off below 4 bits, faster for the input; Pendulum's returns are negative."""
    q = conf.policy.quant
    base = 1000.0 if conf.env_id == ENV else -200.0
    if q is None:
        return base + 20 * (seed - 1)
    worst = min(q.bits_in + 1, q.bits_weight, q.bits_out + 2)
    return base - abs(base) * max(0, 4 - worst) * 0.3 + 15 * (seed - 1)


def noisy_selection(tmp_path):
    """A finished selection with noise.json as `select` writes it (its Ray evaluation is covered in
    test_demo.py): (folder, outcome, the noise curves by key)."""
    path, workdir, uri = filled_selection(tmp_path)
    outcome = select(path, workdir=workdir, noise=False, stream=io.StringIO())
    sig = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    curves = {}
    for key, m, k in (("fp32", 1000, 3), ("core", 995, 2), ("width", 992, 1.5), ("selected", 990, 1)):
        per_model = [[m - k * 100 * s + d for s in sig] for d in (-20, 0, 20)]
        picked = selection_noise_models(outcome, "stages")[ENV][key]
        curves[key] = {"configuration": picked["configuration"], "stages": picked["stages"], "sigma": sig,
                       "seeds": [0, 1, 2], "per_model": per_model, "mean": [m - k * 100 * s for s in sig],
                       "std": [16.3] * len(sig)}
    (workdir / "noise.json").write_text(json.dumps({"episodes": 10, "models": "stages", "envs": {ENV: curves}}))
    return workdir, outcome, curves


def test_selection_report_draws_every_figure_and_logs_it(tmp_path, capsys):
    workdir, outcome, curves = noisy_selection(tmp_path)
    uri = tracking.default_uri(workdir)

    assert main(["report", "--workdir", str(workdir)]) == 0
    assert "fig3_noise.png: drawn" in capsys.readouterr().out
    report = workdir / "report"
    for name in DRAWABLE:
        assert (report / name).stat().st_size > 5000, name
    md = (report / "report.md").read_text()
    assert md.count("Not drawn") == 1 and "Not drawn: needs open-flow designs" in md
    assert outcome.selected[ENV].configuration in md
    noise_section = md.split("## Noise robustness")[1].split("## Figures")[0]
    rows = [line for line in noise_section.splitlines() if line.startswith("| ") and "+-" in line]
    assert [r.split(" | ")[0] for r in rows] == [  # named by configuration, FP32 first, the selected one last
        "| FP32, width 64", "| core 3b, width 64, input 8b (core stage's pick)",
        "| core 3b, width 32, input 8b (width stage's pick)", "| core 3b, width 32, input 4b (selected)"]
    assert rows[-1].endswith("| 940.0 +- 16.3 |")
    # A noise.json from before curves recorded their configuration is named from the selection record.
    (workdir / "noise.json").write_text(json.dumps({"episodes": 10, "envs": {ENV: {
        key: {k: v for k, v in curves[key].items() if k not in ("configuration", "stages")}
        for key in ("selected", "fp32")}}}))
    assert list(noise_curves(gather(workdir))[ENV]) == ["FP32, width 64", "core 3b, width 32, input 4b (selected)"]
    run_id = json.loads((workdir / "select.json").read_text())["selection_run_id"]
    logged = {os.path.basename(f.path) for f in tracking.client(uri).list_artifacts(run_id, record.REPORT_ARTIFACT)}
    assert logged == {"report.md", *DRAWABLE}


def test_search_report_draws_what_its_data_supports(tmp_path, capsys):
    sweep = [{"fp32": True}, {"scope": ["all", "input", "output", "core"], "bits": [2, 3, 4, 8]},
             {"bits_core": 3, "width": [16, 32]}]
    workdir, uri, parent = search_folder(tmp_path, scope_returns, sweep)
    assert main(["report", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    drawn = {line.split(":")[0].strip() for line in out.splitlines() if line.endswith(": drawn")}
    assert drawn == {"fig1_bitwidth.png", "fig4_width.png", "fig5_input_bits.png"}
    md = (workdir / "report" / "report.md").read_text()
    assert "Not drawn: needs a selection (qsearch select)." in md
    assert not (workdir / "report" / "fig2_training.png").exists()
    assert (workdir / "report" / "fig1_bitwidth.png").stat().st_size > 5000
    names = {os.path.basename(f.path) for f in tracking.client(uri).list_artifacts(parent, record.REPORT_ARTIFACT)}
    assert "fig1_bitwidth.png" in names


def test_search_without_fp32_baseline(tmp_path, capsys):
    workdir, _, _ = search_folder(tmp_path, scope_returns, [{"scope": "core", "bits": [2, 3]}])
    capsys.readouterr()  # MLflow's own log lines from creating the store
    assert main(["report", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert "no FP32 baseline for InvertedPendulum-v5, Pendulum-v1" in err and err.count("\n") == 1
    assert not (workdir / "report").exists()


def test_store_without_runs(tmp_path, capsys):
    workdir, _, _ = search_folder(tmp_path, lambda conf, seed: None, [{"fp32": True}])
    assert main(["report", "--workdir", str(workdir)]) == 2
    assert "sens: no finished trials in the tracking store" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["report"], "give either a space file or --workdir"),
    (["report", "search_spaces/quickstart.yaml", "--workdir", "x"], "give either a space file or --workdir"),
    (["report", "--workdir", "/nonexistent/folder"], "no such folder"),
])
def test_report_arguments(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_search_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/<name> is looked up under the current folder
    space = selection_file(tmp_path, name="never_run")
    assert main(["report", str(space)]) == 2
    err = capsys.readouterr().err
    assert "no search or selection named 'never_run'" in err and err.count("\n") == 1
    (tmp_path / "runs" / "never_run").mkdir(parents=True)
    assert main(["report", str(space)]) == 2
    assert "holds no search or selection" in capsys.readouterr().err


def test_a_selections_pareto_points_carry_its_own_verdicts(tmp_path):
    """A selection's points say "matches FP32" where its record says so (its rule, with its band floor),
    not where the search's sigma rule would; designs join their trials through hw.json's runs."""
    workdir, outcome, _ = noisy_selection(tmp_path)
    data = gather(workdir)
    quantized = [t for t in data.trials if not t.fp32]
    data.hw = {"runs": {f"p{i}": t.run_id for i, t in enumerate(quantized)},
               "rows": [{"flow": "open", "policy": f"p{i}", "target_fps": 1e6, "fits": True, "lut": 100 + i,
                         "ff": 10, "lut_levels": 3, "latency_cycles": 2} for i, _ in enumerate(quantized)]}
    # An FP32 reference no candidate is within one std of: the sigma rule would match none of them.
    data.fp32[ENV] = Stats((1000.0, 1000.0, 1000.1))
    pts = pareto.points(data)
    assert {p.configuration for p in pts} == {t.configuration for t in quantized}
    matched = {v.configuration for s in data.selection.stages for e in s.envs for v in e.values
               if v.state == rec.MATCHED}
    assert {p.configuration for p in pts if p.matches_fp32} == matched
    assert outcome.selected[ENV].configuration in matched and any(not p.matches_fp32 for p in pts)
    assert not any(verdict(p.stats, data.fp32[ENV], Rule()).match for p in pts)


def test_designs_over_the_device_are_shown_and_unsynthesized_ones_named(tmp_path):
    """A configuration whose design is over the part keeps its measured cost (not on the front); one
    whose design was not synthesized is named under its table; a target nothing fits is not drawn."""
    workdir, _, _ = noisy_selection(tmp_path)
    data = gather(workdir)
    quantized = [t for t in data.trials if not t.fp32]
    big, unsynthesized = sorted({t.configuration for t in quantized})[:2]

    def row(i, t, target):
        lut = 20_000 if t.configuration == big else float("nan") if t.configuration == unsynthesized else 100 + i
        return {"flow": "open", "policy": f"p{i}", "target_fps": target, "fits": lut == 100 + i, "lut": lut,
                "ff": 10, "lut_levels": 3, "latency_cycles": 2, "note": "not synthesized: ~90,000 LUT"}

    data.hw = {"runs": {f"p{i}": t.run_id for i, t in enumerate(quantized)},
               "device": {"part": "xc7a15tfgg484-1", "lut": 10_400},
               "rows": [row(i, t, 1e6) for i, t in enumerate(quantized)]
               + [{**row(i, t, 1e8), "fits": False} for i, t in enumerate(quantized)]}
    pts = pareto.points(data)
    assert {p.target_fps for p in pts} == {1e6}
    over = [p for p in pts if p.configuration == big]
    assert [(p.fits, p.front, p.lut) for p in over] == [(False, False, 20_000)]
    assert unsynthesized not in {p.configuration for p in pts}
    assert all(p.fits for p in pts if p.configuration != big) and any(p.front for p in pts)
    lines = pareto.table(data)
    assert f"Not synthesized at this target: {unsynthesized.removeprefix(ENV + '/')} (~90,000 LUT)." in lines
    assert any(line.startswith(f"| {big.removeprefix(ENV + '/')} |") and "| 20,000 |" in line and "| no |" in line
               for line in lines)


def test_the_report_redrawn_from_its_data_alone(tmp_path, capsys):
    workdir, outcome, _ = noisy_selection(tmp_path)
    data = tmp_path / "pub" / "study.json"
    assert main(["report", "--workdir", str(workdir), "--data", str(data)]) == 0
    d = json.loads(data.read_text())
    used = {t.run_id for t in gather(workdir).trials}
    assert {t["run_id"] for t in d["trials"]} == used and d["kind"] == "selection"
    one = next(t for t in d["trials"] if t["params"]["fp32"] == "True")
    assert one["curve"] == [[25, one["summary"]["final_return"] / 2], [50, one["summary"]["final_return"]]]
    assert d["selection"]["version"] == 2 and set(d["noise"][ENV]) == {"fp32", "core", "width", "selected"}

    # The store is gone: the file alone draws the same report (tables and figures).
    shutil.rmtree(workdir)
    capsys.readouterr()
    assert main(["report", "--from-data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "fig3_noise.png: drawn" in out and out.count("not drawn") == 1 and f"{pareto.FIGURE}: not drawn" in out
    redrawn = tmp_path / "pub" / "study"
    md = (redrawn / "report.md").read_text()
    assert md.splitlines()[2].startswith("Redrawn from `study.json`; recorded in tracking store")
    for name in DRAWABLE:
        assert (redrawn / name).stat().st_size > 5000, name
    assert f"{outcome.selected[ENV].configuration}" in md
    table1 = md.split("## Selection (paper Table 1)")[1].split("## Stages")[0].splitlines()
    assert table1[5].split() == [ENV, "32", "3", "4", "998.0", "+-", "8.2", "1000.0", "+-", "8.2"]
    configurations = md.split("## Configurations")[1].split("##")[0]
    assert f"| {outcome.selected[ENV].configuration} | 988.0 | 998.0 | 1,008.0 | 998.0 +- 8.2 |" in configurations
    noise_rows = [line for line in md.splitlines() if line.startswith("| core 3b, width 32, input 4b (selected)")]
    assert noise_rows == ["| core 3b, width 32, input 4b (selected) | 990.0 +- 16.3 | 980.0 +- 16.3 | 970.0 +- 16.3 "
                          "| 960.0 +- 16.3 | 950.0 +- 16.3 | 940.0 +- 16.3 |"]


def test_the_redrawn_report_is_the_folders_report(tmp_path):
    """Every line of report.md but the one naming where it came from, from the store and from the file."""
    workdir, _, _ = noisy_selection(tmp_path)
    main(["report", "--workdir", str(workdir), "--data", str(tmp_path / "d.json")])
    assert main(["report", "--from-data", str(tmp_path / "d.json"), "--out", str(tmp_path / "again")]) == 0
    a = (workdir / "report" / "report.md").read_text().splitlines()
    b = (tmp_path / "again" / "report.md").read_text().splitlines()
    assert a[:2] + a[3:] == b[:2] + b[3:] and a[2] != b[2]
    # Drawing again replaces a previous report; a folder with anything else in it is refused.
    assert main(["report", "--from-data", str(tmp_path / "d.json"), "--out", str(tmp_path / "again")]) == 0


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ('{"trials": []}', "not a report data file"),
    ('{"format": "qsearch-report-data", "version": 99}', "written by a newer qsearch (data version 99"),
    ('{"format": "qsearch-report-data", "version": 1, "name": "x"}', "malformed report data (KeyError"),
])
def test_bad_report_data(tmp_path, content, message, capsys):
    f = tmp_path / "d.json"
    f.write_text(content)
    assert main(["report", "--from-data", str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_redraw_keeps_other_files(tmp_path, capsys):
    workdir, _, _ = noisy_selection(tmp_path)
    main(["report", "--workdir", str(workdir), "--data", str(tmp_path / "d.json")])
    capsys.readouterr()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    assert main(["report", "--from-data", str(tmp_path / "d.json"), "--out", str(tmp_path / "notes")]) == 2
    assert "holds files that are not a report's (mine.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"
    assert main(["report", "--from-data", str(tmp_path / "d.json"), "--workdir", str(workdir)]) == 2
    assert main(["report", "--workdir", str(workdir), "--out", str(tmp_path / "x")]) == 2


# ---- The figure rules, on the numbers of docs/results/reduced_budget.md --------------------------

IDP, HOPPER = "InvertedDoublePendulum-v5", "Hopper-v5"
IDP_FP32 = Stats((9359.8, 9358.3, 9356.2), (0, 1, 2))
HOPPER_FP32 = Stats((733.0, 785.9), (0, 1))
IDP_WIDTH = {16: (472.6, 2983.0, 2461.7), 32: (9353.9, 9347.6, 8865.1), 256: (9356.7, 9357.5, 9354.6)}
IDP_INPUT = {2: (542.6, 526.6, 731.6), 3: (3940.9, 5585.6, 4337.8), 4: (9349.5, 9346.3, 9349.7),
             6: (9353.6, 9352.1, 9352.7), 8: (9356.7, 9357.5, 9354.6)}
HOPPER_INPUT = {2: (1026.6, 1099.6), 6: (232.5, 699.2), 8: (3112.8, 2471.2)}
IDP_NOISE = [9358, 1350, 214, 145, 108, 99]  # FP32's means over sigma 0 .. 0.5
HOPPER_NOISE = [757, 775, 657, 584, 473, 333]


def trial(env, width, returns_by_x, x_is):
    """Trials along one axis: x_is "in" (input bits, core 2), "width" (core 2, 8-bit input) or "core"
    (core bits, 8-bit input), output 8 bits."""
    out = []
    for x, returns in returns_by_x.items():
        i, w, c = {"in": (x, width, 2), "width": (8, x, 2), "core": (8, width, x)}[x_is]
        for seed, r in enumerate(returns):
            params = {"env_id": env, "configuration": f"{env}/i{i}w{c}a{c}o8/h{w}x2", "seed": str(seed),
                      "fp32": "False", "width": str(w), "bits_in": str(i), "bits_weight": str(c), "bits_act": str(c),
                      "bits_out": "8"}
            out.append(Trial(f"{env}-{i}-{c}-{w}-{seed}", params, r))
    return out


def series(returns_by_x, label="s"):
    return figures.Series(label, tuple(returns_by_x), tuple(returns_by_x.values()))


@pytest.fixture
def drawn(monkeypatch):
    """The figures a figure function draws, kept open to read (legends, scales, panels), not saved."""
    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, title: figs.append((fig, title)) or True)
    yield figs
    for fig, _ in figs:
        plt.close(fig)


def test_a_single_point_is_no_curve_and_no_panel(tmp_path, drawn):
    assert not figures.is_curve([2]) and not figures.is_curve([2, 2]) and figures.is_curve([2, 8])
    # Hopper's stage 1 trained one core bit width: Figure 1 would be one point under a title about scopes.
    core2 = trial(HOPPER, 256, {2: HOPPER_INPUT[8]}, "core")
    assert not figures.bitwidth(core2, {HOPPER: HOPPER_FP32}, {HOPPER: 256}, tmp_path / "f1.png")
    # With a second environment that has a curve, only that one gets a panel.
    idp = trial(IDP, 256, {2: (9356.7, 9357.5, 9354.6), 3: (9358.5, 9357.9, 9357.6)}, "core")
    assert figures.bitwidth(core2 + idp, {HOPPER: HOPPER_FP32, IDP: IDP_FP32}, {HOPPER: 256, IDP: 256},
                            tmp_path / "f.png")
    (fig, _), = drawn
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [IDP]


def test_few_seeds_are_points_without_lines(tmp_path, drawn):
    assert [figures.use_points(n) for n in (1, 2, 3, 4, 5, 10)] == [True] * 4 + [False] * 2
    assert figures.input_bits(trial(HOPPER, 256, HOPPER_INPUT, "in"), {HOPPER: HOPPER_FP32}, {HOPPER: 256},
                              tmp_path / "f5.png")
    (fig, title), = drawn
    ax = fig.axes[0]
    series_lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("core")]
    assert [ln.get_linestyle() for ln in series_lines] == ["None"]  # the means are bars, not joined
    assert len(ax.collections[-1].get_offsets()) == 2  # one dot per seed at the last input bits
    assert "core 2b, width 256 (2 seeds)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "dots: seeds" in title
    ten = {b: tuple(float(r + s) for s in range(10)) for b, r in ((2, 500), (4, 900))}
    assert not figures.use_points(series(ten).n)


def test_the_fp32_band_gets_a_zoom_where_it_is_a_line(tmp_path, drawn):
    # IDP: FP32 9,358.1 +- 1.5 on a 500-9,400 axis is 0.03% of it; Hopper: 759 +- 26 on 230-3,100 is 2%.
    assert figures.needs_zoom([series(IDP_WIDTH)], IDP_FP32)
    assert not figures.needs_zoom([series(HOPPER_INPUT)], HOPPER_FP32)
    assert figures.band_visible((0, 1), (0, 100)) and not figures.band_visible((0, 0.9), (0, 100))
    # The zoom holds the means within ten stds (input 4, 6, 8 bits), not 2 and 3 bits, and the band is a
    # tenth of it or more.
    lo, hi = figures.zoom_ylim(IDP_FP32, series(IDP_INPUT).means)
    deltas = series(IDP_INPUT).means - IDP_FP32.mean
    assert [lo <= d <= hi for d in deltas] == [False, False, True, True, True]
    assert 2 * IDP_FP32.std / (hi - lo) >= 0.1
    # FP32 with no spread (every seed at the ceiling) still gets a zoom with a scale.
    lo, hi = figures.zoom_ylim(Stats((1000.0, 1000.0)), [999.5, 400.0])
    assert lo < -0.5 < hi and lo > -600

    assert figures.width(trial(IDP, 256, IDP_WIDTH, "width"), {IDP: IDP_FP32}, {IDP: 256}, tmp_path / "f4.png")
    (fig, _), = drawn
    main_ax, zoom = fig.axes
    assert zoom.get_ylabel() == "return - FP32 mean"
    lo, hi = zoom.get_ylim()
    assert lo <= -IDP_FP32.std and IDP_FP32.std <= hi
    assert any(ln.get_marker() == "v" for ln in zoom.get_lines())  # width 16 and 32 lie below the zoom


def test_noise_curves_keep_every_sigma_readable():
    assert figures.noise_axis(IDP_NOISE) == ("log", None)
    assert figures.noise_axis(HOPPER_NOISE) == ("linear", None)
    assert figures.noise_axis([-150, -400, -1200]) == ("linear", None)
    assert figures.noise_axis([-150, -4000, -12000]) == ("symlog", 100.0)
    assert figures.noise_axis([2500, 30, -5]) == ("symlog", 1.0)


def test_noise_legends_name_configurations_and_the_axis_follows_the_rule(tmp_path, drawn):
    sig = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]

    def curve(means):
        return {"sigma": sig, "per_model": [[m * f for m in means] for f in (0.97, 1.0, 1.03)]}
    data = {IDP: {"FP32, width 256": curve(IDP_NOISE),
                  "core 2b, width 256, input 8b (core and width stages' pick)": curve([9058, 1257, 215, 159, 110, 100]),
                  "core 2b, width 256, input 4b (selected)": curve([9052, 876, 227, 132, 117, 82])}}
    assert figures.noise(data, tmp_path / "f3.png")
    (fig, _), = drawn
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{label} (3 seeds)" for label in data[IDP]]


def test_dodge_keeps_point_series_apart_around_the_value():
    a, b = figures.dodge([2, 4, 8], 0, 2), figures.dodge([2, 4, 8], 1, 2)
    assert (a < [2, 4, 8]).all() and (b > [2, 4, 8]).all() and np.allclose((a + b) / 2, [2, 4, 8])
    a, b = figures.dodge([16, 32, 256], 0, 2, log2=True), figures.dodge([16, 32, 256], 1, 2, log2=True)
    assert np.allclose(np.sqrt(a * b), [16, 32, 256])

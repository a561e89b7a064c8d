"""`qsearch report` on synthetic results in real MLflow stores: every figure written and non-empty,
the Markdown summary, the MLflow artifacts, and bad input (one line, exit 2)."""
import io
import json
import os

import pytest

from qsearch.cli import main
from qsearch.search import space as spaces
from qsearch import tracking
from qsearch import trial_record as record
from qsearch.select.report import FIGURES
from qsearch.select.selection import select
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


def test_selection_report_draws_every_figure_and_logs_it(tmp_path, capsys):
    path, workdir, uri = filled_selection(tmp_path)
    outcome = select(path, workdir=workdir, noise=False, stream=io.StringIO())
    # noise.json as `select` writes it (its Ray evaluation is covered in test_demo.py).
    sig = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    (workdir / "noise.json").write_text(json.dumps({"episodes": 10, "envs": {ENV: {
        kind: {"sigma": sig, "seeds": [0, 1, 2], "per_model": [], "mean": [m - k * 100 * s for s in sig],
               "std": [20 + 50 * s for s in sig]} for kind, m, k in (("selected", 990, 1), ("fp32", 1000, 3))}}}))

    assert main(["report", "--workdir", str(workdir)]) == 0
    assert "fig3_noise.png: drawn" in capsys.readouterr().out
    report = workdir / "report"
    for name, _, _ in FIGURES:
        assert (report / name).stat().st_size > 5000, name
    md = (report / "report.md").read_text()
    assert "Not drawn" not in md
    assert outcome.selected[ENV].configuration in md and "| 0.5 | 850.0 +- 45.0 | 940.0 +- 45.0 |" in md
    run_id = json.loads((workdir / "select.json").read_text())["selection_run_id"]
    logged = {os.path.basename(f.path) for f in tracking.client(uri).list_artifacts(run_id, record.REPORT_ARTIFACT)}
    assert logged == {"report.md"} | {name for name, _, _ in FIGURES}


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

"""`qsearch hw` end to end: a bundle from a real MLflow run, swept on a real local Ray with real FINN,
the report written and logged back to the run; refusals as one line and exit code 2."""
import csv

import pytest

from commands import refused, run


def test_hw_on_a_run_logs_the_report(capsys, tmp_path, bundle_dir, monkeypatch):
    from qsearch import bundle as bundles
    from qsearch import tracking
    from qsearch import trial_record as record

    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    uri = tracking.default_uri(tmp_path)
    exp = tracking.experiment(uri, "e", tmp_path)
    client, run_id = record.start_trial(uri, exp, record.start_search(uri, exp, "e", {}), "t", "a trial",
                                        record.trial_params(bundles.read(bundle_dir).config, "a", 1))
    record.finish_trial(client, run_id, {record.FINAL_RETURN: 1.0}, 1, str(bundle_dir))
    record.end_trial(client, run_id)
    capsys.readouterr()
    out_dir = tmp_path / "report"
    code, out, err = run(capsys, "hw", run_id, "--tracking-uri", uri, "--targets", "1e3", "1e6", "1e8",
                         "--resource", "finn", "--out", out_dir)
    assert code == 0, err
    assert "[3/3]" in err and "LUT" in out and "FINN's estimates" in out and "no padding" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["hw.csv", "hw.json", "hw.md", "hw.png"]
    rows = list(csv.DictReader((out_dir / "hw.csv").open()))
    assert [float(r["target_fps"]) for r in rows] == [1e3, 1e6, 1e8]
    assert [r["fits"] for r in rows] == ["True", "True", "False"]  # 1e8 actions/s needs more LUT than the part has
    assert [r["chosen"] for r in rows] == ["False", "True", "False"]
    assert float(rows[1]["actions_per_s"]) >= 1e6 and float(rows[1]["lut"]) > float(rows[0]["lut"])
    assert float(rows[1]["energy_j_fit"]) == pytest.approx(float(rows[1]["power_w_fit"]) / float(rows[1]["actions_per_s"]))
    assert all(r["power_source"].startswith("fit to the paper's Table 3") for r in rows)
    # every power and energy figure is marked as the fit, in the table itself and in a note
    assert "power W (fit)" in out and "J/action (fit)" in out and "not counts or measurements" in out
    logged = client.get_run(run_id).data.metrics
    assert logged["hw_lut"] == pytest.approx(float(rows[1]["lut"])) and logged["hw_target_fps"] == 1e6
    assert logged["hw_power_w_fit"] == pytest.approx(float(rows[1]["power_w_fit"]))
    assert "hw/hw.csv" in [f.path for f in client.list_artifacts(run_id, "hw")]
    # a search folder names its selected runs' bundles, each with the run to log to
    from qsearch.hw.command import sources

    record.set_selected(uri, [], [run_id])
    [s] = sources(str(tmp_path))
    assert s.run_id == run_id and s.tracking_uri.endswith("mlflow.db") and s.policy.actor.obs_dim == 11


def one_line_error(capsys, out_dir, *argv):
    return refused(capsys, out_dir, "hw", *argv)


def test_refusals(capsys, tmp_path, bundle_dir, monkeypatch):
    out = tmp_path / "out"
    assert "unknown FPGA part 'xc9zz-1'" in one_line_error(capsys, out, bundle_dir, "--part", "xc9zz-1")
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    assert "needs Vivado" in one_line_error(capsys, out, bundle_dir, "--synth")
    assert "--paper" in one_line_error(capsys, out)
    assert "--pad must be a positive integer" in one_line_error(capsys, out, bundle_dir, "--pad", "0")
    assert "targets must be positive" in one_line_error(capsys, out, bundle_dir, "--targets", "0")
    assert "--all-trials takes a search's or a selection's folder" in one_line_error(capsys, out, bundle_dir,
                                                                                     "--all-trials")


def test_synth_skips_a_policy_that_fits_nowhere(capsys, tmp_path, bundle_dir, monkeypatch):
    """--synth synthesizes the chosen designs only: the paper's reference at 1e6 actions/s fits at no
    target, so it is a row that says so, is not synthesized, and the command exits 1. (Vivado is faked:
    there is none here; its results replace FINN's estimates of the chosen row.)"""
    from qsearch.hw import vivado

    built = []
    monkeypatch.setattr(vivado, "vivado_home", lambda: tmp_path)
    monkeypatch.setattr(vivado, "synthesize", lambda dirs: built.extend(dirs) or [
        {"LUT": 1500, "FF": 900, "DSP": 0, "BRAM_18K": 2, "BRAM_36K": 1}] * len(dirs))
    out_dir = tmp_path / "synth"
    code, out, err = run(capsys, "hw", bundle_dir, "--reference", "--targets", "1e6", "--synth", "--out", out_dir)
    assert code == 1 and "fits the device at no target: Hopper-v5 paper reference" in err, err
    assert [d.name for d in built] == [next(out_dir.glob("builds/*")).name] and len(list(out_dir.glob("builds/*"))) == 1
    mine, ref = list(csv.DictReader((out_dir / "hw.csv").open()))
    assert mine["source"] == "post-synthesis (Vivado OOC)" and float(mine["bram18"]) == 4 and mine["chosen"] == "True"
    assert mine["power_source"].startswith("fit to the paper's Table 3")  # the fit, on Vivado's counts
    assert ref["source"] == "FINN estimate" and (ref["fits"], ref["chosen"]) == ("False", "False")

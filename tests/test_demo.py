"""The demo pipeline end to end on a small real selection (`qsearch demo`, as `make demo` runs it):
three stages trained on a local Ray, tracked in a SQLite MLflow store, noise robustness as Ray
tasks, the FINN sweep of the selected policy and the paper's reference, QONNX and C exports, then
the report; a second `select` trains nothing; the selected bundles are found by tag.

Tiny budgets (300 steps, 2 seeds): the returns mean nothing, so the lenient Welch rule at
alpha=0.001 lets every stage pick and the whole path runs.
"""
import json
import re

import yaml

from qsearch import bundle as bundles
from qsearch.cli import main
from qsearch.locate import selected_bundles
from qsearch.select.report import FIGURES

ENV = "InvertedPendulum-v5"


def test_demo_pipeline_and_reuse(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    space = tmp_path / "tiny_selection.yaml"
    space.write_text(yaml.safe_dump({
        "name": "tiny_selection", "envs": [ENV], "algo": "sac", "steps": 300, "seeds": [0, 1],
        "eval_every": 150, "eval_episodes": 1, "final_episodes": 2, "policy": {"width": 16, "depth": 2},
        "algo_config": {"learning_starts": 100, "batch_size": 32, "critic_width": 32},
        "selection": {"core_bits": [2], "widths": [8], "input_bits": [4], "rule": "welch", "alpha": 0.001,
                      "noise_sigmas": [0.0, 0.25, 0.5], "noise_episodes": 2}}))
    workdir = tmp_path / "sel"
    assert main(["demo", str(space), "--workdir", str(workdir), "--targets", "1e3", "1e6"]) == 0
    out = capsys.readouterr().out
    for stage, trained in (("core", 4), ("width", 2), ("input", 2)):  # width 16 and 8-bit input reused
        assert f"stage {stage}: " in out and f"{trained} to train" in out.split(f"stage {stage}: ")[1].splitlines()[0]
    outcome = json.loads((workdir / "selection.json").read_text())
    chosen = outcome["selected"][ENV]
    assert chosen["core_bits"] == 2 and chosen["width"] in (8, 16) and chosen["input_bits"] in (4, 8)
    assert "welch" in out and "environment" in out

    noise = json.loads((workdir / "noise.json").read_text())["envs"][ENV]
    assert set(noise) == {"selected", "fp32"}
    assert noise["selected"]["sigma"] == [0.0, 0.25, 0.5] and len(noise["fp32"]["per_model"]) == 2

    paths = selected_bundles(workdir)
    assert len(paths) == 2
    b = bundles.read(paths[0])
    assert (b.config.policy.quant.bits_weight, b.config.policy.width) == (2, chosen["width"])

    hw = (workdir / "hw" / "hw.md").read_text()
    assert hw.count("reference") >= 2 and "| yes |" in hw  # the selected policy and the paper's design
    assert (workdir / "hw" / "hw.png").stat().st_size > 1000
    assert (workdir / "export" / "qonnx" / "policy.onnx").stat().st_size > 0
    assert "qpolicy_model.h" in {p.name for p in (workdir / "export" / "c").iterdir()}
    assert f"qsearch ui --workdir {workdir}" in out and "demo finished" in out
    # the exported run in MLflow's registry, named after the stage search that trained it
    assert re.search(rf"registered model tiny_selection-{ENV} version 1", out)

    md = (workdir / "report" / "report.md").read_text()
    # core bits 2 matched first, so one bit width was trained: the bit-width figure would be a single
    # point and is not drawn (the report says so); the others are
    assert not (workdir / "report" / "fig1_bitwidth.png").exists()
    assert "Not drawn: needs two or more bit widths of one scope at the FP32 width." in md
    for name, _, _ in FIGURES[1:5]:  # (the sixth, return against hardware cost, needs open-flow designs)
        assert (workdir / "report" / name).stat().st_size > 1000, name
    assert "| configuration | sigma 0 |" in md and chosen["configuration"] in md
    data = json.loads((workdir / "report_data.json").read_text())  # publishable: trials, curves, hardware rows
    assert chosen["configuration"] in {t["params"]["configuration"] for t in data["trials"]}
    assert all(t["curve"] for t in data["trials"]) and any("reference" in r["policy"] for r in data["hw"]["rows"])

    assert main(["select", str(space), "--workdir", str(workdir), "--no-noise"]) == 0  # nothing trained twice
    out = capsys.readouterr().out
    assert out.count(" 0 to train") == 3
    assert not (workdir / "stages" / "core-2").exists()

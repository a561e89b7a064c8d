"""A small real selection end to end: three stages trained on a local Ray cluster (2 CPUs, started
here with `ray start --head`), tracked in a SQLite MLflow store, noise robustness as Ray tasks,
then the report; a second `select` trains nothing; the selected bundles are found by tag.

Tiny budgets (300 steps, 2 seeds): the returns mean nothing, so the lenient Welch rule at
alpha=0.001 lets every stage pick and the whole path runs.
"""
import json
import subprocess
import time

import pytest
import yaml

from qsearch import bundle as bundles
from qsearch.cli import main
from qsearch.locate import selected_bundles
from qsearch.select.report import FIGURES
from test_search import BIN, free_port, start, stop

ENV = "InvertedPendulum-v5"


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("ray") / "ray.log", "w")
    proc = start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
                  "--include-dashboard", "false", "--disable-usage-stats"], log)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while subprocess.run([str(BIN / "ray"), "status", "--address", address], capture_output=True).returncode:
            assert proc.poll() is None and time.time() < deadline, "ray did not start"
            time.sleep(1)
        yield address
    finally:
        stop(proc)


def test_real_selection_report_and_reuse(tmp_path, ray_address, capsys, monkeypatch):
    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    space = tmp_path / "tiny_selection.yaml"
    space.write_text(yaml.safe_dump({
        "name": "tiny_selection", "envs": [ENV], "algo": "sac", "steps": 300, "seeds": [0, 1],
        "eval_every": 150, "eval_episodes": 1, "final_episodes": 2, "policy": {"width": 16, "depth": 2},
        "algo_config": {"learning_starts": 100, "batch_size": 32, "critic_width": 32},
        "selection": {"core_bits": [2], "widths": [8], "input_bits": [4], "rule": "welch", "alpha": 0.001,
                      "noise_sigmas": [0.0, 0.25, 0.5], "noise_episodes": 2}}))
    workdir = tmp_path / "sel"
    args = ["select", str(space), "--workdir", str(workdir), "--address", ray_address]

    assert main(args) == 0
    out = capsys.readouterr().out
    for stage, trained in (("core", 4), ("width", 2), ("input", 2)):  # width 16 and 8-bit input reused
        assert f"stage {stage}: " in out and f"{trained} to train" in out.split(f"stage {stage}: ")[1].splitlines()[0]
    outcome = json.loads((workdir / "selection.json").read_text())
    chosen = outcome["selected"][ENV]
    assert chosen["core_bits"] == 2 and chosen["width"] in (8, 16) and chosen["input_bits"] in (4, 8)
    assert "welch" in out and "environment" in out and ENV in out.splitlines()[-1]

    noise = json.loads((workdir / "noise.json").read_text())["envs"][ENV]
    assert set(noise) == {"selected", "fp32"}
    assert noise["selected"]["sigma"] == [0.0, 0.25, 0.5] and len(noise["fp32"]["per_model"]) == 2

    paths = selected_bundles(workdir)
    assert len(paths) == 2
    b = bundles.read(paths[0])
    assert (b.config.policy.quant.bits_weight, b.config.policy.width) == (2, chosen["width"])

    assert main(["report", "--workdir", str(workdir)]) == 0
    for name, _, _ in FIGURES:
        assert (workdir / "report" / name).stat().st_size > 1000, name
    md = (workdir / "report" / "report.md").read_text()
    assert "Not drawn" not in md and "| sigma |" in md and chosen["configuration"] in md

    assert main(args + ["--no-noise"]) == 0  # everything is in the store: nothing trained twice
    out = capsys.readouterr().out
    assert out.count(" 0 to train") == 3
    assert not (workdir / "stages" / "core-2").exists()

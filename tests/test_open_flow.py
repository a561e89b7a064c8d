"""`qsearch hw --flow open|both`: the open-synthesis flow (qsearch's RTL, verilator, yosys, all real) swept
on a real local Ray beside FINN's estimates; refusals as one line and exit code 2, nothing written.

The policy is tiny (3 -> 4 -> 2, the paper's Hopper bits), so each design takes seconds in the tools."""
import csv
import json

import pytest

from commands import refused, run
from qsearch.config import QuantBits
from qsearch.errors import QsearchError
from qsearch.hw import flows
from qsearch.hw.config import HwConfig
from qsearch.hw.device import Device
from qsearch.hw.rtl import arch as arches
from qsearch.hw.rtl.yosys import check_device
from qsearch.hw.sweep import integer_models
from qsearch.hw.policies import HwPolicy

SOURCE = "yosys (before place-and-route)"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from policies import warmed_actor, write_bundle

    actor = warmed_actor(QuantBits(6, 2, 2, 8), obs_dim=3, act_dim=2, width=4, depth=1)
    return write_bundle(tmp_path_factory.mktemp("tiny") / "bundle", actor)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's sweeps (each `qsearch hw` joins it instead of starting its own);
    its workers keep the designs they synthesized, so a design two sweeps share may be made once."""
    from qsearch import ray_session

    with ray_session.session():
        yield


def rows_of(out_dir):
    return list(csv.DictReader((out_dir / "hw.csv").open()))


def test_open_flow_end_to_end(capsys, tmp_path, tiny_bundle, local_ray):
    from qsearch import bundle as bundles

    out_dir = tmp_path / "open"
    code, out, err = run(capsys, "hw", tiny_bundle, "--flow", "open", "--targets", "1e3", "1e8", "--out", out_dir)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["hw.csv", "hw.json", "hw.md", "hw.png"]
    rows = rows_of(out_dir)
    assert [(r["flow"], float(r["target_fps"])) for r in rows] == [("open", 1e3), ("open", 1e8)]
    assert all(r["source"] == SOURCE and r["power_w_fit"] == r["power_source"] == "" and r["fits"] == "True" for r in rows)
    model = integer_models([HwPolicy("p", bundles.read(tiny_bundle).actor)], None)["p"]
    for r, arch in zip(rows, [arches.choose(model, 1e3, 10.0), arches.PARALLEL]):
        assert r["arch"] == arch.describe()
        assert int(r["latency_cycles"]) == arches.latency(model, arch)  # exact: checked in simulation
        assert float(r["actions_per_s"]) == pytest.approx(1e8 / arches.interval(model, arch))
        assert float(r["lut"]) > 0 and float(r["ff"]) > 0 and int(r["lut_levels"]) > 0 and r["carry4"] != ""
    assert rows[0]["arch"].startswith("folded") and [r["chosen"] for r in rows] == ["False", "True"]
    data = json.loads((out_dir / "hw.json").read_text())
    assert all(r["note"].startswith("QPOLICY_TB PASS") for r in data["rows"])  # verified before it was counted
    assert all(r["netlist_check"] is None for r in data["rows"]) and data["config"]["check_netlist"] is False
    assert data["chosen"] == {"open": {next(iter(data["chosen"]["open"])): 1e8}}
    md = (out_dir / "hw.md").read_text()
    for text in (out, md):
        assert "BEFORE place-and-route" in text and "timing is NOT closed" in text and "Power is not estimated" in text
        assert "power W (fit)" in text and "n/a: the fit is not applied" in text
        assert "netlist the counts are of was NOT simulated (--check-netlist" in text
    assert "FINN" not in md.split("## Sweep")[1].split("\n- ")[0]  # no FINN rows


def test_both_flows_side_by_side(capsys, tmp_path, tiny_bundle, local_ray):
    out_dir = tmp_path / "both"
    code, out, err = run(capsys, "hw", tiny_bundle, "--flow", "both", "--targets", "1e8", "--check-netlist",
                         "--out", out_dir)
    assert code == 0, err
    rows = rows_of(out_dir)
    assert [r["flow"] for r in rows] == ["finn", "open"]
    finn, open_ = rows
    assert finn["source"] == "FINN estimate" and float(finn["power_w_fit"]) > 0 and finn["ff"] == ""
    assert open_["source"] == SOURCE and open_["arch"] == "parallel" and float(open_["ff"]) > 0
    assert [r["chosen"] for r in rows] == ["True", "True"]  # one chosen design per policy and flow
    table = out.split("\n- ")[0]
    assert "FINN estimate" in table and "yosys, before P&R" in table  # one table, both flows
    assert "FINN estimate rows" in out and "BEFORE place-and-route" in out
    # --check-netlist: the synthesized netlist was simulated against the integer engine before it was counted
    assert open_["netlist_check"].startswith("QPOLICY_TB PASS") and finn["netlist_check"] == ""
    assert "The synthesized netlist was simulated too (--check-netlist" in out


def test_a_policy_that_fits_nowhere_is_a_row_and_exit_1(capsys, tmp_path, tiny_bundle, local_ray):
    """The paper's 256-wide reference at 1e8 actions/s (fully parallel, ~4x the part's LUTs: not
    synthesized) fits at no target; the tiny policy's design is still written, and the command exits 1."""
    out_dir = tmp_path / "nowhere"
    code, out, err = run(capsys, "hw", tiny_bundle, "--reference", "--flow", "open", "--targets", "1e8", "--out", out_dir)
    assert code == 1 and err.count("qsearch: fits the device at no target: ") == 1, err
    assert "paper reference h256 in8 w4 a4 (open flow at 1e+08 actions/s, its lowest target: over in LUT" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["hw.csv", "hw.json", "hw.md", "hw.png"]
    tiny, ref = rows_of(out_dir)
    assert (tiny["fits"], tiny["chosen"], ref["fits"], ref["chosen"]) == ("True", "True", "False", "False")
    data = json.loads((out_dir / "hw.json").read_text())
    assert sorted(data["chosen"]["open"].values(), key=str) == [1e8, None]  # null: fits at no target
    chosen_table = (out_dir / "hw.md").read_text().split("## Sweep")[0]
    assert chosen_table.count("NO TARGET FITS (lowest shown: over in LUT, not synthesized") == 1
    assert "FITS THE DEVICE AT NO TARGET" in out


def test_refusals(capsys, tmp_path, tiny_bundle, rng):
    from policies import make_bundle
    from qsearch import bundle as bundles

    out = tmp_path / "out"
    fp32 = bundles.write(make_bundle(rng, quantized=False), tmp_path / "fp32")
    assert "FP32 policy" in refused(capsys, out, "hw", fp32, "--flow", "open")
    assert "unknown hardware flow 'vivado'" in refused(capsys, out, "hw", tiny_bundle, "--flow", "vivado")
    assert "unknown FPGA part" in refused(capsys, out, "hw", tiny_bundle, "--flow", "both", "--part", "xcku040-ffva1156-2-e")
    assert "--flow finn or both" in refused(capsys, out, "hw", tiny_bundle, "--flow", "open", "--synth")
    assert "--flow open or both" in refused(capsys, out, "hw", tiny_bundle, "--check-netlist")


def test_only_the_7_series_is_synthesized():
    check_device(HwConfig().device)
    ultrascale = Device("xcku040-ffva1156-2-e", 242_400, 484_800, 1_200, 1_920)  # DS890
    with pytest.raises(QsearchError, match="7-series only"):
        check_device(ultrascale)


def test_a_folding_that_does_not_divide_is_refused(tiny_bundle):
    from qsearch import bundle as bundles

    model = integer_models([HwPolicy("p", bundles.read(tiny_bundle).actor)], None)["p"]
    prepared = flows.prepare(model, HwConfig(), "open")
    bad = {"layer0": {"PE": 3, "SIMD": 1}, "layer1": {"PE": 1, "SIMD": 1}}
    with pytest.raises(QsearchError, match="layer 0: PE 3 does not divide its 4 outputs"):
        flows.estimate(prepared, HwConfig().with_folding(bad), "open")
    with pytest.raises(QsearchError, match="an FP32 policy has no integer model"):
        from qsearch.quant.actor import QuantActor
        from qsearch.config import PolicyConfig

        integer_models([HwPolicy("f", QuantActor(3, 2, PolicyConfig(width=4, quant=None)))], None)


def test_a_parallel_design_too_large_to_fit_is_not_synthesized():
    """Every non-zero weight as logic (4.9 LUT each, measured): 64-wide 2-bit layers need ~4x the part."""
    from qsearch.config import PolicyConfig
    from qsearch.hw.policies import random_actor
    from qsearch.hw.sweep import estimate_row

    actor = random_actor(PolicyConfig(width=64, depth=2, quant=QuantBits(3, 2, 2, 8)), 32, 8)
    model = integer_models([HwPolicy("wide", actor)], None)["wide"]
    row = estimate_row("wide", model, 1e8, HwConfig(targets=(1e8,)), "open")  # no tool runs: returns at once
    assert row.arch == "parallel" and not row.fits and row.over[0].startswith("LUT, not synthesized")
    assert row.lut != row.lut and row.power_w_fit is None  # NaN: no count was made

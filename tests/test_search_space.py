"""Search-space files: refused with file, key and reason before anything starts; shipped ones load."""
from pathlib import Path

import pytest
import yaml

from qsearch.cli import main
from qsearch.config import QuantBits
from qsearch.errors import QsearchError
from qsearch.search import space as spaces

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"

GOOD = {
    "name": "tiny", "envs": ["InvertedPendulum-v5"], "algo": "sac", "steps": 300, "seeds": [0, 1],
    "algo_config": {"learning_starts": 50, "batch_size": 16}, "policy": {"width": 8},
    "sweep": [{"fp32": True}, {"scope": "core", "bits": [2, 3]}],
}


def write(tmp_path, data, name="space.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def with_(**changes):
    d = {**GOOD, **changes}
    return {k: v for k, v in d.items() if v is not None}


def test_good_space(tmp_path):
    s = spaces.load(write(tmp_path, GOOD))
    assert [c.key for c in s.configurations] == [
        "InvertedPendulum-v5/fp32/h8x2", "InvertedPendulum-v5/i8w2a2o8/h8x2", "InvertedPendulum-v5/i8w3a3o8/h8x2"]
    assert s.trials == 6 and s.seeds == (0, 1)
    cfg = s.train_config(s.configurations[1], 1)
    assert cfg.policy.quant == QuantBits(bits_weight=2, bits_act=2) and cfg.seed == 1
    assert cfg.algo_config.learning_starts == 50 and cfg.algo_config.batch_size == 16
    assert cfg.algo_config.q_lr == 1e-3  # not overridden: the paper's default


def test_a_recurrent_space(tmp_path):
    s = spaces.load(write(tmp_path, with_(policy={"width": 8, "encoder": "gru", "encoder_width": 16},
                                          algo_config={"sequence_length": 12, "burn_in": 4})))
    assert [c.key for c in s.configurations][:2] == ["InvertedPendulum-v5/fp32/h8x2/gru16",
                                                     "InvertedPendulum-v5/i8w2a2o8/h8x2/gru16"]
    cfg = s.train_config(s.configurations[1], 0)
    assert (cfg.policy.encoder, cfg.policy.encoder_width, cfg.policy.width) == ("gru", 16, 8)
    assert (cfg.algo_config.sequence_length, cfg.algo_config.burn_in) == (12, 4)


def test_a_space_of_logic_circuit_sizes(tmp_path):
    lut = {"policy": "lut", "thermometer_bits": [8, 16], "luts": [[64, 64], [32]], "lut_inputs": 4, "mapping": "random"}
    s = spaces.load(write(tmp_path, with_(sweep=[{"fp32": True}, lut, {"policy": "lut", "luts": [16, 16]}])))
    assert [c.key for c in s.configurations][1:] == [
        "InvertedPendulum-v5/lut/t8/l64-64k4/random/o8", "InvertedPendulum-v5/lut/t16/l64-64k4/random/o8",
        "InvertedPendulum-v5/lut/t8/l32k4/random/o8", "InvertedPendulum-v5/lut/t16/l32k4/random/o8",
        "InvertedPendulum-v5/lut/t16/l16-16k6/learnable/o8"]  # a flat list of sizes is one value
    p = s.train_config(s.configurations[1], 0).policy
    assert (p.kind, p.thermometer_bits, p.luts, p.lut_inputs, p.mapping) == ("lut", 8, (64, 64), 4, "random")


LUT = {"policy": "lut"}


@pytest.mark.parametrize("data, key, reason", [
    (with_(sweep=[{**LUT, "width": 64}]), "sweep[0].width", "applies to mlp policies"),
    (with_(sweep=[{**LUT, "luts": [[8, 0]]}]), "sweep[0].luts", "must be a positive integer, got 0"),
    (with_(sweep=[{**LUT, "thermometer_bits": [8, 200]}]), "sweep[0].thermometer_bits", "must be at most 127"),
    (with_(sweep=[{**LUT, "mapping": "fixed"}]), "sweep[0].mapping", "must be one of learnable, random"),
    (with_(sweep=[{"thermometer_bits": 8}]), "sweep[0].thermometer_bits", "add policy: lut to the group"),
    (with_(sweep=[{"policy": "cnn"}]), "sweep[0].policy", "must be mlp or lut"),
    (with_(sweep=[LUT], algo="ppo", algo_config={}), "sweep[0].policy", "ppo trains mlp policies"),
    (with_(sweep=[LUT], policy={"encoder": "gru"}), "sweep[0].policy", "a lut policy has no encoder"),
    (with_(colour="red"), "colour", "unknown key"),
    (with_(sweep=[{"scope": "core", "bitz": 3}]), "sweep[0].bitz", "unknown key"),
    (with_(algo_config={"learning_rate": 1e-3}), "algo_config.learning_rate", "unknown key"),
    (with_(steps="many"), "steps", "must be an integer"),
    (with_(seeds=[0, "one"]), "seeds[1]", "must be an integer"),
    (with_(policy={"width": 8.5}), "policy.width", "must be an integer"),
    (with_(algo_config={"q_lr": "fast"}), "algo_config.q_lr", "must be a number"),
    (with_(algo_config={"learning_starts": -1}), "algo_config.learning_starts", "must be >= 0, got -1"),
    (with_(sweep=[{"fp32": True, "width": [8, 0]}]), "sweep[0].width[1]", "must be a positive integer, got 0"),
    (with_(sweep=[{"scope": "core", "bits": [2, 9]}]), "sweep[0].bits[1]", "must be at most 8"),
    (with_(sweep=[{"bits_in": 1}]), "sweep[0].bits_in", "must be at least 2"),
    (with_(envs=["Hopper-v99"]), "envs[0]", "unknown environment id 'Hopper-v99'"),
    (with_(envs=["CartPole-v1"]), "envs[0]", "continuous Box action space"),
    (with_(sweep=[{"scope": "middle", "bits": 3}]), "sweep[0].scope", "unknown scope"),
    (with_(sweep=[{"fp32": True, "bits": 3}]), "sweep[0].fp32", "no bit widths"),
    (with_(steps=None), "steps", "missing"),
    (with_(algo="a2c"), "algo", "unknown algorithm"),
    (with_(search={"searcher": "random"}), "search.searcher", "unknown searcher"),
    (with_(search={"objectives": ["return", "cost"]}), "search.objectives", "need searcher: optuna"),
    (with_(observe="pixels"), "observe", "must be one of all, positions, velocities, got 'pixels'"),
    (with_(observe="positions", sweep=[{"envs": ["Ant-v5"], "fp32": True}]), "observe",
     "positions is defined for the v4/v5 MuJoCo tasks InvertedPendulum, InvertedDoublePendulum, Hopper, "
     "Walker2d, HalfCheetah, not Ant-v5"),
    (with_(observe="velocities", algo="ppo", algo_config={}), "observe", "ppo observes all of a task"),
    (with_(policy={"encoder": "lstm"}), "policy.encoder", "must be one of none, gru, got 'lstm'"),
    (with_(policy={"encoder": "gru", "encoder_width": 0}), "policy.encoder_width", "must be a positive integer"),
    (with_(policy={"encoder": "gru"}, algo="ppo", algo_config={}), "policy.encoder", "ppo trains stateless policies"),
    (with_(algo_config={"burn_in": -1}), "algo_config.burn_in", "must be >= 0, got -1"),
])
def test_bad_space_names_file_key_reason(tmp_path, data, key, reason):
    p = write(tmp_path, data)
    with pytest.raises(QsearchError) as e:
        spaces.load(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: {key}: "), msg
    assert reason in msg
    assert "\n" not in msg


def test_cli_refuses_bad_space_with_exit_2(tmp_path, capsys):
    p = write(tmp_path, with_(sweep=[{"scope": "core", "bits": 12}]))
    assert main(["search", str(p), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"qsearch: error: {p}: sweep[0].bits: must be at most 8, got 12"
    assert not (tmp_path / "w").exists()  # refused before anything was started or written


def test_cli_refuses_unreadable_yaml(tmp_path, capsys):
    p = tmp_path / "broken.yaml"
    p.write_text("name: [unclosed\n")
    assert main(["search", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}: not valid YAML" in err and len(err.strip().splitlines()) == 1


def test_shipped_spaces_validate():
    from qsearch.select import spec

    files = sorted(SPACES.glob("*.yaml"))
    selections = {p.name: spec.load(p) for p in files if "selection" in yaml.safe_load(p.read_text())}
    found = {p.name: spaces.load(p) for p in files if p.name not in selections}
    assert {"paper_selection.yaml", "selection_pendulum.yaml"} <= set(selections)
    paper = selections["paper_selection.yaml"]
    assert (paper.core_bits, paper.widths, paper.input_bits) == ((2, 3, 4, 5, 6, 7, 8), (16, 32, 64, 128),
                                                                 (2, 3, 4, 5, 6, 7))
    assert paper.rule.name == "sigma" and paper.base.steps == 1_000_000 and len(paper.base.seeds) == 10
    assert {"paper_bitwidth_sensitivity.yaml", "paper_width.yaml", "paper_input_bits.yaml",
            "quickstart.yaml"} <= set(found)
    sens = found["paper_bitwidth_sensitivity.yaml"]
    envs = {"Hopper-v5", "Walker2d-v5", "Ant-v5", "HalfCheetah-v5", "Humanoid-v5"}
    assert {c.env_id for c in sens.configurations} == envs
    assert sens.steps == 1_000_000 and len(sens.seeds) == 10
    # 4 scopes x 7 bit widths, where 8 bits is the same network in every scope, plus FP32: 26 per task
    assert len(sens.configurations) == 5 * 26
    assert sum(c.policy.quant is None for c in sens.configurations) == 5
    width = found["paper_width.yaml"]
    assert {c.policy.width for c in width.configurations if c.policy.quant} == {256, 128, 64, 32, 16}
    inp = found["paper_input_bits.yaml"]
    assert {c.policy.quant.bits_in for c in inp.configurations if c.policy.quant} == set(range(2, 9))
    quick = found["quickstart.yaml"]
    assert 2 <= len(quick.seeds) <= 3 and quick.steps <= 10_000


def test_paper_studies_ship_in_the_papers_env_versions_too():
    """Each paper_*_v4.yaml is its -v5 sibling on the MuJoCo -v4 tasks the paper used, and nothing else."""
    v4_files = sorted(SPACES.glob("paper_*_v4.yaml"))
    assert {p.name for p in v4_files} == {f"{n}_v4.yaml" for n in
                                          ("paper_selection", "paper_bitwidth_sensitivity", "paper_width", "paper_input_bits")}
    for v4 in v4_files:
        old, new = (yaml.safe_load(p.read_text()) for p in (SPACES / v4.name.replace("_v4", ""), v4))
        assert new.pop("name") == old.pop("name") + "_v4"
        assert yaml.safe_dump(new) == yaml.safe_dump(old).replace("-v5", "-v4")

"""Defaults live in the configuration dataclasses, each field documented once (the docstring under it),
and the command line shows the same defaults: `qsearch train`'s flags are the configs' fields."""
import ast
import dataclasses
import inspect

import pytest

from commands import run
from qsearch import cli, config
from qsearch.cli import _parser
from qsearch.hw import config as hw_config
from qsearch.search import space
from qsearch.select import parity, spec

MODULES = (config, space, spec, parity, hw_config)


def undocumented(module) -> list[str]:
    """Fields of the module's dataclasses without a docstring right under them."""
    tree = ast.parse(inspect.getsource(module))
    missing = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        if not dataclasses.is_dataclass(getattr(module, cls.name)):
            continue
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                after = body[i + 1] if i + 1 < len(body) else None
                documented = (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                              and isinstance(after.value.value, str) and after.value.value.strip())
                if not documented:
                    missing.append(f"{module.__name__}.{cls.name}.{node.target.id}")
    return missing


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_config_field_is_documented(module):
    assert undocumented(module) == []


def test_the_command_line_shows_the_config_defaults():
    train = _parser().parse_args(["train", "--env", "Hopper-v5", "--steps", "1", "--out", "x"])
    assert (train.width, train.depth) == (config.PolicyConfig().width, config.PolicyConfig().depth)
    assert train.eval_every == config.default(config.TrainConfig, "eval_every")
    assert train.episodes == config.default(config.TrainConfig, "eval_episodes")
    assert train.algo == config.default(config.TrainConfig, "algo")


def train_parser():
    return _parser()._subparsers._group_actions[0].choices["train"]


def test_train_flags_are_the_config_fields_with_their_docstrings():
    """Every int, float, bool and str field of the training configs is a `qsearch train` flag whose help is
    the field's docstring; the algorithms' fields name each algorithm's default where they differ."""
    helps = {o: a.help for a in train_parser()._actions for o in a.option_strings}
    for cls in (config.TrainConfig, config.PolicyConfig, config.QuantBits, *config.ALGO_CONFIGS.values()):
        for f in dataclasses.fields(cls):
            if config.scalar_kind(f):
                flag = cli._flag(f.name)
                assert flag in helps and config.field_doc(cls, f.name) in helps[flag], (cls.__name__, f.name)
    assert "sac: " in helps["--learning-starts"] and "(default 5,000)" in helps["--learning-starts"]
    assert "ddpg, td3: " in helps["--learning-starts"] and "(default 25,000)" in helps["--learning-starts"]
    assert helps["--env-runners"].startswith("ppo: ")
    text = " ".join(train_parser().format_help().split())
    assert all(flag in text for flag in helps)


@dataclasses.dataclass(frozen=True)
class SACWithKnob(config.SACConfig):
    """SACConfig with a field added after the command line was written."""

    knob: int = 3
    """a setting the command line has never heard of"""


def test_a_new_config_field_is_a_flag_with_no_cli_edit(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(config.ALGO_CONFIGS, "sac", SACWithKnob)
    helps = {o: a.help for a in train_parser()._actions for o in a.option_strings}
    assert helps["--knob"] == "sac: a setting the command line has never heard of (default 3)"
    a = _parser().parse_args(["train", "--env", "Hopper-v5", "--steps", "10", "--out", "x", "--knob", "5"])
    assert cli._train_config(a).algo_config.knob == 5
    # and its bound is the config's: positive, as every integer field's unless config.INT_BOUNDS says otherwise
    code, _, err = run(capsys, "train", "--env", "Hopper-v5", "--steps", "10", "--knob", "0", "--out", tmp_path / "b")
    assert code == 2 and err == "qsearch: error: --knob must be a positive integer, got 0\n"
    assert not (tmp_path / "b").exists()


def test_todays_train_flags_still_work():
    a = _parser().parse_args(["train", "--env", "Hopper-v5", "--algo", "td3", "--steps", "500", "--episodes", "3",
                              "--bits-in", "4", "--width", "16", "--depth", "1", "--seed", "2", "--eval-every", "100",
                              "--learning-starts", "50", "--out", "x", "--force"])
    cfg = cli._train_config(a)
    assert (cfg.env_id, cfg.algo, cfg.total_steps, cfg.eval_episodes, cfg.seed, cfg.eval_every) == \
        ("Hopper-v5", "td3", 500, 3, 2, 100)
    assert cfg.policy == config.PolicyConfig(width=16, depth=1, quant=config.QuantBits(bits_in=4))
    assert cfg.algo_config == config.TD3Config(learning_starts=50) and (a.out, a.force) == ("x", True)
    a = _parser().parse_args(["train", "--env", "Hopper-v5", "--algo", "ppo", "--steps", "500", "--env-runners", "2",
                              "--scope", "core", "--bits", "3", "--out", "x"])
    cfg = cli._train_config(a)
    assert cfg.algo_config.env_runners == 2 and cfg.policy.quant == config.QuantBits.from_scope("core", 3)
    a = _parser().parse_args(["train", "--env", "Hopper-v5", "--fp32", "--steps", "500", "--out", "x"])
    assert cli._train_config(a).policy.quant is None

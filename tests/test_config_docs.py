"""Defaults live in the configuration dataclasses, each field documented once (the docstring under it),
and the command line shows the same defaults."""
import ast
import dataclasses
import inspect

import pytest

from qsearch import config
from qsearch.cli import _parser
from qsearch.search import space
from qsearch.select import parity, spec

MODULES = (config, space, spec, parity)


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

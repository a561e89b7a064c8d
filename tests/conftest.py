import copy
import functools

import numpy as np
import pytest
import torch

from qsearch.config import PolicyConfig, QuantBits
from qsearch.quant.actor import QuantActor

# One thread per process: two threads are measured slower than one on these 2-core machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _mujoco_log(tmp_path_factory):
    """MuJoCo's warnings from tests that make environments directly go to a temporary folder, not
    into whatever folder pytest runs in."""
    from qsearch.rl.envs import log_mujoco_to

    log_mujoco_to(tmp_path_factory.mktemp("mujoco"))


def warmed_actor(bits: QuantBits, obs_dim=11, act_dim=3, width=32, depth=2, updates=305, seed=0) -> QuantActor:
    """A QAT actor trained on a toy regression past its 300-call activation-scale warm-up.

    Cached: the warm-up runs brevitas' eager forward (~10 ms a call), so each test gets a copy."""
    return copy.deepcopy(_warmed_actor(bits, obs_dim, act_dim, width, depth, updates, seed))


@functools.lru_cache(maxsize=None)
def _warmed_actor(bits, obs_dim, act_dim, width, depth, updates, seed) -> QuantActor:
    torch.manual_seed(seed)
    actor = QuantActor(obs_dim, act_dim, PolicyConfig(width=width, depth=depth, quant=bits))
    opt = torch.optim.Adam(actor.parameters(), 1e-3)
    target = torch.randn(obs_dim, act_dim)
    actor.train()
    for _ in range(updates):
        x = torch.randn(128, obs_dim) * 2
        loss = (actor(x) - torch.tanh(x @ target)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actor.eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)

import numpy as np
import pytest
import torch


# One thread per process: two threads are measured slower than one on these 2-core machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _mujoco_log(tmp_path_factory):
    """MuJoCo's warnings from tests that make environments directly go to a temporary folder, not
    into whatever folder pytest runs in."""
    from qsearch.rl.envs import log_mujoco_to

    log_mujoco_to(tmp_path_factory.mktemp("mujoco"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A bundle folder of a Hopper-shaped policy with the paper's Hopper bits (6-bit input, 2-bit core)."""
    from qsearch.config import QuantBits
    from policies import warmed_actor, write_bundle

    return write_bundle(tmp_path_factory.mktemp("b") / "bundle", warmed_actor(QuantBits(6, 2, 2, 8), width=16))

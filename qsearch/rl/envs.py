"""Gymnasium environments: checking an id, making an environment, and the action-space affine map."""
from __future__ import annotations

import difflib
import functools
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

from qsearch.errors import QsearchError


def _make(env_id: str, **kwargs) -> gym.Env:
    # The MuJoCo -v4 tasks are what the paper used (search_spaces/paper_*_v4.yaml): a user choosing
    # them does so on purpose, so gymnasium's "is out of date" warning, once per process, is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        return gym.make(env_id, **kwargs)


def check_env(env_id: str) -> None:
    """Raise QsearchError (one line) unless env_id names a registered environment with a Box action space."""
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise QsearchError(f"unknown environment id {env_id!r}{hint}")
    kind = _action_space_kind(env_id)
    if kind != "Box":
        raise QsearchError(f"{env_id} has a {kind} action space; qsearch needs a continuous Box action space")


@functools.lru_cache(maxsize=None)
def _action_space_kind(env_id: str) -> str:
    # A spec does not say what the action space is, so the environment is made once per id (cached).
    try:
        env = _make(env_id, disable_env_checker=True)
    except gym.error.Error as e:  # e.g. DependencyNotInstalled for Box2D
        raise QsearchError(f"cannot make environment {env_id!r}: {e}") from None
    try:
        space = env.action_space
        if isinstance(space, gym.spaces.Box) and not np.all(np.isfinite(space.low) & np.isfinite(space.high)):
            return "unbounded Box"
        return type(space).__name__
    finally:
        env.close()


MUJOCO_LOG = "MUJOCO_LOG.TXT"


def log_mujoco_to(folder: Path) -> None:
    """Send MuJoCo's warnings (an unstable simulation, say) to `folder`/MUJOCO_LOG.TXT for the rest of
    this process. MuJoCo's default is the current folder, wherever the user happens to stand."""
    import mujoco

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = mujoco.MjLogConfig.get()
    config.logfile = str(folder.resolve() / MUJOCO_LOG)
    config.logto_console = False  # in the file only: a deprecated model attribute is not news for every trial
    config.set()


# Partially observed tasks (Ni et al. 2022's -P and -V variants, here of the MuJoCo tasks): the indices
# of each task's observation (gymnasium's v4/v5 layout, current x position excluded as by default)
# that hold positions and velocities. InvertedDoublePendulum: x, sin and cos of both hinge angles, then
# 3 velocities, then the constraint force on the cart (neither: left out of both).
OBSERVED = {
    "InvertedPendulum": {"positions": (0, 1), "velocities": (2, 3)},
    "InvertedDoublePendulum": {"positions": (0, 1, 2, 3, 4), "velocities": (5, 6, 7)},
    "Hopper": {"positions": tuple(range(0, 5)), "velocities": tuple(range(5, 11))},
    "Walker2d": {"positions": tuple(range(0, 8)), "velocities": tuple(range(8, 17))},
    "HalfCheetah": {"positions": tuple(range(0, 8)), "velocities": tuple(range(8, 17))},
}


def observed(env_id: str, observe: str) -> tuple[int, ...] | None:
    """The observation indices a policy sees with `observe` (None: all of them); a task without an
    index map is refused in one line."""
    if observe == "all":
        return None
    task, _, version = env_id.rpartition("-")
    if task not in OBSERVED or version not in ("v4", "v5"):
        raise QsearchError(f"observe: {observe} is defined for the v4/v5 MuJoCo tasks "
                           f"{', '.join(OBSERVED)}, not {env_id}")
    return OBSERVED[task][observe]


class Observe(gym.ObservationWrapper):
    """Only the observation's `indices`: a partially observed version of the task."""

    def __init__(self, env: gym.Env, indices: tuple[int, ...]):
        super().__init__(env)
        self.indices = np.array(indices)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(space.low[self.indices], space.high[self.indices], dtype=space.dtype)

    def observation(self, obs):
        return obs[self.indices]


def make_env(env_id: str, seed: int, observe: str = "all") -> gym.Env:
    """The environment, action space seeded, with no observation wrapper (normalization is ours) but
    the partial observation `observe` asks for.

    The caller seeds the dynamics with its first env.reset(seed=seed)."""
    check_env(env_id)
    indices = observed(env_id, observe)
    env = _make(env_id)
    if indices is not None:
        env = Observe(env, indices)
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    return env


def action_scale(space: gym.spaces.Box) -> np.ndarray:
    """Half the range: actions in [-1, 1] map to [low, high] as a * scale + bias (as in CleanRL)."""
    return ((space.high - space.low) / 2.0).astype(np.float32)


def action_bias(space: gym.spaces.Box) -> np.ndarray:
    return ((space.high + space.low) / 2.0).astype(np.float32)

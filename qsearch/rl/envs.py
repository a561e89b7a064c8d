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


def make_env(env_id: str, seed: int) -> gym.Env:
    """The plain environment (no observation wrappers: normalization is ours), action space seeded.

    The caller seeds the dynamics with its first env.reset(seed=seed)."""
    check_env(env_id)
    env = _make(env_id)
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    return env


def action_scale(space: gym.spaces.Box) -> np.ndarray:
    """Half the range: actions in [-1, 1] map to [low, high] as a * scale + bias (as in CleanRL)."""
    return ((space.high - space.low) / 2.0).astype(np.float32)


def action_bias(space: gym.spaces.Box) -> np.ndarray:
    return ((space.high + space.low) / 2.0).astype(np.float32)

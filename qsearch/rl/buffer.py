"""A preallocated NumPy replay buffer holding RAW observations.

Observations are normalized when a batch is sampled, with the statistics of that moment: the
running mean and std drift during training, and transitions stored with old statistics would
otherwise be fed to the networks on a different scale than fresh ones.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from qsearch.obs_norm import ObsNorm


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, obs_dim), normalized
    next_obs: torch.Tensor  # (B, obs_dim), normalized
    actions: torch.Tensor  # (B, act_dim), in the environment's action range
    rewards: torch.Tensor  # (B,)
    terminations: torch.Tensor  # (B,), 1.0 where the episode ended in a terminal state (not a time limit)


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seed: int):
        # np.zeros maps pages lazily, so a 1M-transition buffer only uses the memory it fills.
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminations = np.zeros(capacity, np.float32)
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs, next_obs, action, reward: float, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminations[i] = terminated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, norm: ObsNorm) -> Batch:
        idx = self.rng.integers(0, self.size, batch_size)
        return Batch(
            torch.from_numpy((self.obs[idx] - norm.mean) / norm.std),
            torch.from_numpy((self.next_obs[idx] - norm.mean) / norm.std),
            torch.from_numpy(self.actions[idx]),
            torch.from_numpy(self.rewards[idx]),
            torch.from_numpy(self.terminations[idx]),
        )

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able state, the filled part of the arrays) for a checkpoint."""
        n = self.size
        arrays = {"rb_obs": self.obs[:n], "rb_next_obs": self.next_obs[:n], "rb_actions": self.actions[:n],
                  "rb_rewards": self.rewards[:n], "rb_terminations": self.terminations[:n]}
        return {"pos": self.pos, "size": n, "rng": self.rng.bit_generator.state}, arrays

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        n = self.size = state["size"]
        self.pos = state["pos"]
        self.rng.bit_generator.state = state["rng"]
        for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
            getattr(self, name)[:n] = arrays[f"rb_{name}"]

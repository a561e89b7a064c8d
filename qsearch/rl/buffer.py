"""A preallocated NumPy replay buffer holding RAW observations.

Observations are normalized when a batch is sampled, with the statistics of that moment: the
running mean and std drift during training, and transitions stored with old statistics would
otherwise be fed to the networks on a different scale than fresh ones.

For a recurrent policy the buffer also knows each transition's episode and its place in it, and
samples windows of consecutive steps of one episode (`sample_sequences`). The actor's hidden state is
handled as R2D2 does (Kapturowski et al. 2019, stored state with burn-in): each transition keeps the
state the acting actor carried into it, a window starts `burn_in` steps before its first trained step
(or at its episode's start, if that is nearer) from the stored state there, the networks run over the
burn-in to bring that stale state up to date, and only the steps from the first trained one on enter
the losses. A window at its episode's start starts from the reset, zero, and computes exactly what
the deployed policy computes. Stored states keep the actor trained on states that carry a whole
episode's history, as the deployed one does, where windows from zero would train it only on a few
dozen steps of history. The critics' own GRU starts
from zero at every window: the critics are not deployed, and see their history the same way always.
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


class Sequences(NamedTuple):
    """n windows of T steps each (T = burn_in + length), flattened where the losses see them."""
    obs: torch.Tensor  # (n, T + 1, obs_dim), normalized: the window's observations, then the one after its last step
    actions: torch.Tensor  # (n * T, act_dim)
    rewards: torch.Tensor  # (n * T,)
    terminations: torch.Tensor  # (n * T,)
    mask: torch.Tensor  # (n * T,), 1.0 for a trained step: in the window's episode, from its first trained step on
    state: torch.Tensor  # (n, H): the actor's stored state at each window's start


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seed: int, state_dim: int = 0):
        """state_dim: the width of a recurrent actor's hidden state, kept per transition (0: none)."""
        # np.zeros maps pages lazily, so a 1M-transition buffer only uses the memory it fills.
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminations = np.zeros(capacity, np.float32)
        self.episode = np.zeros(capacity, np.int64)  # which episode (counted from 0) each transition is of
        self.episode_pos = np.zeros(capacity, np.int64)  # its step in that episode
        self.states = np.zeros((capacity, state_dim), np.float32)  # the actor's state carried into the step
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.added, self.next_episode, self.next_pos = 0, 0, 0  # transitions ever added; where the next one goes
        self.rng = np.random.default_rng(seed)

    def add(self, obs, next_obs, action, reward: float, terminated: bool, done: bool = False, state=None) -> None:
        """done: the episode ended here (terminated or truncated). state: the recurrent actor's state
        carried into this step (None: zero, as before the actor acts)."""
        i = self.pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminations[i] = terminated
        self.episode[i], self.episode_pos[i] = self.next_episode, self.next_pos
        self.states[i] = 0 if state is None else state
        self.next_episode, self.next_pos = (self.next_episode + 1, 0) if done else (self.next_episode, self.next_pos + 1)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_size: int, norm: ObsNorm) -> Batch:
        idx = self.rng.integers(0, self.size, batch_size)
        return Batch(
            torch.from_numpy((self.obs[idx] - norm.mean) / norm.std),
            torch.from_numpy((self.next_obs[idx] - norm.mean) / norm.std),
            torch.from_numpy(self.actions[idx]),
            torch.from_numpy(self.rewards[idx]),
            torch.from_numpy(self.terminations[idx]),
        )

    def sample_sequences(self, n: int, length: int, burn_in: int, norm: ObsNorm) -> Sequences:
        """n windows, each with `length` trained steps after up to `burn_in` steps of burn-in (see the
        module's docstring). Each transition is equally likely to be a window's first trained step."""
        oldest = self.added - self.size  # transitions are numbered from 0 as added; number g is at g % capacity
        first = self.rng.integers(oldest, self.added, n)
        start = np.maximum(first - np.minimum(burn_in, self.episode_pos[first % self.capacity]), oldest)
        steps = start[:, None] + np.arange(burn_in + length)  # (n, T)
        idx = steps % self.capacity
        mask = (steps < self.added) & (self.episode[idx] == self.episode[first % self.capacity][:, None]) & (steps >= first[:, None])
        # after the window's last step in its episode, the observation it led to; later columns are not trained
        last = np.where(mask, steps, -1).max(1)
        obs = np.concatenate([self.obs[idx], np.zeros_like(self.obs[idx[:, :1]])], 1)
        obs[np.arange(n), last - start + 1] = self.next_obs[last % self.capacity]
        return Sequences(
            torch.from_numpy((obs - norm.mean) / norm.std),
            torch.from_numpy(self.actions[idx].reshape(-1, self.actions.shape[1])),
            torch.from_numpy(self.rewards[idx].ravel()),
            torch.from_numpy(self.terminations[idx].ravel()),
            torch.from_numpy(mask.ravel().astype(np.float32)),
            torch.from_numpy(self.states[start % self.capacity]),
        )

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able state, the filled part of the arrays) for a checkpoint."""
        n = self.size
        arrays = {"rb_obs": self.obs[:n], "rb_next_obs": self.next_obs[:n], "rb_actions": self.actions[:n],
                  "rb_rewards": self.rewards[:n], "rb_terminations": self.terminations[:n],
                  "rb_episode": self.episode[:n], "rb_episode_pos": self.episode_pos[:n], "rb_states": self.states[:n]}
        return {"pos": self.pos, "size": n, "rng": self.rng.bit_generator.state, "added": self.added,
                "next_episode": self.next_episode, "next_pos": self.next_pos}, arrays

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        n = self.size = state["size"]
        self.pos = state["pos"]
        self.rng.bit_generator.state = state["rng"]
        # checkpoints written before recurrent policies lack the episode records, which only they read
        self.added = state.get("added", n)
        self.next_episode, self.next_pos = state.get("next_episode", 0), state.get("next_pos", 0)
        for name in ("obs", "next_obs", "actions", "rewards", "terminations", "episode", "episode_pos", "states"):
            if f"rb_{name}" in arrays:
                getattr(self, name)[:n] = arrays[f"rb_{name}"]

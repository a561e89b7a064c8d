"""What the CleanRL-style reference loops (cleanrl_{sac,td3,ddpg}_reference.py) share, and nothing else:
the environment set-up, a NumPy ring buffer (in place of stable-baselines3's, no extra dependency) and
the evaluation schedule with its clock.

The evaluation is qsearch's own protocol (qsearch.rl.evaluate.evaluate, called by qsearch's Monitor):
deterministic actions tanh(mean) * scale + bias, `episodes` undiscounted episodes seeded
EVAL_SEED_OFFSET + seed + i, at every `eval_every` steps and at the end. The references do not normalize
observations (CleanRL does not), so their evaluation uses the identity normalization.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

from qsearch.obs_norm import ObsNorm
from qsearch.rl.common import EVAL_SEED_OFFSET
from qsearch.rl.evaluate import evaluate


def make_env(env_id: str, seed: int) -> gym.Env:
    """CleanRL's make_env without the wrappers; the caller resets it with seed=seed."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    return env


class ReplayBuffer:
    """Preallocated ring of transitions; uniform sampling with NumPy's global generator, as SB3's."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, np.float32)
        self.capacity, self.pos, self.size = capacity, 0, 0

    def add(self, obs, next_obs, action, reward, terminated) -> None:
        i = self.pos
        self.obs[i], self.next_obs[i], self.actions[i] = obs, next_obs, action
        self.rewards[i], self.dones[i] = reward, terminated
        self.pos, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, batch_size: int):
        idx = np.random.randint(0, self.size, batch_size)
        return (torch.from_numpy(self.obs[idx]), torch.from_numpy(self.next_obs[idx]),
                torch.from_numpy(self.actions[idx]), torch.from_numpy(self.rewards[idx]),
                torch.from_numpy(self.dones[idx]))


class Evaluator:
    """Evaluations at qsearch's points (every eval_every steps and at the end) and the learning clock:
    wall and CPU seconds of the steps after learning_starts, evaluation time excluded.

    deterministic(obs batch) -> pre-scaling actions in [-1, 1] (tanh of the mean)."""

    def __init__(self, env_id: str, obs_dim: int, seed: int, total_steps: int, learning_starts: int,
                 eval_every: int | None, episodes: int, deterministic, progress=None):
        self.norm = ObsNorm.identity(obs_dim)
        self.env_id, self.seed, self.total, self.starts = env_id, seed, total_steps, learning_starts
        self.every, self.episodes, self.deterministic, self.progress = eval_every, episodes, deterministic, progress
        self.curve: list[dict] = []
        self.learn_wall = self.learn_cpu = 0.0
        self._mark = None

    def tick(self, step: int) -> None:
        """Call after every environment step; step = steps done."""
        due = self.every is not None and (step % self.every == 0 or step == self.total)
        if due:
            self._pause(step)
            r = evaluate(self._policy, self.env_id, self.norm, self.episodes, EVAL_SEED_OFFSET + self.seed)
            self.curve.append({"step": step, "eval_return_mean": r.mean, "eval_return_std": r.std})
            if self.progress is not None:
                self.progress(step, r.mean, self.steps_per_s(step))
        if step == self.starts or (due and self.starts < step < self.total):
            self._mark = (time.perf_counter(), time.process_time())

    def _policy(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.deterministic(torch.from_numpy(x)).numpy()

    def _pause(self, step: int) -> None:
        if self._mark is not None and step > self.starts:
            self.learn_wall += time.perf_counter() - self._mark[0]
            self.learn_cpu += time.process_time() - self._mark[1]
            self._mark = None

    def finish(self) -> None:
        self._pause(self.total)

    def steps_per_s(self, step: int) -> float | None:
        return (step - self.starts) / self.learn_wall if step > self.starts and self.learn_wall > 0 else None

    def result(self) -> dict:
        n = self.total - self.starts
        return {"curve": self.curve, "learning_steps": n, "learn_wall_s": self.learn_wall, "learn_cpu_s": self.learn_cpu}

"""The environment side every learner shares (CleanRL's env set-up, rb.add and episode resets): the
environment and its action range, the running observation normalization and the replay buffer."""
from __future__ import annotations

import torch

from qsearch.config import TrainConfig
from qsearch.rl.buffer import Batch, ReplayBuffer
from qsearch.rl.envs import action_bias, action_scale, make_env
from qsearch.rl.normalize import RunningNorm


class Experience:
    """Steps the environment with the learner's actions and keeps every transition.

    obs is the current raw observation; the running statistics see every observation, including the
    first of each episode, and the buffer keeps raw observations (normalized when sampled)."""

    def __init__(self, cfg: TrainConfig, buffer_size: int):
        self.env = make_env(cfg.env_id, cfg.seed)
        space = self.env.action_space
        self.obs_dim, self.act_dim = self.env.observation_space.shape[0], space.shape[0]
        self.scale_np, self.bias_np = action_scale(space), action_bias(space)
        self.scale, self.bias = torch.from_numpy(self.scale_np), torch.from_numpy(self.bias_np)
        self.running = RunningNorm(self.obs_dim)
        self.rb = ReplayBuffer(self.obs_dim, self.act_dim, min(buffer_size, cfg.total_steps), cfg.seed)
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.running.update(self.obs)

    def random_action(self):
        return self.env.action_space.sample()

    def policy_input(self) -> torch.Tensor:
        """The current observation, normalized, as a batch of one."""
        return torch.from_numpy(self.running(self.obs)[None])

    def step(self, action) -> None:
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.running.update(next_obs)
        self.rb.add(self.obs, next_obs, action, reward, terminated)  # next_obs is the true last obs at episode end
        self.obs = next_obs
        if terminated or truncated:
            self.obs, _ = self.env.reset()
            self.running.update(self.obs)

    def sample(self, batch_size: int) -> Batch:
        """A batch normalized with the statistics of this moment (see buffer.py)."""
        return self.rb.sample(batch_size, self.running.frozen())

"""A plain CleanRL-style FP32 DDPG loop (ddpg_continuous_action.py), kept only as bench/learning_parity.py's
yardstick for qsearch's DDPG.

Same structure and defaults as CleanRL: an actor with tanh output scaled to the action range, one
critic, target actor and critic updated parameter by parameter after each (delayed) actor update, no
target policy smoothing, raw (unnormalized) observations. Only the replay
buffer is a small NumPy ring (see _reference_common.py), the widths are arguments (CleanRL: 256) and
evaluation follows qsearch's protocol. CleanRL's learning_starts of 25e3 exceeds the benchmark's
budgets; the caller passes qsearch's configured value for both. Not used by qsearch itself.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference_common import Evaluator, ReplayBuffer, make_env  # noqa: E402


class QNetwork(nn.Module):
    def __init__(self, obs_dim, act_dim, width=256):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class Actor(nn.Module):
    def __init__(self, env, width=256):
        super().__init__()
        self.fc1 = nn.Linear(env.observation_space.shape[0], width)
        self.fc2 = nn.Linear(width, width)
        self.fc_mu = nn.Linear(width, env.action_space.shape[0])
        self.register_buffer("action_scale", torch.tensor((env.action_space.high - env.action_space.low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((env.action_space.high + env.action_space.low) / 2.0, dtype=torch.float32))

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = torch.tanh(self.fc_mu(x))
        return x * self.action_scale + self.action_bias


def train(env_id: str, total_steps: int, seed: int = 0, eval_every: int | None = None, eval_episodes: int = 10,
          width: int = 256, critic_width: int = 256, learning_rate: float = 3e-4, gamma: float = 0.99,
          tau: float = 0.005, batch_size: int = 256, exploration_noise: float = 0.1, learning_starts: int = 25_000,
          policy_frequency: int = 2, progress=None) -> dict:
    """CleanRL's loop with its defaults. Returns the evaluation curve and the wall and CPU seconds of the
    steps after learning_starts (evaluations excluded); see _reference_common.Evaluator."""
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = make_env(env_id, seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high

    actor = Actor(env, width)
    qf1 = QNetwork(obs_dim, act_dim, critic_width)
    qf1_target = QNetwork(obs_dim, act_dim, critic_width)
    target_actor = Actor(env, width)
    target_actor.load_state_dict(actor.state_dict())
    qf1_target.load_state_dict(qf1.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()), lr=learning_rate)
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=learning_rate)

    rb = ReplayBuffer(total_steps, obs_dim, act_dim)
    ev = Evaluator(env_id, obs_dim, seed, total_steps, learning_starts, eval_every, eval_episodes,
                   lambda x: (actor(x) - actor.action_bias) / actor.action_scale, progress)
    obs, _ = env.reset(seed=seed)
    for global_step in range(total_steps):
        if global_step < learning_starts:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                action = actor(torch.Tensor(obs).unsqueeze(0))[0]
                action += torch.normal(0, actor.action_scale * exploration_noise)
                action = action.numpy().clip(low, high)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs, next_obs, action, reward, terminated)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]

        if global_step > learning_starts:
            o, no, a, r, d = rb.sample(batch_size)
            with torch.no_grad():
                next_state_actions = target_actor(no)
                qf1_next_target = qf1_target(no, next_state_actions)
                next_q_value = r.flatten() + (1 - d.flatten()) * gamma * (qf1_next_target).view(-1)

            qf1_a_values = qf1(o, a).view(-1)
            qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
            q_optimizer.zero_grad()
            qf1_loss.backward()
            q_optimizer.step()

            if global_step % policy_frequency == 0:
                actor_loss = -qf1(o, actor(o)).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward()
                actor_optimizer.step()

                for param, target_param in zip(actor.parameters(), target_actor.parameters()):
                    target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
                for param, target_param in zip(qf1.parameters(), qf1_target.parameters()):
                    target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
        ev.tick(global_step + 1)
    ev.finish()
    env.close()
    return ev.result()

"""A plain CleanRL-style FP32 SAC loop (sac_continuous_action.py), kept only as the benchmarks' yardstick
(bench/train_throughput.py for speed, bench/learning_parity.py for learning).

Same structure and defaults as CleanRL: two separate critics and their targets, an actor whose mean
and log-std share one trunk, raw (unnormalized) observations, a Normal distribution object per call,
log-probabilities recomputed for the alpha loss, parameter-by-parameter target updates. Only the replay
buffer is a small NumPy ring instead of stable-baselines3's (no extra dependency), and the widths are
arguments (CleanRL: 256). Evaluation follows qsearch's protocol (see _reference_common.py). Not used by
qsearch itself.
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

LOG_STD_MAX, LOG_STD_MIN = 2, -5


class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim, act_dim, width=256):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Actor(nn.Module):
    def __init__(self, env, width=256):
        super().__init__()
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        self.fc1 = nn.Linear(obs_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.fc_mean = nn.Linear(width, act_dim)
        self.fc_logstd = nn.Linear(width, act_dim)
        self.register_buffer("action_scale", torch.tensor((env.action_space.high - env.action_space.low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((env.action_space.high + env.action_space.low) / 2.0, dtype=torch.float32))

    def forward(self, x):
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        mean = self.fc_mean(x)
        log_std = torch.tanh(self.fc_logstd(x))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return mean, log_std

    def get_action(self, x):
        mean, log_std = self(x)
        normal = torch.distributions.Normal(mean, log_std.exp())
        x_t = normal.rsample()
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x_t) - torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6)
        return action, log_prob.sum(1, keepdim=True), torch.tanh(mean) * self.action_scale + self.action_bias


def train(env_id: str, total_steps: int, seed: int = 0, eval_every: int | None = None, eval_episodes: int = 10,
          width: int = 256, critic_width: int = 256, gamma: float = 0.99, tau: float = 0.005, batch_size: int = 256,
          learning_starts: int = 5_000, policy_lr: float = 3e-4, q_lr: float = 1e-3, policy_frequency: int = 2,
          target_network_frequency: int = 1, alpha: float = 0.2, autotune: bool = True, progress=None) -> dict:
    """CleanRL's loop with its defaults. Returns the evaluation curve and the wall and CPU seconds of the
    steps after learning_starts (evaluations excluded); see _reference_common.Evaluator."""
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = make_env(env_id, seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = Actor(env, width)
    qf1, qf2 = SoftQNetwork(obs_dim, act_dim, critic_width), SoftQNetwork(obs_dim, act_dim, critic_width)
    qf1_target, qf2_target = SoftQNetwork(obs_dim, act_dim, critic_width), SoftQNetwork(obs_dim, act_dim, critic_width)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=q_lr)
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=policy_lr)
    if autotune:
        target_entropy = -float(act_dim)
        log_alpha = torch.zeros(1, requires_grad=True)
        alpha = log_alpha.exp().item()
        a_optimizer = torch.optim.Adam([log_alpha], lr=q_lr)

    rb = ReplayBuffer(total_steps, obs_dim, act_dim)
    ev = Evaluator(env_id, obs_dim, seed, total_steps, learning_starts, eval_every, eval_episodes,
                   lambda x: torch.tanh(actor(x)[0]), progress)
    obs, _ = env.reset(seed=seed)
    for global_step in range(total_steps):
        if global_step < learning_starts:
            action = env.action_space.sample()
        else:
            action, _, _ = actor.get_action(torch.Tensor(obs).unsqueeze(0))
            action = action.detach().numpy()[0]
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs, next_obs, action, reward, terminated)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]

        if global_step > learning_starts:
            o, no, a, r, d = rb.sample(batch_size)
            with torch.no_grad():
                next_state_actions, next_state_log_pi, _ = actor.get_action(no)
                qf1_next_target = qf1_target(no, next_state_actions)
                qf2_next_target = qf2_target(no, next_state_actions)
                min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - alpha * next_state_log_pi
                next_q_value = r.flatten() + (1 - d.flatten()) * gamma * (min_qf_next_target).view(-1)
            qf1_a_values = qf1(o, a).view(-1)
            qf2_a_values = qf2(o, a).view(-1)
            qf_loss = F.mse_loss(qf1_a_values, next_q_value) + F.mse_loss(qf2_a_values, next_q_value)
            q_optimizer.zero_grad()
            qf_loss.backward()
            q_optimizer.step()

            if global_step % policy_frequency == 0:
                for _ in range(policy_frequency):
                    pi, log_pi, _ = actor.get_action(o)
                    min_qf_pi = torch.min(qf1(o, pi), qf2(o, pi))
                    actor_loss = ((alpha * log_pi) - min_qf_pi).mean()
                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    actor_optimizer.step()
                    if autotune:
                        with torch.no_grad():
                            _, log_pi, _ = actor.get_action(o)
                        alpha_loss = (-log_alpha.exp() * (log_pi + target_entropy)).mean()
                        a_optimizer.zero_grad()
                        alpha_loss.backward()
                        a_optimizer.step()
                        alpha = log_alpha.exp().item()

            if global_step % target_network_frequency == 0:
                for param, target_param in zip(qf1.parameters(), qf1_target.parameters()):
                    target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
                for param, target_param in zip(qf2.parameters(), qf2_target.parameters()):
                    target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
        ev.tick(global_step + 1)
    ev.finish()
    env.close()
    return ev.result()


def run(env_id: str, learning_starts: int, learning_steps: int, seed: int = 0) -> tuple[float, float]:
    """Env steps per wall second and per CPU second over `learning_steps` steps after
    `learning_starts` random steps, with CleanRL's batch size 256 (bench/train_throughput.py)."""
    r = train(env_id, learning_starts + learning_steps, seed, learning_starts=learning_starts)
    return learning_steps / r["learn_wall_s"], learning_steps / r["learn_cpu_s"]

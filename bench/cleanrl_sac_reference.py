"""A plain CleanRL-style FP32 SAC loop (sac_continuous_action.py), kept only as the benchmark's yardstick.

Same structure and hyperparameters as CleanRL: two separate critics and their targets, a Normal
distribution object per call, log-probabilities recomputed for the alpha loss, parameter-by-parameter
target updates. Only the replay buffer is a small NumPy ring instead of stable-baselines3's (no extra
dependency). Not used by qsearch itself.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_STD_MAX, LOG_STD_MIN = 2, -5


class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim, act_dim):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Actor(nn.Module):
    def __init__(self, env):
        super().__init__()
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        self.fc1 = nn.Linear(obs_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc_mean = nn.Linear(256, act_dim)
        self.fc_logstd = nn.Linear(256, act_dim)
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


def run(env_id: str, learning_starts: int, learning_steps: int, seed: int = 0) -> tuple[float, float]:
    """Env steps per wall second and per CPU second over `learning_steps` steps after
    `learning_starts` random steps."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    gamma, tau, batch_size, policy_frequency = 0.99, 0.005, 256, 2
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = Actor(env)
    qf1, qf2 = SoftQNetwork(obs_dim, act_dim), SoftQNetwork(obs_dim, act_dim)
    qf1_target, qf2_target = SoftQNetwork(obs_dim, act_dim), SoftQNetwork(obs_dim, act_dim)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=1e-3)
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=3e-4)
    target_entropy = -float(act_dim)
    log_alpha = torch.zeros(1, requires_grad=True)
    alpha = log_alpha.exp().item()
    a_optimizer = torch.optim.Adam([log_alpha], lr=1e-3)

    n = learning_starts + learning_steps
    b_obs, b_next = np.zeros((n, obs_dim), np.float32), np.zeros((n, obs_dim), np.float32)
    b_act, b_rew, b_done = np.zeros((n, act_dim), np.float32), np.zeros((n, 1), np.float32), np.zeros((n, 1), np.float32)
    obs, _ = env.reset(seed=seed)
    start = None
    for global_step in range(n):
        if global_step == learning_starts:
            start, cpu_start = time.perf_counter(), time.process_time()
        if global_step < learning_starts:
            action = env.action_space.sample()
        else:
            action, _, _ = actor.get_action(torch.Tensor(obs).unsqueeze(0))
            action = action.detach().numpy()[0]
        next_obs, reward, terminated, truncated, _ = env.step(action)
        b_obs[global_step], b_next[global_step], b_act[global_step] = obs, next_obs, action
        b_rew[global_step], b_done[global_step] = reward, terminated
        obs = next_obs if not (terminated or truncated) else env.reset()[0]

        if global_step > learning_starts:
            idx = np.random.randint(0, global_step + 1, batch_size)
            o, no, a = torch.from_numpy(b_obs[idx]), torch.from_numpy(b_next[idx]), torch.from_numpy(b_act[idx])
            r, d = torch.from_numpy(b_rew[idx]), torch.from_numpy(b_done[idx])
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
                    with torch.no_grad():
                        _, log_pi, _ = actor.get_action(o)
                    alpha_loss = (-log_alpha.exp() * (log_pi + target_entropy)).mean()
                    a_optimizer.zero_grad()
                    alpha_loss.backward()
                    a_optimizer.step()
                    alpha = log_alpha.exp().item()

            for param, target_param in zip(qf1.parameters(), qf1_target.parameters()):
                target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
            for param, target_param in zip(qf2.parameters(), qf2_target.parameters()):
                target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    env.close()
    return learning_steps / wall, learning_steps / cpu

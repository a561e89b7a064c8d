"""Measure only: would K seeds of one configuration, trained in one process with batched networks, give
more environment steps per CPU second than K separate runs? (issue 13, point 3)

A trial is one configuration and one seed throughout qsearch (resume, scheduling, selection), so this
is not a qsearch feature: it is a compact FP32 SAC loop (CleanRL's algorithm, as qsearch's learner)
whose K actors, K critic pairs and K target critic pairs are each one batched MLP (weights of shape
(K, in, out), one bmm per layer), with K environments and K replay buffers. The losses of the seeds
are summed: the parameters are disjoint, so each seed gets its own gradient, and Adam is element-wise,
so each seed's update is its own. K = 1 is the same code for one seed, the separate-run baseline;
the QAT actor's quantizers are left out (they add element-wise work per member, which batching would
share the same way).

    .venv/bin/python bench/seeds_together.py [--env Hopper-v5] [--seeds 1 2 4 8] [--widths 256 16]
"""
from __future__ import annotations

import argparse
import math
import time

import gymnasium as gym
import numpy as np
import torch

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
BATCH, LEARNING_STARTS = 256, 300


class BatchedMLP(torch.nn.Module):
    """n independent MLPs in -> width -> width -> out on inputs (n, B, in)."""

    def __init__(self, n: int, d_in: int, width: int, d_out: int):
        super().__init__()
        dims = [d_in, width, width, d_out]
        self.ws = torch.nn.ParameterList()
        self.bs = torch.nn.ParameterList()
        for i, o in zip(dims, dims[1:]):
            bound = 1 / math.sqrt(i)
            self.ws.append(torch.nn.Parameter(torch.empty(n, i, o).uniform_(-bound, bound)))
            self.bs.append(torch.nn.Parameter(torch.empty(n, 1, o).uniform_(-bound, bound)))

    def forward(self, x):
        for k, (w, b) in enumerate(zip(self.ws, self.bs)):
            x = torch.baddbmm(b, x, w)
            if k < len(self.ws) - 1:
                x = torch.relu(x)
        return x


def run(env_id: str, k: int, width: int, steps: int, seed: int = 0) -> float:
    """Environment steps (over all K seeds) per CPU second over `steps` learning iterations."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    envs = [gym.make(env_id) for _ in range(k)]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    space = envs[0].action_space
    scale = torch.tensor((space.high - space.low) / 2, dtype=torch.float32)
    bias = torch.tensor((space.high + space.low) / 2, dtype=torch.float32)
    actor = BatchedMLP(k, obs_dim, width, 2 * act_dim)  # mean and log-std, as CleanRL's actor
    qf = BatchedMLP(2 * k, obs_dim + act_dim, width, 1)  # seed i's critics are members 2i, 2i+1
    qf_target = BatchedMLP(2 * k, obs_dim + act_dim, width, 1)
    qf_target.load_state_dict(qf.state_dict())
    q_opt = torch.optim.Adam(qf.parameters(), lr=1e-3, fused=True)
    a_opt = torch.optim.Adam(actor.parameters(), lr=3e-4, fused=True)
    log_alpha = torch.zeros(k, 1, requires_grad=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=1e-3, fused=True)
    target_entropy = -float(act_dim)

    n = LEARNING_STARTS + steps + 1
    b_obs, b_next = np.zeros((k, n, obs_dim), np.float32), np.zeros((k, n, obs_dim), np.float32)
    b_act, b_rew, b_done = np.zeros((k, n, act_dim), np.float32), np.zeros((k, n), np.float32), np.zeros((k, n), np.float32)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = np.arange(k)[:, None]

    def policy(x):
        out = actor(x)
        mean, log_std = out[..., :act_dim], torch.tanh(out[..., act_dim:])
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        eps = torch.randn_like(mean)
        y = torch.tanh(mean + log_std.exp() * eps)
        log_prob = -0.5 * eps.square() - log_std - 0.5 * math.log(2 * math.pi) - torch.log(scale * (1 - y.square()) + 1e-6)
        return y * scale + bias, log_prob.sum(-1)

    def twice(x):  # (K, B, d) -> (2K, B, d): each seed's batch for both of its critics
        return x.repeat_interleave(2, 0)

    for step in range(n):
        if step == LEARNING_STARTS + 1:
            cpu = time.process_time()
        if step < LEARNING_STARTS:
            actions = np.stack([env.action_space.sample() for env in envs])
        else:
            with torch.no_grad():
                actions = policy(torch.from_numpy(obs)[:, None])[0][:, 0].numpy()
        for i, env in enumerate(envs):
            next_obs, reward, terminated, truncated, _ = env.step(actions[i])
            b_obs[i, step], b_next[i, step], b_act[i, step] = obs[i], next_obs, actions[i]
            b_rew[i, step], b_done[i, step] = reward, terminated
            obs[i] = env.reset()[0] if terminated or truncated else next_obs

        if step > LEARNING_STARTS:
            idx = rng.integers(0, step + 1, (k, BATCH))
            o, no = torch.from_numpy(b_obs[rows, idx]), torch.from_numpy(b_next[rows, idx])
            a, r, d = torch.from_numpy(b_act[rows, idx]), torch.from_numpy(b_rew[rows, idx]), torch.from_numpy(b_done[rows, idx])
            alpha = log_alpha.detach().exp()
            with torch.no_grad():
                na, nlp = policy(no)
                q_next = qf_target(twice(torch.cat([no, na], -1))).view(k, 2, BATCH).amin(1) - alpha * nlp
                target = r + (1 - d) * 0.99 * q_next
            q = qf(twice(torch.cat([o, a], -1))).view(k, 2, BATCH)
            q_loss = (q - target[:, None]).square().mean(-1).sum()
            q_opt.zero_grad()
            q_loss.backward()
            q_opt.step()
            if step % 2 == 0:
                for _ in range(2):
                    pi, lp = policy(o)
                    q_pi = qf(twice(torch.cat([o, pi], -1))).view(k, 2, BATCH).amin(1)
                    a_loss = (alpha * lp - q_pi).mean(-1).sum()
                    a_opt.zero_grad()
                    a_loss.backward(inputs=list(actor.parameters()))
                    a_opt.step()
                    alpha_loss = (-log_alpha.exp() * (lp.detach() + target_entropy)).mean(-1).sum()
                    alpha_opt.zero_grad()
                    alpha_loss.backward()
                    alpha_opt.step()
                    alpha = log_alpha.detach().exp()
            with torch.no_grad():
                torch._foreach_lerp_(list(qf_target.parameters()), list(qf.parameters()), 0.005)
    cpu = time.process_time() - cpu
    for env in envs:
        env.close()
    return k * steps / cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--widths", type=int, nargs="+", default=[256, 16])
    p.add_argument("--steps", type=int, default=300, help="learning iterations measured per point")
    a = p.parse_args()
    print(f"{a.env}, batch {BATCH}, one thread, {a.steps} learning iterations per point, CPU time")
    print(f"{'width':>5s} {'K':>3s} {'env steps/CPU s (all seeds)':>28s} {'x K separate runs':>18s}")
    for width in a.widths:
        single = None
        for k in a.seeds:
            rate = run(a.env, k, width, a.steps)
            single = rate if k == 1 else single
            ratio = "" if single is None else f"{rate / single:18.2f}"
            print(f"{width:5d} {k:3d} {rate:28.1f} {ratio}", flush=True)


if __name__ == "__main__":
    main()

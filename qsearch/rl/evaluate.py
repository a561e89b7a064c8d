"""Deterministic policy evaluation, optionally with Gaussian noise on the normalized observation
(paper Section 3.3). Undiscounted returns; episode i is seeded seed + i.

A policy (qsearch/policy.py) is a callable from normalized observations to actions; a recurrent one
carries a state from call to call, reset at every episode's start."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qsearch.obs_norm import ObsNorm
from qsearch.policy import Policy, Recurrent, reset
from qsearch.rl.envs import action_bias, action_scale, make_env


@dataclass(frozen=True)
class EvalResult:
    mean: float
    std: float
    returns: np.ndarray


def torch_policy(actor: torch.nn.Module) -> Policy:
    """A QuantActor (or any module returning pre-tanh means) as a Policy, run in eval mode on the device
    its parameters are on (a learner's, while it trains); observations and actions are NumPy."""
    device = next(actor.parameters()).device
    if getattr(actor, "recurrent", False):
        def step(obs: np.ndarray, h: torch.Tensor):
            if actor.training:
                actor.eval()
            with torch.no_grad():
                means, h = actor.step(torch.from_numpy(obs).to(device), h)
            return torch.tanh(means).cpu().numpy(), h

        return Recurrent(step, actor.initial_state)

    def policy(obs: np.ndarray) -> np.ndarray:
        if actor.training:  # eval mode keeps brevitas' warm-up counters still
            actor.eval()
        with torch.no_grad():
            return torch.tanh(actor(torch.from_numpy(obs).to(device))).cpu().numpy()

    return policy


def evaluate(policy: Policy, env_id: str, obs_norm: ObsNorm, episodes: int, seed: int,
             noise_sigma: float = 0.0, observe: str = "all") -> EvalResult:
    """observe: what of the observation the policy sees (TrainConfig.observe)."""
    env = make_env(env_id, seed, observe)
    scale, bias = action_scale(env.action_space), action_bias(env.action_space)
    noise = np.random.default_rng(seed)
    returns = np.zeros(episodes)
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            reset(policy)
            done, total = False, 0.0
            while not done:
                x = obs_norm(obs)[None]
                if noise_sigma > 0:
                    x = x + noise.normal(0.0, noise_sigma, x.shape).astype(np.float32)
                action = policy(x)[0] * scale + bias
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns[ep] = total
    finally:
        env.close()
    return EvalResult(float(returns.mean()), float(returns.std()), returns)

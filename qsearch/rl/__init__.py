"""Reinforcement learning: environments, normalization, the SAC / DDPG / TD3 learners, PPO through RLlib,
evaluation."""
from __future__ import annotations

from qsearch.config import TrainConfig
from qsearch.rl.checkpoint import Checkpoints
from qsearch.rl.common import TrainResult
from qsearch.rl.evaluate import EvalResult, evaluate, torch_policy


def train(cfg: TrainConfig, progress=None, checkpoints: Checkpoints | None = None, device="cpu") -> TrainResult:
    """Train cfg.policy with cfg.algo on cfg.env_id. progress(metrics) is called every 1,000 steps and
    after every evaluation; checkpoints (rl/checkpoint.py) says where to save the learner's state and
    which checkpoint to continue from. device: where the networks and updates run, "cpu", "cuda" or
    "cuda:N" (common.torch_device); the environment stays on the CPU and the result's actor is on it."""
    if cfg.algo == "ppo":  # imports RLlib only when asked for
        from qsearch.rl import ppo

        return ppo.train(cfg, progress, checkpoints, device=device)
    from qsearch.rl import sac, td3

    # DDPG is TD3 with one critic and no target policy smoothing (see td3.py)
    return {"sac": sac.train, "ddpg": td3.train, "td3": td3.train}[cfg.algo](cfg, progress, checkpoints, device)


__all__ = ["EvalResult", "TrainResult", "evaluate", "torch_policy", "train"]

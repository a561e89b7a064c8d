"""Running per-dimension observation normalization during training (paper Section 3), frozen into an
ObsNorm for evaluation and deployment.
"""
from __future__ import annotations

import numpy as np

from qsearch.obs_norm import ObsNorm

EPS = 1e-8


class RunningNorm:
    """Welford-style running mean and variance over every observation seen in training."""

    def __init__(self, dim: int):
        self.mean = np.zeros(dim, np.float64)
        self.var = np.ones(dim, np.float64)
        self.count = EPS

    def update(self, obs: np.ndarray) -> None:
        batch = np.asarray(obs, np.float64).reshape(-1, self.mean.shape[0])
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def frozen(self) -> ObsNorm:
        return ObsNorm(self.mean.astype(np.float32), np.sqrt(self.var + EPS).astype(np.float32))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.frozen()(obs)

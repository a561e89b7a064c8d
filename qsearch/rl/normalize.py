"""Running per-dimension observation normalization (paper Section 3), frozen for evaluation.

The frozen form is part of the deployed policy: the integer engine's only floating-point step is
x = (obs - mean) / std in float32 followed by the input quantizer, so these exact float32 operations
are the definition every engine (torch, NumPy, C) follows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-8


@dataclass(frozen=True)
class ObsNorm:
    """Frozen normalization: float32 mean and std per observation dimension."""

    mean: np.ndarray
    std: np.ndarray

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return (np.asarray(obs, dtype=np.float32) - self.mean) / self.std

    @classmethod
    def identity(cls, dim: int) -> "ObsNorm":
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))


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

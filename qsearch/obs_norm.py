"""The frozen observation normalization, part of every deployed policy (paper Section 3).

The integer engine's only floating-point step is x = (obs - mean) / std in float32 followed by the
input quantizer, so these exact float32 operations are the definition every engine (torch, NumPy, C)
follows. It sits on the ground floor because training (qsearch.rl), the integer model (qsearch.quant),
bundles and exports all use it; the running statistics it is frozen from are training's
(qsearch.rl.normalize.RunningNorm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

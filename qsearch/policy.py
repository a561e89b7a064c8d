"""The policy interface everything that runs a policy step by step shares (the evaluator, the integer
engine, the torch actor): a callable from normalized observations to actions, and a recurrent one
that carries a state. Below both the engines and the learners."""
from __future__ import annotations

from typing import Callable

import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]  # normalized float32 obs (n, obs_dim) -> actions in [-1, 1]

class Recurrent:
    """A Policy with a state: step(obs, state) -> (actions, new state), the state from initial(n) after
    every reset() (the start of an episode) and carried between calls otherwise."""

    def __init__(self, step: Callable, initial: Callable[[int], object]):
        self.step, self.initial, self.state = step, initial, None

    def reset(self) -> None:
        self.state = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.state is None:
            self.state = self.initial(len(obs))
        actions, self.state = self.step(obs, self.state)
        return actions


def reset(policy: Policy) -> None:
    """Start an episode: a policy with a state (Recurrent, or one wrapping a policy) resets it."""
    if hasattr(policy, "reset"):
        policy.reset()


class Recording:
    """A policy that keeps the normalized observations of each episode it is given (`episodes`, one
    list of rows per episode) and passes its actions through `then` (exploration noise, say)."""

    def __init__(self, policy: Policy, then: Callable[[np.ndarray], np.ndarray] | None = None):
        self.policy, self.then, self.episodes = policy, then, []

    def reset(self) -> None:
        self.episodes.append([])
        reset(self.policy)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.episodes[-1].extend(obs)
        actions = self.policy(obs)
        return actions if self.then is None else self.then(actions)

"""The environment side every learner shares (CleanRL's env set-up, rb.add and episode resets): the
environment and its action range, the running observation normalization and the replay buffer.

It is also where the CPU meets the learner's device: the environment and the buffer stay NumPy on the
CPU (batch indices drawn from the buffer's own generator whatever the device), and only the tensors
handed to the networks move."""
from __future__ import annotations

import numpy as np
import torch

from qsearch.config import TrainConfig
from qsearch.errors import QsearchError
from qsearch.rl.buffer import Batch, ReplayBuffer, Sequences
from qsearch.rl.envs import action_bias, action_scale, make_env
from qsearch.rl.normalize import RunningNorm


class Experience:
    """Steps the environment with the learner's actions and keeps every transition.

    obs is the current raw observation; the running statistics see every observation, including the
    first of each episode, and the buffer keeps raw observations (normalized when sampled).

    For checkpoints (rl/checkpoint.py) it also keeps how to rebuild the episode in progress: the
    environment's random state before the episode's reset (None for the first, reset with the seed)
    and the episode's actions since."""

    def __init__(self, cfg: TrainConfig, buffer_size: int, device: torch.device = torch.device("cpu")):
        self.seed, self.device = cfg.seed, device
        self.env = make_env(cfg.env_id, cfg.seed, cfg.observe)
        space = self.env.action_space
        self.obs_dim, self.act_dim = self.env.observation_space.shape[0], space.shape[0]
        self.scale_np, self.bias_np = action_scale(space), action_bias(space)
        self.scale, self.bias = torch.from_numpy(self.scale_np).to(device), torch.from_numpy(self.bias_np).to(device)
        self.running = RunningNorm(self.obs_dim)
        state_dim = cfg.policy.encoder_width if cfg.policy.recurrent else 0
        self.rb = ReplayBuffer(self.obs_dim, self.act_dim, min(buffer_size, cfg.total_steps), cfg.seed, state_dim)
        self.episode_start, self.episode_actions = None, []
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.running.update(self.obs)

    def random_action(self):
        return self.env.action_space.sample()

    def policy_input(self) -> torch.Tensor:
        """The current observation, normalized, as a batch of one."""
        return torch.from_numpy(self.running(self.obs)[None]).to(self.device)

    def step(self, action, state=None) -> bool:
        """Returns True when the episode ended (and a new one began). state: a recurrent actor's state
        carried into this step, which the buffer keeps."""
        self.episode_actions.append(np.array(action, self.env.action_space.dtype))
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.running.update(next_obs)
        done = terminated or truncated
        self.rb.add(self.obs, next_obs, action, reward, terminated, done, state)  # next_obs is the true last obs at episode end
        self.obs = next_obs
        if done:
            self.episode_start, self.episode_actions = _rng_state(self.env.unwrapped), []
            self.obs, _ = self.env.reset()
            self.running.update(self.obs)
        return done

    def sample(self, batch_size: int) -> Batch:
        """A batch normalized with the statistics of this moment (see buffer.py)."""
        return self._moved(self.rb.sample(batch_size, self.running.frozen()))

    def sample_sequences(self, batch_size: int, length: int, burn_in: int) -> Sequences:
        """batch_size / length windows of `length` trained steps after a burn-in (buffer.py)."""
        return self._moved(self.rb.sample_sequences(max(batch_size // length, 1), length, burn_in, self.running.frozen()))

    def _moved(self, batch):
        """A Batch or Sequences on the learner's device (on the CPU: the same tensors)."""
        return batch._make(t.to(self.device, non_blocking=True) for t in batch)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able state, arrays) for a checkpoint."""
        rb_state, rb_arrays = self.rb.state()
        state = {"episode_start": self.episode_start, "env_rng": _rng_state(self.env.unwrapped),
                 "action_rng": _rng_state(self.env.action_space), "buffer": rb_state,
                 "running_count": self.running.count}
        arrays = {**rb_arrays, "obs": self.obs, "running_mean": self.running.mean, "running_var": self.running.var,
                  "episode_actions": np.array(self.episode_actions, self.env.action_space.dtype).reshape(-1, self.act_dim)}
        return state, arrays

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        """Back to a checkpoint's state: the episode in progress is replayed into the environment."""
        if state["episode_start"] is None:
            obs, _ = self.env.reset(seed=self.seed)
        else:
            _set_rng_state(self.env.unwrapped, state["episode_start"])
            obs, _ = self.env.reset()
        for action in arrays["episode_actions"]:
            obs, *_ = self.env.step(action)
        if not np.array_equal(obs, arrays["obs"]):
            raise QsearchError(f"{self.env.spec.id} did not replay to the checkpoint's observation: the "
                               "environment is not deterministic here, so the run cannot continue exactly")
        self.episode_start, self.episode_actions = state["episode_start"], list(arrays["episode_actions"])
        self.obs = arrays["obs"]
        _set_rng_state(self.env.unwrapped, state["env_rng"])
        _set_rng_state(self.env.action_space, state["action_rng"])
        self.running.mean, self.running.var = arrays["running_mean"], arrays["running_var"]
        self.running.count = state["running_count"]
        self.rb.load_state(state["buffer"], arrays)


def _rng_state(owner) -> dict:
    """The state of an environment's or a space's NumPy generator (plain ints: JSON-able)."""
    return owner.np_random.bit_generator.state


def _set_rng_state(owner, state: dict) -> None:
    owner.np_random.bit_generator.state = state

"""qsearch's PPO policy as an RLlib module: the QAT actor gives the action mean, an FP32 state-independent
log-std and an FP32 value network are used only in training.

The training distribution is a Gaussian on the actor's pre-tanh output, squashed by tanh into [-1, 1]
(with the log-probability's tanh correction); RLlib's `normalize_actions` then maps [-1, 1] onto the
environment's range, so the deterministic action is tanh(actor(x)) * scale + bias, exactly what the
integer engine and every export compute.

The log-std is a parameter, not a branch of the network (SAC's sigma branch): CleanRL's PPO uses a
state-independent log-std, PPO's exploration needs no state-dependent width, and a parameter keeps
the deployed network the actor alone.

The actor is in training mode only inside the learner's forward_train, once per minibatch, so its
brevitas activation-scale warm-up (300 training-mode calls) counts minibatch updates, as SAC's counts
actor updates: with CleanRL's 10 epochs x 32 minibatches (a few more: RLlib adds a bootstrap step per
episode to the batch) it ends within the first PPO iteration, and the env runners act with the running
statistics until then (brevitas saves them as the scale while it warms up).
"""
from __future__ import annotations

import math

import brevitas.config
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic, TorchSquashedGaussian
from torch import nn

from qsearch.config import TrainConfig
from qsearch.quant.actor import QuantActor
from qsearch.rl.common import ModeSwitch

ACTOR_PREFIX = "pi.actor."  # the QuantActor's keys in the module's state
TRAIN_FORWARDS = "pi.train_forwards"  # the actor's training-mode forwards so far, in the module's state
TRAIN_CONFIG = "qsearch_train_config"  # the model_config key holding the TrainConfig


def use_full_brevitas_state() -> None:
    """What RLlib's weight syncs need from brevitas, in every process that builds the module (learner,
    env runners): state_dicts that hold not-yet-initialized activation scales (else the first sync
    misses keys), and loads that do not re-initialize the quantizers (else the fused fast path of an
    env runner's actor keeps acting with stale scales)."""
    brevitas.config._FULL_STATE_DICT = True
    brevitas.config.REINIT_ON_STATE_DICT_LOAD = False


class SquashedGaussian(TorchSquashedGaussian):
    """RLlib's tanh-squashed Gaussian in [-1, 1], with what PPO needs that it lacks: an entropy (the
    pre-tanh Gaussian's, an upper bound of the squashed one, only reported with ent_coef 0) and a
    deterministic action tanh(mean) (RLlib's would return the pre-tanh mean)."""

    def entropy(self) -> torch.Tensor:
        return self._dist.entropy().sum(-1)

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=torch.tanh(self.loc))


class GaussianHead(nn.Module):
    """normalized obs -> [mean, log_std]: RLlib's action-distribution inputs."""

    def __init__(self, actor: QuantActor, init_log_std: float):
        super().__init__()
        self.actor = actor
        self.log_std = nn.Parameter(torch.full((actor.act_dim,), float(init_log_std)))
        self.actor_mode = ModeSwitch(actor)
        # The actor's training-mode forwards (= minibatch updates), in the state so that the trainer
        # and a checkpoint can read it: RLlib's minibatches per epoch vary with the episodes' bootstrap steps.
        self.register_buffer("train_forwards", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if training:  # training mode for the learner's forward only: the warm-up counts these
            self.actor_mode(True)
            mean = self.actor(x)
            self.actor_mode(False)
            self.train_forwards += 1
        else:  # the actor is left in eval mode
            mean = self.actor(x)
        return torch.cat([mean, self.log_std.expand_as(mean)], -1)


def value_network(obs_dim: int, width: int) -> nn.Sequential:
    """CleanRL's critic: two tanh layers, orthogonal init (gain sqrt 2, output 1.0), zero biases."""
    layers = [nn.Linear(obs_dim, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1)]
    for layer, gain in zip(layers[::2], (math.sqrt(2), math.sqrt(2), 1.0)):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class QuantPPOModule(DefaultPPOTorchRLModule):
    """model_config: {"train_config": TrainConfig.to_dict()}: the module builds itself from it, and a
    checkpoint carries it, so that `qsearch import` knows what it imports."""

    def setup(self):
        use_full_brevitas_state()
        torch.set_num_threads(1)  # one env runner or learner = one core
        cfg = TrainConfig.from_dict(self.model_config[TRAIN_CONFIG])
        obs_dim, act_dim = self.observation_space.shape[0], self.action_space.shape[0]
        actor = QuantActor(obs_dim, act_dim, cfg.policy).eval()
        self.encoder = None  # no shared encoder: the actor reads the normalized observation itself
        self.pi = GaussianHead(actor, cfg.algo_config.init_log_std)
        if not self.inference_only:
            self.vf = value_network(obs_dim, cfg.algo_config.critic_width)
        self.action_dist_cls = SquashedGaussian

    def train(self, mode: bool = True) -> "QuantPPOModule":
        """RLlib sets the mode around every forward; nn.Module.train's recursion through brevitas' ~300
        submodules costs ~2 ms a call (measured: a QAT env runner step took 2.2 ms against 0.36 ms
        FP32). Only the actor's mode matters here (the value network has no dropout or batch norm),
        and GaussianHead sets it for each forward itself."""
        self.training = mode
        return self

    @property
    def actor(self) -> QuantActor:
        return self.pi.actor

    def get_non_inference_attributes(self) -> list[str]:
        return ["vf"]

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def _forward_train(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS], training=True)}

    def compute_values(self, batch, embeddings=None):
        return self.vf(batch[Columns.OBS]).squeeze(-1)

"""What SAC and TD3 see of a batch, for a stateless policy (transitions) and for a recurrent one
(windows of consecutive steps, rl/buffer.py), so that one update loop serves both.

A recurrent policy's critics have their own FP32 GRU over the observations, one shared by the
ensemble of Q heads, and do not share the actor's. Ni et al. 2022 ("Recurrent model-free RL can be a
strong baseline for many POMDPs", Section 4.2 and Fig. 3) found separate encoders for actor and critic
necessary for TD3 and SAC on their POMDPs: with a shared encoder the actor's gradients disturb the
critic's features and learning became unstable. Separate also keeps the deployed actor's encoder
free of anything but the actor's own loss, and the critics' encoder full precision. The log-std
branch of SAC's actor sees the observation only: it shapes exploration in training and is not deployed.
"""
from __future__ import annotations

import torch
from torch import nn

from qsearch.rl.buffer import Batch, Sequences
from qsearch.rl.common import QEnsemble


class RecurrentCritic(nn.Module):
    """n critics Q(history, a): a GRU over the window's observations whose hidden state at each step,
    with the action, feeds a QEnsemble."""

    def __init__(self, obs_dim: int, act_dim: int, width: int, encoder_width: int, n: int = 2):
        super().__init__()
        self.gru = nn.GRU(obs_dim, encoder_width, batch_first=True)
        self.heads = QEnsemble(encoder_width, act_dim, width, n)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, T + 1, obs_dim) from the zero state -> the hidden state after each step (B, T + 1, width)."""
        return self.gru(obs)[0]

    def forward(self, features: torch.Tensor, act: torch.Tensor, n: int | None = None) -> torch.Tensor:
        return self.heads(features, act, n)


class Transitions:
    """A batch of single transitions: each network sees obs or next_obs (CleanRL's arithmetic)."""

    def __init__(self, data: Batch):
        self.data = data

    def policy(self, net: nn.Module) -> torch.Tensor:
        return net(self.data.obs)

    def next_policy(self, net: nn.Module) -> torch.Tensor:
        return net(self.data.next_obs)

    def critic(self, qf: nn.Module) -> torch.Tensor:
        return self.data.obs

    def next_critic(self, qf: nn.Module) -> torch.Tensor:
        return self.data.next_obs

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean over the batch (the last dimension)."""
        return x.mean(-1)


class Windows(Transitions):
    """A batch of windows: a network runs over each window's observations from the zero state, and a
    step's output is the one after its observation (current) or after the next one (following)."""

    data: Sequences

    def policy(self, net: nn.Module) -> torch.Tensor:
        return _current(self._run(net))

    def next_policy(self, net: nn.Module) -> torch.Tensor:
        return _following(self._run(net))

    def _run(self, net: nn.Module) -> torch.Tensor:
        """The actor from each window's stored state (rl/buffer.py); another network (SAC's log-std
        branch) sees the observations alone."""
        if getattr(net, "recurrent", False):
            return net.sequence(self.data.obs, self.data.state)[0]
        return net(self.data.obs)

    def critic(self, qf: RecurrentCritic) -> torch.Tensor:
        return _current(qf.features(self.data.obs))

    def next_critic(self, qf: RecurrentCritic) -> torch.Tensor:
        return _following(qf.features(self.data.obs))

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean over the trained steps (masked burn-in and steps past an episode's end)."""
        return (x * self.data.mask).sum(-1) / self.data.mask.sum()


def _current(t: torch.Tensor) -> torch.Tensor:
    return t[:, :-1].reshape(-1, t.shape[-1])


def _following(t: torch.Tensor) -> torch.Tensor:
    return t[:, 1:].reshape(-1, t.shape[-1])


def batch(exp, args, recurrent: bool) -> Transitions:
    """The next batch: batch_size transitions, or batch_size / sequence_length windows of a recurrent policy."""
    if recurrent:
        return Windows(exp.sample_sequences(args.batch_size, args.sequence_length, args.burn_in))
    return Transitions(exp.sample(args.batch_size))


def critics(exp, args, policy, n: int) -> nn.Module:
    """The FP32 critics: a QEnsemble, or for a recurrent policy one with its own GRU (the module's docstring)."""
    if policy.recurrent:
        return RecurrentCritic(exp.obs_dim, exp.act_dim, args.critic_width, args.critic_encoder_width, n)
    return QEnsemble(exp.obs_dim, exp.act_dim, args.critic_width, n)


class Stream:
    """The acting state of a recurrent actor over the training environment's episodes: carried from
    step to step, zero at every episode's start. A tensor, so a checkpoint saves and restores it.
    `carried` is the state the latest step started from, which the replay buffer keeps (None for a
    stateless actor)."""

    def __init__(self, actor):
        self.actor = actor
        self.state = actor.initial_state(1) if actor.recurrent else torch.zeros(0)
        self.carried = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The actor's mean for the current observation (a batch of one), the state moved on."""
        if not self.actor.recurrent:
            return self.actor(x)
        self.carried = self.state[0].cpu().numpy().copy()
        mean, h = self.actor.step(x, self.state)
        self.state.copy_(h)
        return mean

    def episode_ended(self) -> None:
        self.state.zero_()
        self.carried = None

    def parts(self) -> dict:
        """What a checkpoint keeps of it (rl/checkpoint.py)."""
        return {"stream": self.state} if self.actor.recurrent else {}

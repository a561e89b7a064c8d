"""Soft Actor-Critic, after CleanRL's sac_continuous_action.py, with the paper's changes (Section 2.2):
the action mean comes from the QAT actor, the log-std from a separate FP32 branch used only in
training, and observations are normalized with running statistics.

A recurrent policy (a GRU encoder) trains on windows of consecutive steps with burn-in, its critics
with their own GRU (rl/sequences.py, rl/buffer.py); `batch` says what each network sees.

Lean where it costs nothing in clarity: both critics are one batched ensemble, target updates are one
fused lerp, the alpha loss reuses the actor loss' log-probabilities, the actor loss back-propagates
into the actor only, and losses are read only when reported.

The networks, optimizers and sampled batches live on `device`; the environment and the replay buffer
stay on the CPU (rl/experience.py), and the returned actor is on the CPU.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from qsearch.config import SACConfig, TrainConfig
from qsearch.quant.actor import build_actor
from qsearch.rl.checkpoint import Checkpoints, LearnerCheckpoint
from qsearch.rl import sequences
from qsearch.rl.common import (ModeSwitch, Monitor, TrainResult, actor_adam, check_action, fused_adam,
                               seed_everything, soft_update, target_copy, torch_device)
from qsearch.rl.experience import Experience

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class LogStd(nn.Module):
    """The FP32 sigma branch: normalized obs -> one hidden ReLU layer -> log std, squashed into
    [LOG_STD_MIN, LOG_STD_MAX] as in CleanRL."""

    def __init__(self, obs_dim: int, act_dim: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, width), nn.ReLU(), nn.Linear(width, act_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_std = torch.tanh(self.net(x))
        return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)


def sample_action(mean, log_std, scale, bias):
    """A reparameterized tanh-Gaussian action in the environment's range and its log-probability
    (CleanRL's get_action, with the Normal density written out: no distribution object per call)."""
    eps = torch.randn_like(mean)
    y = torch.tanh(mean + log_std.exp() * eps)
    log_prob = -0.5 * eps.square() - log_std - HALF_LOG_2PI - torch.log(scale * (1 - y.square()) + 1e-6)
    return y * scale + bias, log_prob.sum(1)


def train(cfg: TrainConfig, progress=None, checkpoints: Checkpoints | None = None, device="cpu") -> TrainResult:
    args: SACConfig = cfg.algo_config
    device = torch_device(device)
    torch.set_num_threads(1)  # one trial = one core
    seed_everything(cfg.seed)

    exp = Experience(cfg, args.buffer_size, device)
    scale, bias = exp.scale, exp.bias

    # built on the CPU and then moved: the same initial weights on every device
    actor = build_actor(exp.obs_dim, exp.act_dim, cfg.policy).to(device).eval()
    actor_mode = ModeSwitch(actor)
    stream = sequences.Stream(actor)  # a recurrent actor's state while acting
    log_std_net = LogStd(exp.obs_dim, exp.act_dim, args.sigma_width).to(device)
    qf = sequences.critics(exp, args, cfg.policy, n=2).to(device)
    qf_target = target_copy(qf)
    q_pairs = (list(qf_target.parameters()), list(qf.parameters()))
    q_optimizer = fused_adam(qf.parameters(), args.q_lr)
    actor_params = [*actor.parameters(), *log_std_net.parameters()]
    actor_optimizer = actor_adam(actor_params, args.policy_lr)

    if args.autotune:
        target_entropy = -float(exp.act_dim)
        log_alpha = torch.zeros(1, requires_grad=True, device=device)
        a_optimizer = fused_adam([log_alpha], args.q_lr)

    monitor = Monitor(cfg, progress, actor, exp.running)
    parts = {"actor": actor, "log_std": log_std_net, "qf": qf, "qf_target": qf_target,
             "q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer, **stream.parts()}
    if args.autotune:
        parts |= {"log_alpha": log_alpha, "a_optimizer": a_optimizer}
    checkpoint = LearnerCheckpoint(checkpoints, cfg, parts, exp, monitor, device)
    start, counts = checkpoint.restore()  # (0, {}) for a fresh run
    actor_updates = counts.get("actor_updates", 0)
    alpha = log_alpha.detach().exp() if args.autotune else torch.tensor(args.alpha, device=device)
    qf_loss = actor_loss = None

    for global_step in range(start, cfg.total_steps):
        if global_step < args.learning_starts:
            action = exp.random_action()
        else:
            with torch.no_grad():
                x = exp.policy_input()
                action = sample_action(stream(x), log_std_net(x), scale, bias)[0][0].cpu().numpy()
            check_action(action, global_step + 1)
        if exp.step(action, stream.carried):
            stream.episode_ended()

        if global_step > args.learning_starts:
            batch = sequences.batch(exp, args, actor.recurrent)
            data = batch.data
            with torch.no_grad():
                next_mean, next_log_std = batch.next_policy(actor), batch.next_policy(log_std_net)
                next_actions, next_log_pi = sample_action(next_mean, next_log_std, scale, bias)
                min_qf_next = qf_target(batch.next_critic(qf_target), next_actions).amin(0) - alpha * next_log_pi
                next_q = data.rewards + (1 - data.terminations) * args.gamma * min_qf_next
            # sum over the two critics of each one's mean squared error, as CleanRL's qf1_loss + qf2_loss
            qf_loss = batch.mean((qf(batch.critic(qf), data.actions) - next_q).square()).sum()
            q_optimizer.zero_grad()
            qf_loss.backward()
            q_optimizer.step()

            if global_step % args.policy_frequency == 0:
                for _ in range(args.policy_frequency):  # CleanRL: compensate for the delay
                    actor_mode(True)  # training mode for this forward only: brevitas' warm-up counts these
                    mean = batch.policy(actor)
                    actor_mode(False)
                    pi, log_pi = sample_action(mean, batch.policy(log_std_net), scale, bias)
                    actor_loss = batch.mean(alpha * log_pi - qf(batch.critic(qf), pi).amin(0))
                    actor_optimizer.zero_grad()
                    actor_loss.backward(inputs=actor_params)  # the critics' weights need no gradient here
                    actor_optimizer.step()
                    actor_updates += 1

                    if args.autotune:
                        alpha_loss = batch.mean(-log_alpha.exp() * (log_pi.detach() + target_entropy))
                        a_optimizer.zero_grad()
                        alpha_loss.backward()
                        a_optimizer.step()
                        alpha = log_alpha.detach().exp()

            if global_step % args.target_network_frequency == 0:
                soft_update(*q_pairs, args.tau)

        step = global_step + 1
        if monitor.due(step):
            monitor.report(step, {"qf_loss": qf_loss, "actor_loss": actor_loss, "alpha": alpha})
        if checkpoint.due(step):
            checkpoint.save(step, actor_updates=actor_updates)

    exp.env.close()
    return TrainResult(actor.eval().cpu(), exp.running.frozen(), exp.scale_np, exp.bias_np, monitor.history,
                       monitor.seconds, actor_updates)

"""TD3, after CleanRL's td3_continuous_action.py, with the QAT actor and running observation
normalization: twin critics (one batched ensemble), target policy smoothing, delayed actor updates.

DDPG (CleanRL's ddpg_continuous_action.py, paper Table 5) is the special case this function runs for a
DDPGConfig: one critic and no target policy smoothing. TD3 is DDPG plus three changes (Fujimoto et al.,
2018): clipped double Q, target smoothing and delayed actor updates; CleanRL's DDPG already delays its
actor (policy_frequency = 2), so the other two are all that differ. With one critic the minimum over
critics is that critic's value and the summed loss is its loss, the same arithmetic as CleanRL's DDPG;
no smoothing noise is drawn, so the random stream is DDPG's own.

A recurrent policy (a GRU encoder) trains on windows of consecutive steps with burn-in, its critics
with their own GRU (rl/sequences.py, rl/buffer.py); `batch` says what each network sees.

The networks, optimizers and sampled batches live on `device`; the environment and the replay buffer
stay on the CPU (rl/experience.py), and the returned actor is on the CPU.
"""
from __future__ import annotations

import torch

from qsearch.config import DDPGConfig, TD3Config, TrainConfig
from qsearch.quant.actor import build_actor
from qsearch.rl.checkpoint import Checkpoints, LearnerCheckpoint
from qsearch.rl import sequences
from qsearch.rl.common import (ModeSwitch, Monitor, TrainResult, actor_adam, check_action, fused_adam,
                               seed_everything, soft_update, sync_warmup, target_copy, torch_device)
from qsearch.rl.experience import Experience


def train(cfg: TrainConfig, progress=None, checkpoints: Checkpoints | None = None, device="cpu") -> TrainResult:
    args: TD3Config | DDPGConfig = cfg.algo_config
    smoothing = isinstance(args, TD3Config)  # DDPG: one critic, no target policy smoothing
    device = torch_device(device)
    torch.set_num_threads(1)  # one trial = one core
    seed_everything(cfg.seed)

    exp = Experience(cfg, args.buffer_size, device)
    scale, bias = exp.scale, exp.bias
    low, high = exp.env.action_space.low, exp.env.action_space.high
    low_t, high_t = torch.from_numpy(low).to(device), torch.from_numpy(high).to(device)
    noise_std = scale * args.exploration_noise

    # built on the CPU and then moved: the same initial weights on every device
    actor = build_actor(exp.obs_dim, exp.act_dim, cfg.policy).to(device).eval()
    actor_mode = ModeSwitch(actor)
    stream = sequences.Stream(actor)  # a recurrent actor's state while acting
    target_actor = target_copy(actor)
    actor_pairs = (list(target_actor.parameters()), list(actor.parameters()))
    qf = sequences.critics(exp, args, cfg.policy, n=2 if smoothing else 1).to(device)
    qf_target = target_copy(qf)
    q_pairs = (list(qf_target.parameters()), list(qf.parameters()))
    q_optimizer = fused_adam(qf.parameters(), args.learning_rate)
    actor_params = list(actor.parameters())
    actor_optimizer = actor_adam(actor_params, args.learning_rate)

    monitor = Monitor(cfg, progress, actor, exp.running)
    checkpoint = LearnerCheckpoint(checkpoints, cfg, {
        "actor": actor, "target_actor": target_actor, "qf": qf, "qf_target": qf_target,
        "q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer, **stream.parts()}, exp, monitor, device)
    start, counts = checkpoint.restore()  # (0, {}) for a fresh run
    actor_updates = counts.get("actor_updates", 0)
    qf_loss = actor_loss = None

    for global_step in range(start, cfg.total_steps):
        if global_step < args.learning_starts:
            action = exp.random_action()
        else:
            with torch.no_grad():
                action = torch.tanh(stream(exp.policy_input()))[0] * scale + bias
                action = torch.normal(0.0, noise_std) + action
            action = action.cpu().numpy().clip(low, high)
            check_action(action, global_step + 1)
        if exp.step(action, stream.carried):
            stream.episode_ended()

        if global_step > args.learning_starts:
            batch = sequences.batch(exp, args, actor.recurrent)
            data = batch.data
            with torch.no_grad():
                next_actions = torch.tanh(batch.next_policy(target_actor)) * scale + bias
                if smoothing:  # clipped Gaussian noise on the target action
                    noise = torch.randn_like(data.actions) * args.policy_noise
                    noise = noise.clamp(-args.noise_clip, args.noise_clip)
                    next_actions = (next_actions + noise * scale).clamp(low_t, high_t)
                min_qf_next = qf_target(batch.next_critic(qf_target), next_actions).amin(0)
                next_q = data.rewards + (1 - data.terminations) * args.gamma * min_qf_next
            # sum over the critics of each one's mean squared error, as CleanRL's qf1_loss + qf2_loss
            qf_loss = batch.mean((qf(batch.critic(qf), data.actions) - next_q).square()).sum()
            q_optimizer.zero_grad()
            qf_loss.backward()
            q_optimizer.step()

            if global_step % args.policy_frequency == 0:
                actor_mode(True)  # training mode for this forward only: brevitas' warm-up counts these
                mean = batch.policy(actor)
                actor_mode(False)
                # the actor follows the first critic only (TD3); n=1 skips the second one's forward
                actor_loss = -batch.mean(qf(batch.critic(qf), torch.tanh(mean) * scale + bias, n=1)[0])
                actor_optimizer.zero_grad()
                actor_loss.backward(inputs=actor_params)  # the critics' weights need no gradient here
                actor_optimizer.step()
                actor_updates += 1

                soft_update(*actor_pairs, args.tau)
                sync_warmup(target_actor, actor)
                soft_update(*q_pairs, args.tau)

        step = global_step + 1
        if monitor.due(step):
            monitor.report(step, {"qf_loss": qf_loss, "actor_loss": actor_loss})
        if checkpoint.due(step):
            checkpoint.save(step, actor_updates=actor_updates)

    exp.env.close()
    return TrainResult(actor.eval().cpu(), exp.running.frozen(), exp.scale_np, exp.bias_np, monitor.history,
                       monitor.seconds, actor_updates)

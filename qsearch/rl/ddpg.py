"""DDPG, after CleanRL's ddpg_continuous_action.py, with the QAT actor and running observation
normalization (paper Section 3 and Appendix C). The single critic is a one-member QEnsemble."""
from __future__ import annotations

import torch

from qsearch.config import DDPGConfig, TrainConfig
from qsearch.quant.actor import QuantActor
from qsearch.rl.buffer import ReplayBuffer
from qsearch.rl.common import (ModeSwitch, Monitor, QEnsemble, TrainResult, actor_adam, check_action,
                               fused_adam, seed_everything, soft_update, sync_warmup, target_copy)
from qsearch.rl.envs import action_bias, action_scale, make_env
from qsearch.rl.normalize import RunningNorm


def train(cfg: TrainConfig, progress=None) -> TrainResult:
    args: DDPGConfig = cfg.algo_config
    torch.set_num_threads(1)  # one trial = one core
    seed_everything(cfg.seed)

    env = make_env(cfg.env_id, cfg.seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    scale_np, bias_np = action_scale(env.action_space), action_bias(env.action_space)
    scale, bias = torch.from_numpy(scale_np), torch.from_numpy(bias_np)
    low, high = env.action_space.low, env.action_space.high
    noise_std = scale * args.exploration_noise

    actor = QuantActor(obs_dim, act_dim, cfg.policy).eval()
    actor_mode = ModeSwitch(actor)
    target_actor = target_copy(actor)
    actor_pairs = (list(target_actor.parameters()), list(actor.parameters()))
    qf = QEnsemble(obs_dim, act_dim, args.critic_width, n=1)
    qf_target = target_copy(qf)
    q_pairs = (list(qf_target.parameters()), list(qf.parameters()))
    q_optimizer = fused_adam(qf.parameters(), args.learning_rate)
    actor_params = list(actor.parameters())
    actor_optimizer = actor_adam(actor_params, args.learning_rate)

    running = RunningNorm(obs_dim)
    rb = ReplayBuffer(obs_dim, act_dim, min(args.buffer_size, cfg.total_steps), cfg.seed)
    monitor = Monitor(cfg, progress, actor, running)
    qf_loss = actor_loss = None
    actor_updates = 0

    obs, _ = env.reset(seed=cfg.seed)
    running.update(obs)
    for global_step in range(cfg.total_steps):
        if global_step < args.learning_starts:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                x = torch.from_numpy(running(obs)[None])
                action = torch.tanh(actor(x))[0] * scale + bias
                action = torch.normal(0.0, noise_std) + action
            action = action.numpy().clip(low, high)
            check_action(action, global_step + 1)

        next_obs, reward, terminated, truncated, _ = env.step(action)
        running.update(next_obs)
        rb.add(obs, next_obs, action, reward, terminated)  # next_obs is the true last obs at episode end
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
            running.update(obs)

        if global_step > args.learning_starts:
            data = rb.sample(args.batch_size, running.frozen())
            with torch.no_grad():
                next_actions = torch.tanh(target_actor(data.next_obs)) * scale + bias
                qf_next = qf_target(data.next_obs, next_actions)[0]
                next_q = data.rewards + (1 - data.terminations) * args.gamma * qf_next
            qf_loss = (qf(data.obs, data.actions)[0] - next_q).square().mean()
            q_optimizer.zero_grad()
            qf_loss.backward()
            q_optimizer.step()

            if global_step % args.policy_frequency == 0:
                actor_mode(True)  # training mode for this forward only: brevitas' warm-up counts these
                mean = actor(data.obs)
                actor_mode(False)
                actor_loss = -qf(data.obs, torch.tanh(mean) * scale + bias)[0].mean()
                actor_optimizer.zero_grad()
                actor_loss.backward(inputs=actor_params)  # the critic's weights need no gradient here
                actor_optimizer.step()
                actor_updates += 1

                soft_update(*actor_pairs, args.tau)
                sync_warmup(target_actor, actor)
                soft_update(*q_pairs, args.tau)

        step = global_step + 1
        if monitor.due(step):
            monitor.report(step, {"qf_loss": qf_loss, "actor_loss": actor_loss})

    env.close()
    return TrainResult(actor.eval(), running.frozen(), scale_np, bias_np, monitor.history, monitor.seconds,
                       actor_updates)

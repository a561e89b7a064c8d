"""PPO through RLlib's PPO (new API stack) with qsearch's QAT actor (see ppo_module.py).

RLlib samples with `env_runners` remote environment runners (one CPU each) and learns in this process;
observations are normalized by RLlib's running mean/std connector, whose statistics are frozen into
the bundle's ObsNorm. Evaluation is qsearch's own deterministic evaluator on the learner's actor (not
the env runners' inference copy), so a PPO trial reports what SAC trials report.

The budget is rounded up to whole PPO iterations of num_steps environment steps each.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from qsearch import ray_session
from qsearch.config import PPOConfig, TrainConfig
from qsearch.errors import QsearchError
from qsearch.quant.actor import QuantActor
from qsearch.rl import checkpoint
from qsearch.rl.checkpoint import Checkpoints
from qsearch.rl.common import EVAL_SEED_OFFSET, TrainResult, diverged, seed_everything, torch_device
from qsearch.rl.envs import action_bias, action_scale, make_env
from qsearch.rl.evaluate import evaluate, torch_policy
from qsearch.obs_norm import ObsNorm
from qsearch.rl.ppo_module import ACTOR_PREFIX, TRAIN_CONFIG, TRAIN_FORWARDS, QuantPPOModule, use_full_brevitas_state

MODULE_ID = "default_policy"  # RLlib's single-agent module id
RLLIB_STD_EPS = 1e-6  # RLlib's MeanStdFilter divides by std + SMALL_NUMBER


def algorithm_config(cfg: TrainConfig, device="cpu"):
    """RLlib's PPOConfig for cfg: CleanRL's settings mapped onto RLlib's names. device: where RLlib's
    learner updates the module ("cuda" or "cuda:N": one GPU, num_gpus_per_learner; inside a Ray worker
    RLlib takes the GPU Ray assigned). The env runners act on the CPU."""
    from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
    from ray.rllib.connectors.env_to_module import MeanStdFilter
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    args: PPOConfig = cfg.algo_config
    lr = [[0, args.learning_rate], [_budget(cfg), 0.0]] if args.anneal_lr else args.learning_rate
    device = torch_device(device)
    model = {TRAIN_CONFIG: cfg.to_dict()}
    return (
        RLlibPPOConfig()
        .environment(cfg.env_id, normalize_actions=True, clip_actions=False)  # [-1, 1] -> the env's range
        .framework("torch")
        .env_runners(num_env_runners=args.env_runners, num_envs_per_env_runner=1, num_cpus_per_env_runner=1,
                     rollout_fragment_length="auto",
                     env_to_module_connector=lambda env, spaces, device: MeanStdFilter(clip_by_value=args.obs_clip))
        .learners(num_learners=0,  # the learner runs in this process (the trial's)
                  num_gpus_per_learner=1 if device.type == "cuda" else 0, local_gpu_idx=device.index or 0)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=QuantPPOModule, model_config=model))
        .training(train_batch_size_per_learner=args.num_steps, minibatch_size=args.num_steps // args.num_minibatches,
                  num_epochs=args.update_epochs, lr=lr, gamma=args.gamma, lambda_=args.gae_lambda,
                  clip_param=args.clip_coef, entropy_coeff=args.ent_coef, vf_loss_coeff=args.vf_coef,
                  vf_clip_param=args.vf_clip, grad_clip=args.max_grad_norm, grad_clip_by="global_norm",
                  use_kl_loss=False, kl_coeff=0.0)
        .debugging(seed=cfg.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=1)
    )


def _budget(cfg: TrainConfig) -> int:
    n = cfg.algo_config.num_steps
    return math.ceil(cfg.total_steps / n) * n


def learner_state(algo) -> dict:
    """The learner's module state (the trained one, not an env runner's inference copy)."""
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE

    path = f"{COMPONENT_LEARNER_GROUP}/{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}/{MODULE_ID}"
    state = algo.get_state(components=path)
    for key in path.split("/"):
        state = state[key]
    return state


def actor_from_state(state: dict, obs_dim: int, act_dim: int, policy) -> QuantActor:
    """The QuantActor inside a QuantPPOModule's state (numpy arrays, as RLlib keeps it)."""
    use_full_brevitas_state()
    actor = QuantActor(obs_dim, act_dim, policy)
    try:
        actor.load_state_dict({k[len(ACTOR_PREFIX):]: torch.as_tensor(np.asarray(v)) for k, v in state.items()
                               if k.startswith(ACTOR_PREFIX)})
    except RuntimeError as e:  # torch lists every problem on lines of their own: name the first
        problems = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        raise QsearchError(f"the actor's weights do not fit its configuration: {problems[0] if problems else e}") from None
    return actor.eval()


def connector_norm(pipeline_state: dict) -> ObsNorm:
    """The env-to-module pipeline's MeanStdFilter state -> the frozen ObsNorm: (obs - mean) / (std + 1e-6),
    as the filter normalized (without its clip)."""
    from ray.rllib.utils.filter import RunningStat

    (agent_state,) = pipeline_state["MeanStdFilter"].values()
    (stats,) = agent_state["running_stats"]
    rs = RunningStat.from_state(stats)
    return ObsNorm(np.asarray(rs.mean, np.float32), (np.asarray(rs.std, np.float64) + RLLIB_STD_EPS).astype(np.float32))


def current_norm(algo) -> ObsNorm:
    """The merged connector statistics the env runners normalize with now."""
    from ray.rllib.core import COMPONENT_ENV_RUNNER, COMPONENT_ENV_TO_MODULE_CONNECTOR

    state = algo.get_state(components=f"{COMPONENT_ENV_RUNNER}/{COMPONENT_ENV_TO_MODULE_CONNECTOR}")
    return connector_norm(state[COMPONENT_ENV_RUNNER][COMPONENT_ENV_TO_MODULE_CONNECTOR])


def train(cfg: TrainConfig, progress=None, checkpoints: Checkpoints | None = None, address: str | None = None,
          rllib_checkpoint: str | None = None, device="cpu") -> TrainResult:
    """checkpoints: RLlib's own checkpoints of the algorithm every `checkpoints.every` environment steps
    (at the first iteration boundary past each multiple), and the one to continue from.
    rllib_checkpoint: also save RLlib's checkpoint of the trained algorithm there (for `qsearch import`).
    device: the learner's (algorithm_config); the returned actor is rebuilt on the CPU from RLlib's
    NumPy state."""
    args: PPOConfig = cfg.algo_config
    seed_everything(cfg.seed)
    torch.set_num_threads(1)
    env = make_env(cfg.env_id, cfg.seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    scale, bias = action_scale(env.action_space), action_bias(env.action_space)
    env.close()

    ray_session.start(address, cpus=args.env_runners)  # RLlib's algorithm keeps it for the process
    algo = algorithm_config(cfg, device).build_algo()
    try:
        rows, step, earlier = [], 0, 0.0
        if checkpoints is not None and checkpoints.resume_from is not None:
            state = checkpoint.read_state(checkpoints.resume_from, cfg)
            # RLlib's checkpoint holds the module, the optimizer, the connectors' running statistics and
            # the iteration counters; the environments restart their episodes, so PPO continues from
            # its checkpoint but not bit for bit as an uninterrupted run would.
            algo.restore_from_path(os.path.abspath(checkpoints.resume_from / RLLIB_FOLDER))
            rows, step, earlier = state["monitor"]["rows"], state["step"], state["monitor"]["seconds"]
        next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
        started = time.perf_counter() - earlier
        while step < cfg.total_steps:
            t0 = time.perf_counter()
            result = algo.train()
            last, metrics = step, _iteration_metrics(algo, result, step, time.perf_counter() - t0)
            step = metrics["step"]
            if step >= next_eval or step >= cfg.total_steps:
                next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
                actor = actor_from_state(learner_state(algo), obs_dim, act_dim, cfg.policy)
                res = evaluate(torch_policy(actor), cfg.env_id,
                               current_norm(algo), cfg.eval_episodes, EVAL_SEED_OFFSET + cfg.seed)
                metrics["eval_return_mean"], metrics["eval_return_std"] = res.mean, res.std
            rows.append(metrics)
            if progress is not None:
                progress(dict(metrics))
            if checkpoints is not None and checkpoints.every and step < cfg.total_steps \
                    and step // checkpoints.every > last // checkpoints.every:
                monitor = {"rows": rows, "seconds": time.perf_counter() - started}
                checkpoints.save(step, lambda folder: _save(algo, folder, cfg, step, monitor))
        state, norm = learner_state(algo), current_norm(algo)
        if rllib_checkpoint is not None:
            algo.save_to_path(os.path.abspath(rllib_checkpoint))
    finally:
        algo.stop()
    history = [row for row in rows if "eval_return_mean" in row]
    return TrainResult(actor_from_state(state, obs_dim, act_dim, cfg.policy), norm, scale, bias, history,
                       time.perf_counter() - started, actor_updates=int(state[TRAIN_FORWARDS]))


RLLIB_FOLDER = "rllib"


def _save(algo, folder, cfg: TrainConfig, step: int, monitor: dict) -> None:
    algo.save_to_path(os.path.abspath(folder / RLLIB_FOLDER))
    checkpoint.write_state(folder, cfg, step, monitor)


def _iteration_metrics(algo, result: dict, last_step: int, seconds: float) -> dict:
    """One PPO iteration's progress report, named as the other learners name theirs (actor_loss is
    PPO's clipped surrogate loss); non-finite losses stop training."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, LEARNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    step = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
    losses = result[LEARNER_RESULTS][MODULE_ID]
    metrics = {"step": step, "steps_per_s": (step - last_step) / max(seconds, 1e-9),
               "actor_loss": float(losses["policy_loss"]), "vf_loss": float(losses["vf_loss"]),
               "entropy": float(losses["entropy"]), "env_runners": algo.env_runner_group.num_healthy_remote_workers()}
    for name in ("actor_loss", "vf_loss"):
        if not math.isfinite(metrics[name]):
            raise diverged(name, metrics[name], step)
    return metrics

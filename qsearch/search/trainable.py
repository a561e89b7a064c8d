"""The Ray Tune function trainable: one trial = one configuration x one seed = one pipeline.run.

Metrics go two ways: to Tune (tune.report, which the schedulers and the live view read) and to the
trial's nested MLflow run (metrics over environment steps, then the bundle as artifacts).
"""
from __future__ import annotations

import json
import traceback
from pathlib import Path

from qsearch.search import tracking
from qsearch.search.space import SearchSpace

# What Tune and MLflow receive from the learners' progress dict.
METRICS = ("steps_per_s", "eval_return_mean", "eval_return_std", "qf_loss", "actor_loss", "alpha")


def weight_bits(obs_dim: int, act_dim: int, policy) -> int:
    """Model cost for multi-objective search: total bits of the actor's weight matrices (FP32: 32)."""
    sizes = [obs_dim] + [policy.width] * policy.depth + [act_dim]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return weights * (32 if policy.quant is None else policy.quant.bits_weight)


def trial_params(space: SearchSpace, conf, seed: int) -> dict:
    q = conf.policy.quant
    return {"env_id": conf.env_id, "algo": space.algo, "fp32": q is None,
            "bits_in": "fp32" if q is None else q.bits_in, "bits_weight": "fp32" if q is None else q.bits_weight,
            "bits_act": "fp32" if q is None else q.bits_act, "bits_out": "fp32" if q is None else q.bits_out,
            "width": conf.policy.width, "depth": conf.policy.depth, "seed": seed, "steps": space.steps,
            "eval_every": space.eval_every, "eval_episodes": space.eval_episodes,
            "final_episodes": space.final_episodes, "configuration": conf.key,
            **{f"algo_config.{k}": v for k, v in vars(space.train_config(conf, seed).algo_config).items()}}


def train_trial(config: dict, space: SearchSpace, tracking_uri: str, experiment_id: str, parent_run_id: str):
    """config: {"configuration": Configuration.key, "seed": int} from the Tuner's param space."""
    import gymnasium as gym
    from ray import tune

    from qsearch import pipeline

    tracking.setup_environment()
    by_key = {c.key: c for c in space.configurations}
    conf, seed = by_key[config["configuration"]], int(config["seed"])
    cfg = space.train_config(conf, seed)
    ctx = tune.get_context()
    trial_dir = Path(ctx.get_trial_dir())
    done_file = trial_dir / "trial.json"
    if done_file.exists():
        # Finished under an earlier driver that was killed before Tune saved its state: report the
        # result again instead of training a second time.
        tracking.close_stale(tracking_uri, experiment_id, ctx.get_trial_id(), "FINISHED")
        tune.report({"step": cfg.total_steps, **json.loads(done_file.read_text())})
        return

    env = gym.make(cfg.env_id)
    cost = weight_bits(env.observation_space.shape[0], env.action_space.shape[0], conf.policy)
    env.close()

    client, run_id = tracking.start_child(tracking_uri, experiment_id, parent_run_id, ctx.get_trial_id(),
                                          f"{conf.key} seed {seed}", trial_params(space, conf, seed))
    last_return = [None]

    def progress(m: dict) -> None:
        step = int(m["step"])
        metrics = {k: m[k] for k in METRICS if m.get(k) is not None}
        tracking.log_metrics(client, run_id, metrics, step)
        if "eval_return_mean" in metrics:
            last_return[0] = metrics["eval_return_mean"]
        report = {"step": step, "cost": cost, **metrics}
        if last_return[0] is not None:  # schedulers and searchers compare this one
            report["eval_return"] = last_return[0]
        tune.report(report)

    try:
        # force: an earlier attempt of this trial (retry or resume) may have left a whole bundle.
        b = pipeline.run(cfg, trial_dir / "bundle", episodes=space.final_episodes, progress=progress, force=True)
        final = b.evaluation["torch"]["mean"]
        summary = {"final_return": final, "final_return_std": b.evaluation["torch"]["std"],
                   "train_seconds": b.evaluation["train_seconds"], "cost": cost}
        if "int" in b.evaluation:
            summary["final_return_int"] = b.evaluation["int"]["mean"]
        tracking.log_metrics(client, run_id, summary, cfg.total_steps)
        client.log_artifacts(run_id, str(trial_dir / "bundle"), artifact_path="bundle")
        done = {"eval_return": final, **summary}
        tmp = trial_dir / "trial.json.tmp"
        tmp.write_text(json.dumps(done) + "\n")
        tmp.replace(done_file)  # whole or absent: it marks the trial as done
        client.set_terminated(run_id, "FINISHED")
    except BaseException as e:
        # Recorded on the child run, then re-raised so that Tune retries or marks the trial failed.
        client.set_tag(run_id, "qsearch.error", f"{type(e).__name__}: {e}"[:5000])
        client.set_terminated(run_id, "FAILED")
        (trial_dir / "error.txt").write_text(traceback.format_exc())
        raise
    tune.report({"step": cfg.total_steps, **done})

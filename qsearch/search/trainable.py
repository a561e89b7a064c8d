"""The Ray Tune function trainable: one trial = one configuration x one seed = one pipeline.run.

Metrics go two ways: to Tune (tune.report, which the schedulers and the live view read) and to the
trial's nested MLflow run (metrics over environment steps, then the bundle as artifacts).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from qsearch.search import tracking
from qsearch.search.space import SearchSpace

# What Tune and MLflow receive from the learners' progress dict.
DONE_MARKER = "trial.json"  # in the trial's storage folder; written last, it marks the trial as done
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
    started = time.perf_counter()
    import gymnasium as gym
    from ray import tune

    from qsearch import pipeline

    tracking.setup_environment()
    by_key = {c.key: c for c in space.configurations}
    conf, seed = by_key[config["configuration"]], int(config["seed"])
    cfg = space.train_config(conf, seed)
    ctx = tune.get_context()
    # The trial's folder in Tune's storage (a local or shared folder, or a bucket), reached through
    # Tune's own filesystem handle. Not ctx.get_trial_dir(): that is a local working folder, and an
    # actor reused for the next trial may keep it (measured with ray 2.60).
    storage = ctx.get_storage()
    fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
    done = _read_marker(fs, trial_path)
    if done is not None:
        # Finished under an earlier driver that was killed before Tune saved its state: report the
        # result again instead of training a second time.
        tracking.close_stale(tracking_uri, experiment_id, ctx.get_trial_id(), "FINISHED")
        tune.report({"step": cfg.total_steps, **done})
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

    local = Path(tempfile.mkdtemp(prefix="qsearch-trial-"))
    try:
        work_started = time.perf_counter()
        b = pipeline.run(cfg, local / "bundle", episodes=space.final_episodes, progress=progress)
        work_seconds = time.perf_counter() - work_started
        final = b.evaluation["torch"]["mean"]
        summary = {"final_return": final, "final_return_std": b.evaluation["torch"]["std"],
                   "train_seconds": b.evaluation["train_seconds"], "work_seconds": work_seconds, "cost": cost}
        if "int" in b.evaluation:
            summary["final_return_int"] = b.evaluation["int"]["mean"]
        tracking.log_metrics(client, run_id, summary, cfg.total_steps)
        client.log_artifacts(run_id, str(local / "bundle"), artifact_path="bundle")
        _copy_bundle(local / "bundle", fs, f"{trial_path}/bundle")
        done = {"eval_return": final, **summary, "trial_seconds": time.perf_counter() - started}
        _write_marker(fs, trial_path, done)  # last: it marks the trial as done
        client.set_terminated(run_id, "FINISHED")
    except SystemExit:
        # A scheduler (ASHA) stopping the trial: Tune's report() ends the trial's thread with
        # sys.exit(0). Not a failure.
        client.set_tag(run_id, "qsearch.stopped", "stopped early by the scheduler")
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as e:
        # Recorded on the child run, then re-raised so that Tune retries or marks the trial failed.
        client.set_tag(run_id, "qsearch.error", f"{type(e).__name__}: {e}"[:5000])
        client.set_terminated(run_id, "FAILED")
        _write_text(fs, f"{trial_path}/error.txt", traceback.format_exc())
        raise
    finally:
        shutil.rmtree(local, ignore_errors=True)
    tune.report({"step": cfg.total_steps, **done})


# The done marker and the bundle copy go through pyarrow's filesystem, as Tune's own files do, so a
# trial on any node writes to the search's storage whether it is a local folder, NFS or s3://.

def _read_marker(fs, trial_path: str) -> dict | None:
    import pyarrow.fs as pafs

    path = f"{trial_path}/{DONE_MARKER}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def _write_text(fs, path: str, text: str) -> None:
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def _write_marker(fs, trial_path: str, done: dict) -> None:
    tmp = f"{trial_path}/{DONE_MARKER}.tmp"
    _write_text(fs, tmp, json.dumps(done) + "\n")
    fs.move(tmp, f"{trial_path}/{DONE_MARKER}")  # whole or absent


def _copy_bundle(local: Path, fs, dest: str) -> None:
    import pyarrow.fs as pafs

    fs.create_dir(dest, recursive=True)
    pafs.copy_files(str(local), dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

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

from qsearch import trial_record as record
from qsearch import tracking
from qsearch.search.space import SearchSpace

DONE_MARKER = "trial.json"  # in the trial's storage folder; written last, it marks the trial as done


def weight_bits(obs_dim: int, act_dim: int, policy) -> int:
    """Model cost for multi-objective search: total bits of the actor's weight matrices (FP32: 32)."""
    sizes = [obs_dim] + [policy.width] * policy.depth + [act_dim]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return weights * (32 if policy.quant is None else policy.quant.bits_weight)


def train_trial(config: dict, space: SearchSpace, tracking_uri: str, experiment_id: str, parent_run_id: str):
    """config: {"configuration": Configuration.key, "seed": int} from the Tuner's param space."""
    started = time.perf_counter()
    import pyarrow.fs as pafs
    from ray import tune

    from qsearch import pipeline
    from qsearch.rl.envs import log_mujoco_to, make_env

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
    log_mujoco_to(trial_path if isinstance(fs, pafs.LocalFileSystem) else ctx.get_trial_dir())
    done = _read_marker(fs, trial_path)
    if done is not None:
        # Finished under an earlier driver that was killed before Tune saved its state: report the
        # result again instead of training a second time.
        record.close_stale(tracking_uri, experiment_id, ctx.get_trial_id(), "FINISHED")
        tune.report({"step": cfg.total_steps, **done})
        return

    env = make_env(cfg.env_id, seed)
    cost = weight_bits(env.observation_space.shape[0], env.action_space.shape[0], conf.policy)
    env.close()

    client, run_id = record.start_trial(tracking_uri, experiment_id, parent_run_id, ctx.get_trial_id(),
                                        f"{conf.key} seed {seed}", space.trial_params(conf, seed))
    metrics_log = record.ProgressLog(tracking_uri, client, run_id)  # buffered: a stopped server holds nothing up
    last_return = [None]

    def progress(m: dict) -> None:
        step = int(m["step"])
        metrics = {k: m[k] for k in record.PROGRESS_METRICS if m.get(k) is not None}
        metrics_log.log(metrics, step)
        if record.EVAL_RETURN in metrics:
            last_return[0] = metrics[record.EVAL_RETURN]
        report = {"step": step, "cost": cost, **metrics}
        if last_return[0] is not None:  # schedulers and searchers compare this one
            report["eval_return"] = last_return[0]
        tune.report(report)

    local = Path(tempfile.mkdtemp(prefix="qsearch-trial-"))
    try:
        work_started = time.perf_counter()
        b = pipeline.run(cfg, local / "bundle", episodes=space.final_episodes, progress=progress)
        work_seconds = time.perf_counter() - work_started
        summary = record.trial_summary(b.evaluation, work_seconds, cost)
        metrics_log.flush()
        record.finish_trial(client, run_id, summary, cfg.total_steps, str(local / "bundle"))
        _copy_bundle(local / "bundle", fs, f"{trial_path}/bundle")
        done = {"eval_return": summary[record.FINAL_RETURN], **summary, "trial_seconds": time.perf_counter() - started}
        _write_marker(fs, trial_path, done)  # last: it marks the trial as done
        record.end_trial(client, run_id)
    except SystemExit:
        # A scheduler (ASHA) stopping the trial: Tune's report() ends the trial's thread with
        # sys.exit(0). Not a failure. Its progress up to the stop is what the scheduler judged: sent first.
        metrics_log.flush()
        record.end_trial(client, run_id, stopped="stopped early by the scheduler")
        raise
    except BaseException as e:
        # Recorded on the child run with its progress so far, then re-raised so that Tune retries or marks
        # the trial failed. A store that has not answered for PATIENCE gets one more try, not another
        # wait: the driver's finish_search marks a run left RUNNING as KILLED.
        gone = isinstance(e, record.StoreUnreachable)
        try:
            if not gone:
                metrics_log.flush()
            record.end_trial(client, run_id, error=f"{type(e).__name__}: {e}", patience=0 if gone else None)
        except record.StoreUnreachable:
            pass
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

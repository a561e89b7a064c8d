"""The Ray Tune function trainable: one trial = one configuration x one seed = one pipeline.run.

Metrics go two ways: to Tune (tune.report, which the schedulers and the live view read) and to the
trial's nested MLflow run (metrics over environment steps, then the bundle as artifacts).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from qsearch import trial_record as record
from qsearch import tracking
from qsearch.search.space import SearchSpace

DONE_MARKER = "trial.json"  # in the trial's storage folder; written last, it marks the trial as done


def policy_bits(obs_dim: int, act_dim: int, policy) -> int:
    """Model cost for multi-objective search: the bits the actor holds, its weight matrices' (FP32: 32
    per weight), or a logic circuit's truth tables (2^k bits per k-input table; quant/lut_actor.py)."""
    if policy.lut:
        return sum(policy.luts) * 2**policy.lut_inputs
    sizes = [obs_dim] + [policy.width] * policy.depth + [act_dim]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return weights * (32 if policy.quant is None else policy.quant.bits_weight)


def trial_device(gpu: float, gpu_ids: list, cuda_available: bool) -> tuple[str, str | None]:
    """Where a trial trains, from the GPUs its space asks for, the ids Ray assigned it
    (ray.get_gpu_ids()) and whether torch sees CUDA: "cuda" when both say yes (Ray sets
    CUDA_VISIBLE_DEVICES to the trial's GPUs, so it is cuda:0 in the worker), else "cpu", with a
    line saying why when a GPU was asked for and not used."""
    if not gpu:
        return "cpu", None
    if gpu_ids and cuda_available:
        return "cuda", None
    why = "Ray assigned it none" if not gpu_ids else \
        f"torch sees no CUDA device (Ray assigned GPU {', '.join(map(str, gpu_ids))})"
    return "cpu", f"resources.gpu is {gpu:g} but {why}: training on the CPU"


def train_trial(config: dict, space: SearchSpace, tracking_uri: str, experiment_id: str, parent_run_id: str,
                share_running: bool = False):
    """config: {"configuration": Configuration.key, "seed": int} from the Tuner's param space.
    share_running (a selection's stages): wait for a run of the same trial that another search is
    training, and take its result instead of training it too (trial_record.claim)."""
    started = time.perf_counter()
    import pyarrow.fs as pafs
    import ray
    import torch
    from ray import tune

    from qsearch import pipeline
    from qsearch.rl.checkpoint import read_state
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

    env = make_env(cfg.env_id, seed, cfg.observe)
    cost = policy_bits(env.observation_space.shape[0], env.action_space.shape[0], conf.policy)
    env.close()

    params = space.trial_params(conf, seed)
    client, run_id = record.start_trial(tracking_uri, experiment_id, parent_run_id, ctx.get_trial_id(),
                                        f"{conf.key} seed {seed}", params)
    if share_running:
        reused = _claim(client, tracking_uri, run_id, record.trial_key(params))
        if reused is not None:
            tune.report({"step": cfg.total_steps, "eval_return": reused.final_return, **reused.summary,
                         record.REUSED_RESULT: 1})
            return
    device, note = trial_device(space.resources.gpu, ray.get_gpu_ids(), torch.cuda.is_available())
    if note is not None:
        print(f"qsearch: {note}", file=sys.stderr, flush=True)  # the worker's log
    record.trained_on(client, run_id, device, note)
    metrics_log = record.ProgressLog(tracking_uri, client, run_id)  # buffered: a stopped server holds nothing up
    last = {"return": None, "report": {}}

    def log(m: dict) -> dict:
        """A progress row into the trial's MLflow run; returns what Tune is told of it."""
        step = int(m["step"])
        metrics = {k: m[k] for k in record.PROGRESS_METRICS if m.get(k) is not None}
        metrics_log.log(metrics, step)
        record.heartbeat(client, run_id)  # this trial's claim is alive
        if record.EVAL_RETURN in metrics:
            last["return"] = metrics[record.EVAL_RETURN]
        report = {"step": step, "cost": cost, **metrics}
        if last["return"] is not None:  # schedulers and searchers compare this one
            report["eval_return"] = last["return"]
        last["report"] = report
        return report

    def progress(m: dict) -> None:
        tune.report(log(m))

    local = Path(tempfile.mkdtemp(prefix="qsearch-trial-"))
    try:
        checkpoints = TuneCheckpoints(space.checkpoint_every, lambda: last["report"], local)
        if checkpoints.resume_from is not None:
            # This attempt's run gets the rows the earlier attempts logged before the checkpoint, so
            # the trial's FINISHED run holds its whole history.
            state = read_state(checkpoints.resume_from)
            record.continued(client, run_id, state["step"])
            for row in state["monitor"]["rows"]:
                log(row)
        work_started = time.perf_counter()
        b = pipeline.run(cfg, local / "bundle", episodes=space.final_episodes, progress=progress,
                         checkpoints=checkpoints, device=device)
        work_seconds = time.perf_counter() - work_started
        summary = record.trial_summary(b.evaluation, work_seconds, cost)
        metrics_log.flush()
        record.finish_trial(client, run_id, summary, cfg.total_steps, str(local / "bundle"))
        _copy_bundle(local / "bundle", fs, f"{trial_path}/bundle")
        done = {"eval_return": summary[record.FINAL_RETURN], **summary, "trial_seconds": time.perf_counter() - started}
        _write_marker(fs, trial_path, done)  # last: it marks the trial as done
        _remove_checkpoints(fs, trial_path)  # served: a 1M-step trial's are ~100 MB each
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


class TuneCheckpoints:
    """A trial's learner checkpoints (rl/checkpoint.py) through Tune's checkpoint API, into the trial's
    storage (local folder, NFS or bucket); Tune keeps the latest CHECKPOINTS_KEPT (search/run.py). A retried trial
    and an unfinished trial of a resumed search get the latest back from tune.get_checkpoint().

    A checkpoint is reported with the metrics of the progress report of its step, so Tune sees that
    step twice: harmless to ASHA (it counts steps, and a trial once per rung) and to the live view."""

    def __init__(self, every: int, last_report, local: Path):
        from ray import tune

        self.every, self.last_report = every, last_report
        latest = tune.get_checkpoint()
        self.resume_from = Path(latest.to_directory(str(local / "resume"))) if latest is not None else None

    def save(self, step: int, write) -> None:
        from ray import tune

        from qsearch.rl.checkpoint import write_error

        folder = Path(tempfile.mkdtemp(prefix="qsearch-checkpoint-"))
        try:
            write(folder)
            tune.report(self.last_report(), checkpoint=tune.Checkpoint.from_directory(str(folder)))
        except OSError as e:
            raise write_error(step, "the trial's storage", e, "Tune's latest") from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _remove_checkpoints(fs, trial_path: str) -> None:
    import pyarrow.fs as pafs

    for info in fs.get_file_info(pafs.FileSelector(trial_path)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
            fs.delete_dir(info.path)


def _claim(client, uri: str, run_id: str, key: str):
    """The finished trial to reuse, after waiting for another search's live run of the same trial
    (trial_record.claim); None: train it. While it waits the trial reports step 0 to Tune, so that a
    lazy stage can still stop it once its value is not needed."""
    from ray import tune

    try:
        reused = record.claim(uri, key, run_id, waiting=lambda: tune.report({"step": 0}))
    except SystemExit:  # stopped by Tune while waiting (see train_trial)
        record.end_trial(client, run_id, stopped="stopped while waiting for another search's run of the trial")
        raise
    except BaseException as e:
        record.end_trial(client, run_id, error=f"{type(e).__name__}: {e}")
        raise
    if reused is not None:
        record.end_reused(client, run_id, reused)
    return reused


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

"""Set up and run a search: Ray, the Tuner (searcher, scheduler, resources, retries), MLflow's parent run.

The search's working folder holds what a resume needs:
  search.json   the space file, tracking URI, storage path, MLflow experiment and parent run
  mlflow.db     the default MLflow store (SQLite), mlartifacts/ its artifacts
  ray/<name>/   Tune's experiment (unless --storage points elsewhere): trial folders with bundles
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from qsearch import ray_session, run_folder, tracking
from qsearch import trial_record as record
from qsearch.errors import QsearchError
from qsearch.config import CHECKPOINTS_KEPT
from qsearch.search import space as spaces

LEARNER_MEMORY = 256 * 2**20  # bytes a PPO trial's learner reserves (its placement group's bundle 0)


@dataclass
class SearchResult:
    rows: list[dict]
    table: str
    parent_run_id: str
    tracking_uri: str
    experiment_path: str


def _param_space(space: spaces.SearchSpace, only=None) -> dict:
    from ray import tune

    keys = [c.key for c in space.configurations]
    if space.search.searcher == "grid" and not only:  # every configuration x every seed, once
        # Expected-longest first (logic circuits, then QAT, then FP32, larger before smaller), so that the
        # last round does not leave slots idle behind one slow trial.
        slow_first = sorted(space.configurations, reverse=True, key=lambda c: (
            c.policy.lut, c.policy.quant is not None,
            sum(c.policy.luts) if c.policy.lut else c.policy.width * c.policy.depth))
        return {"configuration": tune.grid_search([c.key for c in slow_first]),
                "seed": tune.grid_search(list(space.seeds))}
    # Optuna picks a configuration (a categorical over the space's configurations) and a seed.
    return {"configuration": tune.choice(keys), "seed": tune.choice(list(space.seeds))}


def _tune_config(space: spaces.SearchSpace, only=None, searcher=None):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    s = space.search
    scheduler = None
    if s.scheduler == "asha":
        # time_attr "step": the grace period and rungs are counted in environment steps. max_t is one
        # past the budget: ASHA stops a trial that reaches max_t, which would cut off its final
        # evaluation and bundle.
        scheduler = ASHAScheduler(time_attr="step", metric="eval_return", mode="max", max_t=space.steps + 1,
                                  grace_period=s.grace_steps, reduction_factor=s.reduction_factor)
    # reuse_actors: a worker runs trial after trial, so torch, brevitas and MLflow are imported once
    # per worker rather than once per trial (~6 s each, measured).
    common = dict(scheduler=scheduler, max_concurrent_trials=s.max_concurrent or None, reuse_actors=True)
    if s.searcher == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        metrics = ["eval_return" if o == "return" else "cost" for o in s.objectives]
        modes = ["max" if o == "return" else "min" for o in s.objectives]
        searcher = OptunaSearch(metric=metrics if len(metrics) > 1 else metrics[0],
                                mode=modes if len(modes) > 1 else modes[0], sampler=TPESampler(seed=0))
        return tune.TuneConfig(search_alg=searcher, num_samples=s.num_samples, **common)
    if searcher is not None:
        # A searcher that decides the trials as it goes (a lazy selection stage): Tune asks it for
        # trials until it says Searcher.FINISHED.
        return tune.TuneConfig(search_alg=searcher, num_samples=-1, **common)
    if only:
        # A subset of the grid (qsearch select skips trials done before): each given point is one
        # trial, and num_samples = len(points) leaves nothing to sample beyond them.
        from ray.tune.search.basic_variant import BasicVariantGenerator

        points = [{"configuration": k, "seed": seed} for k, seed in only]
        return tune.TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=points),
                               num_samples=len(points), **common)
    return tune.TuneConfig(num_samples=1, **common)


def _trainable(space, uri, experiment_id, parent_run_id, share_running=False):
    from ray import tune

    from qsearch.search.trainable import train_trial

    res = {"cpu": space.resources.cpu}
    if space.resources.gpu:
        res["gpu"] = space.resources.gpu
    t = tune.with_parameters(train_trial, space=space, tracking_uri=uri, experiment_id=experiment_id,
                             parent_run_id=parent_run_id, share_running=share_running)
    return tune.with_resources(t, _ppo_resources(space) if space.algo == "ppo" else res)


def _ppo_resources(space: spaces.SearchSpace):
    """One placement group per PPO trial, reserved together (on a cluster its env runners may sit on
    several nodes): bundle i holds env runner i, one CPU each, as RLlib places them. Bundle 0, the
    trial itself with its learner, reserves memory but no CPU: PPO samples and learns in turn, so the
    learner uses the CPUs its env runners leave idle while it updates, and `cpu: N` stays N CPUs.
    (An empty bundle 0 would be dropped by Tune and shift RLlib's indices.)"""
    from ray import tune

    head = {"memory": LEARNER_MEMORY, **({"GPU": space.resources.gpu} if space.resources.gpu else {})}
    return tune.PlacementGroupFactory([head] + [{"CPU": 1}] * space.algo_config.env_runners, strategy="PACK")


def search(space: spaces.SearchSpace | str | Path, workdir: str | Path | None = None, address: str | None = None,
           storage: str | None = None, tracking_uri: str | None = None, resume: bool = False,
           only: list[tuple[str, int]] | None = None, searcher=None, total: int | None = None,
           share_running: bool = False) -> SearchResult:
    """space: a space file, or a validated SearchSpace (a selection's stage; its `path` names its record).
    only: (configuration key, seed) pairs of a grid space to run instead of the whole grid.
    searcher: a Tune Searcher that suggests the trials instead (its `stopper` stops running ones), of
    at most `total` trials (qsearch/select/searcher.py).
    share_running: a trial that another search is training at the same time is waited for and its
    result taken, not trained twice (a selection's stages; qsearch/trial_record.py claim)."""
    if not isinstance(space, spaces.SearchSpace):
        space = spaces.load(space)  # refused here, before Ray starts
    workdir = run_folder.of(space.name, workdir)
    total = total or (len(only) if only else space.trials)
    state_file = workdir / run_folder.SEARCH_STATE
    if resume:
        if not state_file.exists():
            raise QsearchError(f"{workdir}: no search to resume (no {run_folder.SEARCH_STATE}); "
                               "start one without --resume")
        state = run_folder.state(workdir, run_folder.SEARCH)
        if state["space_name"] != space.name:
            raise QsearchError(f"{workdir} holds search {state['space_name']!r}, not {space.name!r}")
        uri = tracking_uri or state["tracking_uri"]
        storage_path = storage or state["storage"]
    else:
        if state_file.exists():
            raise QsearchError(f"{workdir} already holds a search: use --resume, or another --workdir")
        uri = tracking_uri or tracking.default_uri(workdir)
        storage_path = storage or str(workdir / "ray")
    workdir.mkdir(parents=True, exist_ok=True)
    tracking.setup_environment()

    experiment_id = tracking.experiment(uri, space.name, workdir)
    if resume:
        parent = state["parent_run_id"]
    else:
        parent = record.start_search(uri, experiment_id, space.name, {
            "space": str(Path(space.path).resolve()), "space_name": space.name, "algo": space.algo,
            "steps": space.steps, "seeds": list(space.seeds), "configurations": len(space.configurations),
            "trials": space.trials, "searcher": space.search.searcher, "scheduler": space.search.scheduler})
        state = {"space_name": space.name, "space": str(Path(space.path).resolve()), "tracking_uri": uri,
                 "storage": storage_path, "experiment_id": experiment_id, "parent_run_id": parent}
        run_folder.write_json(state_file, state)

    from ray import tune

    from qsearch.search.summary import LiveView, rows, table

    # Tune's console output (a "Configuration for experiment" box and a TensorBoard hint that does
    # not apply: qsearch tracks in MLflow) prints whatever `verbose` says; the legacy reporter obeys
    # verbose=0, and LiveView says what is running.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    with ray_session.session(address):
        trainable = _trainable(space, uri, experiment_id, parent, share_running)
        experiment_path = f"{storage_path.rstrip('/')}/{space.name}"
        if resume and tune.Tuner.can_restore(experiment_path):
            # Finished and failed trials stay as they are; unfinished ones continue from their latest
            # checkpoint (or start again if they had none).
            tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=False, param_space=_param_space(space))
        else:
            tuner = tune.Tuner(
                trainable, param_space={} if searcher else _param_space(space, only),
                tune_config=_tune_config(space, only, searcher),
                run_config=tune.RunConfig(
                    name=space.name, storage_path=storage_path, verbose=0,
                    failure_config=tune.FailureConfig(max_failures=space.retries),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                    stop=getattr(searcher, "stopper", None), callbacks=[LiveView(total)]))
        results = tuner.fit()
        LiveView(total).print_results(results)

    trial_rows = rows(results)
    text = table(trial_rows)
    _finish_parent(uri, experiment_id, parent, trial_rows, text, workdir)
    return SearchResult(trial_rows, text, parent, uri, experiment_path)


def _finish_parent(uri, experiment_id, parent, trial_rows, text, workdir):
    (workdir / "summary.txt").write_text(text + "\n")
    (workdir / "trials.json").write_text(json.dumps(trial_rows, indent=2) + "\n")
    record.finish_search(uri, experiment_id, parent, [r["final_return"] for r in trial_rows if r["status"] == "done"],
                         sum(r["status"] == "failed" for r in trial_rows),
                         [str(workdir / "summary.txt"), str(workdir / "trials.json")])

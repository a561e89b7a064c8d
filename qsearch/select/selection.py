"""`qsearch select`: the three selection stages as Ray Tune searches, then noise robustness.

The selection's folder (default runs/<name>) holds:
  select.json         the selection space, tracking URI, MLflow experiment and this selection's run
  mlflow.db           the tracking store every stage shares (with mlartifacts/)
  stages/<stage>.yaml each stage's generated search space
  stages/<stage>-<k>/ the stage's k-th search (only when it had something to train)
  selection.json      the outcome: every stage's candidates and verdicts, the picks, run ids
  selection.md        the stage tables and the Table-1-like summary
  noise.json          noise robustness curves of the selected and FP32 models

Nothing is trained twice: before each stage, every configuration x seed that an identical finished
trial in the store already answers (same params, from any search) is reused, and only the rest goes
to Ray Tune. A second `qsearch select` of the same space therefore trains nothing, and an
interrupted one carries on where it stopped.

Stages are lazy (qsearch/select/lazy.py): a stage's Tune search takes its trials from a searcher
that trains the values from the smallest up and stops once one matches FP32 (qsearch/select/
searcher.py), with the same selection as the full grid. The end of a selection prints the
environment steps it spent beside the full grid's, and logs both to its MLflow run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import yaml

from qsearch import locate, tracking
from qsearch import trial_record as record
from qsearch.errors import QsearchError
from qsearch.search import space as spaces
from qsearch.select import spec, stages
from qsearch.select.parity import Rule

STATE = "select.json"
OUTCOME = "selection.json"


def select(space_path: str | Path, workdir: str | Path | None = None, tracking_uri: str | None = None,
           address: str | None = None, rule: Rule | None = None, noise: bool = True, stream=None,
           storage: str | None = None) -> dict:
    sel = spec.load(space_path)  # refused here, before anything starts
    if rule is not None:
        sel = dataclasses.replace(sel, rule=rule)
    out = stream or sys.stdout
    workdir = Path(workdir or Path("runs") / sel.name).resolve()
    uri = _state(workdir, sel, space_path, tracking_uri)
    experiment_id = tracking.experiment(uri, sel.name, workdir)
    run_id = record.start_selection(uri, experiment_id, f"{sel.name} selection", {
        "space": str(Path(space_path).resolve()), "rule": sel.rule.describe(), "core_bits": list(sel.core_bits),
        "widths": list(sel.widths), "input_bits": list(sel.input_bits), "min_seeds": sel.min_seeds,
        "speculation": "all" if sel.speculation is None else sel.speculation, "early_reject": sel.early_reject,
        "adaptive_seeds": sel.adaptive_seeds, "adaptive_margin": sel.adaptive_margin})
    c = tracking.client(uri)
    _write_json(workdir / STATE, {**json.loads((workdir / STATE).read_text()), "selection_run_id": run_id,
                                  "experiment_id": experiment_id})
    try:
        outcome = _stages(sel, workdir, uri, address, storage, out)
        cost = outcome["cost"]
        record.log_selection_cost(uri, run_id, cost["spent"], cost["reused"], cost["grid"])
        record.set_selected(uri, sel.envs, [t["run_id"] for s in outcome["selected"].values() for t in s["trials"]],
                            sel.name)
        if noise and outcome["selected"]:
            print(f"[{time.strftime('%H:%M:%S')}] noise robustness: sigma {list(sel.noise_sigmas)}, "
                  f"{sel.noise_episodes} episodes per model", file=out, flush=True)
            _noise(sel, outcome, uri, address, workdir)
        text = "\n\n".join(outcome["stage_tables"] + [stages.selection_table(outcome), stages.cost_line(cost)])
        _write_json(workdir / OUTCOME, outcome)
        (workdir / "selection.md").write_text(text + "\n")
        for name in (OUTCOME, "selection.md", "noise.json"):
            if (workdir / name).exists():
                c.log_artifact(run_id, str(workdir / name))
        c.set_terminated(run_id, "FINISHED")
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    print(stages.selection_table(outcome), file=out, flush=True)
    print(stages.cost_line(outcome["cost"]), file=out, flush=True)
    return outcome


def _state(workdir: Path, sel, space_path, tracking_uri) -> str:
    """The folder's tracking URI: kept from an earlier selection of the same space, else a new store."""
    state_file = workdir / STATE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state["space_name"] != sel.name:
            raise QsearchError(f"{workdir} holds selection {state['space_name']!r}, not {sel.name!r}: "
                               "use another --workdir")
        if tracking_uri and tracking_uri != state["tracking_uri"]:
            raise QsearchError(f"{workdir} tracks in {state['tracking_uri']}, not {tracking_uri}")
        return state["tracking_uri"]
    if (workdir / "search.json").exists():
        raise QsearchError(f"{workdir} holds a search, not a selection: use another --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or tracking.default_uri(workdir)
    _write_json(state_file, {"space_name": sel.name, "space": str(Path(space_path).resolve()), "tracking_uri": uri})
    return uri


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _stage_space(sel, stage: str, picks: dict, workdir: Path) -> tuple[Path, spaces.SearchSpace]:
    folder = workdir / "stages"
    folder.mkdir(exist_ok=True)
    path = folder / f"{stage}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"# Stage {stage} of selection {sel.name}, generated from {sel.path}\n"
                   + yaml.safe_dump(sel.stage_data(stage, picks), sort_keys=False))
    os.replace(tmp, path)
    return path, spaces.load(path)


def _run_stage(sel, stage: str, path: Path, space, fixed_fp32: dict, uri: str, address, storage,
               workdir: Path, out, cost: dict):
    """Feed the stage's lazy decision with what the store holds, train what it still wants, and
    return it decided, with the store's index of finished trials."""
    from qsearch.search.run import search
    from qsearch.select import lazy
    from qsearch.select.searcher import LazySearcher

    index = record.Index(record.read_trials(uri))
    lz = lazy.stage_of(sel, stage, space)
    lz.fixed_fp32.update(fixed_fp32)
    rejected = {k: (conf, seed, d) for k, seed, conf, d in record.rejected_trials(uri)} if sel.early_reject else {}
    c = tracking.client(uri)
    grid = [(conf, seed) for conf in space.configurations for seed in space.seeds]
    found = 0
    for conf, seed in grid:
        params = space.trial_params(conf, seed)
        key = record.trial_key(params)
        first_time = key not in cost["grid_keys"]  # not the pick of an earlier stage, counted there
        cost["grid_keys"].add(key)
        t = index.find(params)
        if t is not None:
            found += 1
            cost["reused"] += space.steps if first_time else 0
            curve = record.eval_history(c, t.run_id) if sel.early_reject and conf.policy.quant is None else None
            lz.end(conf.key, seed, t.final_return, curve)
        elif key in rejected:
            lz.reject(conf.key, seed, rejected[key][2])
    cost["grid"] = len(cost["grid_keys"]) * space.steps
    done = lz.next_trial() == lazy.FINISHED
    how = "the full grid" if sel.speculation is None else f"lazily, speculation {sel.speculation}"
    todo = "0 to train" if done else f"at most {len(grid) - found} to train ({how})"
    print(f"[{time.strftime('%H:%M:%S')}] stage {stage}: {len(grid)} trials, {found} reused from the tracking "
          f"store, {todo}", file=out, flush=True)
    if done:
        return lz, index
    k = 1
    while (workdir / "stages" / f"{stage}-{k}").exists():  # one folder per search: never resume a foreign one
        k += 1
    name = f"{stage}-{k}"
    searcher = LazySearcher(lz)
    # On a cluster each stage's Tune results go to shared storage too, one folder per stage search.
    search(path, workdir=workdir / "stages" / name, address=address, tracking_uri=uri, searcher=searcher,
           total=len(grid) - found, storage=f"{storage.rstrip('/')}/{workdir.name}/{name}" if storage else None)
    record.mark_stopped(uri, searcher.stopped)
    cost["spent"] += searcher.steps_spent
    cost["trained"] += len(searcher.trials)
    cost["stopped"] += len(searcher.stopped)
    return searcher.stage, record.Index(record.read_trials(uri))


def _stages(sel, workdir: Path, uri: str, address, storage, out) -> dict:
    outcome = {"space": sel.name, "rule": sel.rule.describe(), "stages": {}, "stage_tables": [],
               "fp32": {}, "selected": {}, "unmatched": {}}
    cost = {"spent": 0, "reused": 0, "grid": 0, "trained": 0, "stopped": 0, "grid_keys": set()}
    picks: dict[str, tuple[int, int]] = {}  # env -> (core bits, width)
    fixed_fp32: dict[str, list] = {}  # env -> [(final return, curve)]: stage 1's FP32, for the later stages
    for stage in spec.STAGES:
        if stage != "core" and not picks:
            break  # no environment got past stage 1: nothing left to train
        path, space_s = _stage_space(sel, stage, picks, workdir)
        lz, index = _run_stage(sel, stage, path, space_s, fixed_fp32, uri, address, storage, workdir, out, cost)
        if stage == "core":
            fp32 = {env: stages.fp32_baseline(space_s, env, index, sel.min_seeds) for env in sel.envs}
            outcome["fp32"] = {env: _trials_json(t) for env, t in fp32.items()}
            fixed_fp32 = lz.fp32_results()
        result = lz.outcomes()
        text = f"Stage {stage}\n" + stages.table(list(result.values()), sel.rule)
        print(text, file=out, flush=True)
        outcome["stage_tables"].append(text)
        outcome["stages"][stage] = {env: _outcome_json(o, space_s, index) for env, o in result.items()}
        for env, o in result.items():
            if o.chosen is None:  # only stage 1 can end here: later stages hold the earlier pick
                outcome["unmatched"][env] = f"no configuration matches FP32 (core bits {list(sel.core_bits)})"
                picks.pop(env, None)
                continue
            conf = next(c for c in space_s.configurations if c.key == o.chosen.configuration)
            picks[env] = (conf.policy.quant.bits_weight, conf.policy.width)
            outcome["selected"][env] = {
                "configuration": conf.key, "core_bits": conf.policy.quant.bits_weight, "width": conf.policy.width,
                "input_bits": conf.policy.quant.bits_in, "output_bits": conf.policy.quant.bits_out,
                "mean": o.chosen.stats.mean, "std": o.chosen.stats.std, "seeds": list(o.chosen.stats.seeds),
                "fp32_mean": o.fp32.mean, "fp32_std": o.fp32.std,
                "trials": _trials_json(stages.trials_of(space_s, conf, index))}
    outcome["cost"] = {k: v for k, v in cost.items() if not k.endswith("_keys")}
    return outcome


def _trials_json(trials) -> list[dict]:
    return [{"run_id": t.run_id, "seed": t.seed, "final_return": t.final_return} for t in trials]


def _outcome_json(o: stages.StageOutcome, space_s, index) -> dict:
    by_key = {c.key: c for c in space_s.configurations}
    return {"fp32_mean": o.fp32.mean, "fp32_std": o.fp32.std,
            "chosen": None if o.chosen is None else o.chosen.configuration,
            "rows": [{"value": r.value, "configuration": r.configuration, "mean": r.stats.mean, "std": r.stats.std,
                      "seeds": list(r.stats.seeds), "match": r.verdict.match, "detail": r.verdict.detail,
                      "eligible": r.eligible, "note": r.note,
                      "trials": _trials_json(stages.trials_of(space_s, by_key[r.configuration], index))}
                     for r in o.rows]}


def _noise(sel, outcome: dict, uri: str, address, workdir: Path) -> None:
    from qsearch.select import noise

    models = {}
    for env, s in outcome["selected"].items():
        models[f"{env}|selected"] = [(locate.locate_bundle(t["run_id"], uri), t["seed"]) for t in s["trials"]]
        models[f"{env}|fp32"] = [(locate.locate_bundle(t["run_id"], uri), t["seed"]) for t in outcome["fp32"][env]]
    curves = noise.curves(models, list(sel.noise_sigmas), sel.noise_episodes, workdir, address)
    data = {}
    for label, curve in curves.items():
        env, kind = label.split("|")
        data.setdefault(env, {})[kind] = curve
    _write_json(workdir / "noise.json", {"episodes": sel.noise_episodes, "envs": data})

"""`qsearch select`: the three selection stages as Ray Tune searches, then noise robustness.

The selection's folder (qsearch/run_folder.py) holds select.json (the space, tracking URI, MLflow
experiment and this selection's run), the shared tracking store, stages/<stage>.yaml (each stage's
search space as it ran, a record) and stages/<stage>-<k>/ (the stage's k-th search, only when it had
something to train), selection.json (the SelectionRecord), selection.md and noise.json.

Nothing is trained twice: before each stage, every configuration x seed that an identical finished
trial in the store already answers (same params, from any search) is reused (qsearch/select/
store.py), and only the rest goes to Ray Tune. A second `qsearch select` of the same space therefore
trains nothing, and an interrupted one carries on where it stopped.

Two selections at once: one folder holds one running selection (select.lock; a second is refused
in one line). Selections in different folders may share a store: a trial that another search is
training when a stage starts it waits for that run and takes its result (trial_record.claim), and
two finished runs of one trial count once (trial_record.one_per_key).

Stages are lazy (qsearch/select/lazy.py): a stage's Tune search takes its trials from a searcher
that trains the values from the smallest up and stops once one matches FP32 (qsearch/select/
searcher.py), with the same selection as the full grid. The stages are walked by walk.py; this
module is the source that trains. The end of a selection prints the environment steps it spent
beside the full grid's, and logs both to its MLflow run.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import yaml

from qsearch import locate, run_folder, tracking
from qsearch import trial_record as record
from qsearch.errors import QsearchError
from qsearch.search.space import SearchSpace
from qsearch.select import lazy, spec, tables
from qsearch.select import selection_record as rec
from qsearch.select.parity import Rule
from qsearch.select.store import Store
from qsearch.select.walk import walk


class Training(Store):
    """The tracking store, then Ray Tune for what a stage still wants (walk.Source)."""

    def __init__(self, sel: spec.Selection, uri: str, workdir: Path, address, storage, out):
        super().__init__(uri)
        self.sel, self.workdir, self.address, self.storage, self.out = sel, workdir, address, storage, out
        self.spent = self.reused = self.trained = self.stopped_count = 0

    def run(self, stage: str, space: SearchSpace, lz: lazy.Stage) -> bool:
        from qsearch.search.run import search
        from qsearch.select.searcher import LazySearcher

        fed = self.feed(stage, space, lz)
        self.reused += fed.new_found * space.steps
        done = lz.next_trial() == lazy.FINISHED
        how = "the full grid" if self.sel.speculation is None else f"lazily, speculation {self.sel.speculation}"
        todo = "0 to train" if done else f"at most {fed.total - fed.found} to train ({how})"
        print(f"[{time.strftime('%H:%M:%S')}] stage {stage}: {fed.total} trials, {fed.found} reused from the "
              f"tracking store, {todo}", file=self.out, flush=True)
        if done:
            return True
        folder = self.workdir / run_folder.STAGES
        k = 1
        while (folder / f"{stage}-{k}").exists():  # one folder per search: never resume a foreign one
            k += 1
        name = f"{stage}-{k}"
        searcher = LazySearcher(lz)
        # On a cluster each stage's Tune results go to shared storage too, one folder per stage search.
        storage = f"{self.storage.rstrip('/')}/{self.workdir.name}/{name}" if self.storage else None
        search(self._recorded(stage, space), workdir=folder / name, address=self.address, tracking_uri=self.uri,
               searcher=searcher, total=fed.total - fed.found, storage=storage, share_running=True)
        record.mark_stopped(self.uri, searcher.stopped)
        self.spent += searcher.steps_spent
        self.trained += len(searcher.trials) - searcher.borrowed
        self.reused += searcher.borrowed * space.steps
        self.stopped_count += len(searcher.stopped)
        self.reload()
        return True

    def _recorded(self, stage: str, space: SearchSpace) -> SearchSpace:
        """The stage's space, written to stages/<stage>.yaml as a record of what ran, and named after it."""
        folder = self.workdir / run_folder.STAGES
        folder.mkdir(exist_ok=True)
        path = folder / f"{stage}.yaml"
        picks = {env: (core, width) for env, core, width in _picks_of(space, stage)}
        run_folder.write_text(path, f"# Stage {stage} of selection {self.sel.name}, generated from {self.sel.path}\n"
                              + yaml.safe_dump(self.sel.stage_data(stage, picks), sort_keys=False))
        return dataclasses.replace(space, path=str(path))

    def cost(self) -> rec.Cost:
        grid = len(self.seen) * self.sel.base.steps
        return rec.Cost(self.spent, self.reused, grid, self.trained, self.stopped_count)


def _picks_of(space: SearchSpace, stage: str) -> list[tuple]:
    """(env, core bits, width) of the earlier picks a stage's space was made from."""
    if stage in ("core", "lut"):  # neither is made from earlier picks
        return []
    first = {}
    for c in space.configurations:
        first.setdefault(c.env_id, (c.env_id, c.policy.quant.bits_weight, c.policy.width))
    return list(first.values())


def select(space_path: str | Path, workdir: str | Path | None = None, tracking_uri: str | None = None,
           address: str | None = None, rule: Rule | None = None, noise: bool = True, stream=None,
           storage: str | None = None) -> rec.SelectionRecord:
    sel = spec.load(space_path)  # refused here, before anything starts
    if rule is not None:
        sel = dataclasses.replace(sel, rule=rule)
    out = stream or sys.stdout
    workdir = run_folder.of(sel.name, workdir)
    if run_folder.kind(workdir) == run_folder.SEARCH:  # refused before the lock is written into it
        raise QsearchError(f"{workdir} holds a search, not a selection: use another --workdir")
    # One selection per folder at a time: two would share select.json, selection.json and stages/
    # (measured: two started together trained every trial twice, each 3.5 times slower, and a new
    # folder's SQLite store was left broken by two MLflow schema migrations at once).
    with run_folder.held(workdir, "select"):
        return _select(sel, space_path, workdir, tracking_uri, address, noise, out, storage)


def _select(sel, space_path, workdir: Path, tracking_uri, address, noise, out, storage) -> rec.SelectionRecord:
    uri = _state(workdir, sel, space_path, tracking_uri)
    experiment_id = tracking.experiment(uri, sel.name, workdir)
    run_id = record.start_selection(uri, experiment_id, f"{sel.name} selection", {
        "space": str(Path(space_path).resolve()), "rule": sel.rule.describe(), "core_bits": list(sel.core_bits),
        "widths": list(sel.widths), "input_bits": list(sel.input_bits), "min_seeds": sel.min_seeds,
        "speculation": "all" if sel.speculation is None else sel.speculation, "early_reject": sel.early_reject,
        "adaptive_seeds": sel.adaptive_seeds, "adaptive_margin": sel.adaptive_margin})
    c = tracking.client(uri)
    state_file = workdir / run_folder.SELECT_STATE
    run_folder.write_json(state_file, {**run_folder.read_json(state_file), "selection_run_id": run_id,
                                       "experiment_id": experiment_id})
    try:
        training = Training(sel, uri, workdir, address, storage, out)
        result = walk(sel, training, on_stage=lambda st: print(tables.stage_table(st, sel.rule.describe()),
                                                                file=out, flush=True))
        result = dataclasses.replace(result, cost=training.cost())
        cost = result.cost
        record.log_selection_cost(uri, run_id, cost.spent, cost.reused, cost.grid)
        record.set_selected(uri, sel.envs, [t.run_id for s in result.selected.values() for t in s.trials], sel.name)
        if noise and result.selected:
            print(f"[{time.strftime('%H:%M:%S')}] noise robustness: sigma {list(sel.noise_sigmas)}, "
                  f"{sel.noise_episodes} episodes per model, models: {sel.noise_models}", file=out, flush=True)
            _noise(sel, result, uri, address, workdir)
        run_folder.write_json(workdir / run_folder.SELECTION_RECORD, result.to_json())
        run_folder.write_text(workdir / run_folder.SELECTION_TABLES, tables.markdown(result))
        for name in (run_folder.SELECTION_RECORD, run_folder.SELECTION_TABLES, run_folder.NOISE):
            if (workdir / name).exists():
                c.log_artifact(run_id, str(workdir / name))
        c.set_terminated(run_id, "FINISHED")
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    print(tables.selection_table(result), file=out, flush=True)
    print(tables.cost_line(result.cost), file=out, flush=True)
    return result



def _state(workdir: Path, sel, space_path, tracking_uri) -> str:
    """The folder's tracking URI: kept from an earlier selection of the same space, else a new store."""
    found = run_folder.kind(workdir)
    if found == run_folder.SEARCH:
        raise QsearchError(f"{workdir} holds a search, not a selection: use another --workdir")
    if found == run_folder.SELECTION:
        state = run_folder.state(workdir, run_folder.SELECTION)
        if state.get("space_name") != sel.name:
            raise QsearchError(f"{workdir} holds selection {state.get('space_name')!r}, not {sel.name!r}: "
                               "use another --workdir")
        if tracking_uri and tracking_uri != state["tracking_uri"]:
            raise QsearchError(f"{workdir} tracks in {state['tracking_uri']}, not {tracking_uri}")
        return state["tracking_uri"]
    workdir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or tracking.default_uri(workdir)
    run_folder.write_json(workdir / run_folder.SELECT_STATE,
                          {"space_name": sel.name, "space": str(Path(space_path).resolve()), "tracking_uri": uri})
    return uri


def noise_models(result: rec.SelectionRecord, which: str) -> dict[str, dict[str, dict]]:
    """env -> key -> {configuration, stages, trials}: the models the noise study evaluates, in this
    order: FP32 ("fp32"); with which == "stages", each stage's pick other than the selected
    configuration, keyed by the first stage that picked it; the selected configuration ("selected").
    The report names each curve by its configuration (figure legends and table rows)."""
    out = {}
    for env, s in result.selected.items():
        models = {"fp32": {"configuration": None, "stages": [], "trials": result.fp32[env]}}
        for p in result.picks(env) if which == "stages" else ():
            if p.configuration != s.configuration:
                models[p.stages[0]] = {"configuration": p.configuration, "stages": list(p.stages), "trials": p.trials}
        stages = next(p.stages for p in result.picks(env) if p.configuration == s.configuration)
        models["selected"] = {"configuration": s.configuration, "stages": list(stages), "trials": s.trials}
        out[env] = models
    return out


def _noise(sel, result: rec.SelectionRecord, uri: str, address, workdir: Path) -> None:
    from qsearch.select import noise

    chosen = noise_models(result, sel.noise_models)
    models = {f"{env}|{key}": [(locate.locate_bundle(t.run_id, uri), t.seed) for t in m["trials"]]
              for env, ms in chosen.items() for key, m in ms.items()}
    curves = noise.curves(models, list(sel.noise_sigmas), sel.noise_episodes, workdir, address)
    data = {}
    for env, ms in chosen.items():  # in noise_models' order: FP32, the stages' picks, the selected one
        for key, m in ms.items():
            data.setdefault(env, {})[key] = {"configuration": m["configuration"], "stages": m["stages"],
                                             **curves[f"{env}|{key}"]}
    run_folder.write_json(workdir / run_folder.NOISE, {"episodes": sel.noise_episodes, "models": sel.noise_models,
                                                       "envs": data})

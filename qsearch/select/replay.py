"""Replay a selection on known trial outcomes, without training: what a strategy would train, on a
simulated cluster, and what it would select (bench/selection_cost.py, the tests).

The cluster has `slots` slots; every trial takes one unit of time (FP32 and quantized alike, a
simplification) and reports every 1% of its budget. A replay drives the same lazy.Stage the Tune
searcher and stopper drive: a trial starts when a slot is free and the stage wants it, a trial that
is no longer needed stops at its next report, early rejection looks at the curve's checkpoints.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from qsearch.search import space as spaces
from qsearch.select import lazy, spec, stages
from qsearch.select.results import Stats

REPORTS = 100  # reports per trial in the simulation (the trainable reports every 1,000 steps)


@dataclass(frozen=True)
class Outcome:
    """One trial's result: its final return (None: it failed) and evaluation curve {step: return}."""

    final: float | None
    curve: dict = field(default_factory=dict)


@dataclass
class Replay:
    """What one strategy did on one set of outcomes."""

    picks: dict = field(default_factory=dict)  # env -> (core bits, width, input bits); None: no match
    steps: int = 0  # environment steps trained, stopped trials to their stop
    trials: int = 0  # trials started
    wall: float = 0.0  # in units of one trial's time
    notes: int = 0  # values decided early (early rejection, adaptive seeds)


def stage_space(sel: spec.Selection, stage: str, picks: dict) -> spaces.SearchSpace:
    return spaces.parse(sel.stage_data(stage, picks), f"{sel.path} ({stage})")


def replay(sel: spec.Selection, outcome, strategy: lazy.Strategy, slots: int) -> Replay:
    """outcome(space, configuration, seed) -> Outcome. Stages run one after another, as in select."""
    out = Replay()
    done: dict[str, Outcome] = {}  # trial key -> outcome of a trial trained in an earlier stage
    picks: dict[str, tuple[int, int]] = {}
    fixed: dict[str, list] = {}
    for stage in spec.STAGES:
        if stage != "core" and not picks:
            break
        space = stage_space(sel, stage, picks)
        lz = lazy.stage_of(sel, stage, space, strategy)
        lz.fixed_fp32.update(fixed)
        trials = {(c.key, seed): (c, seed) for c in space.configurations for seed in space.seeds}
        keys = {t: _key(space, *trials[t]) for t in trials}
        for t, k in keys.items():
            if k in done:
                lz.end(*t, done[k].final, done[k].curve)
        results = {t: outcome(space, *trials[t]) for t in trials if keys[t] not in done}
        _simulate(lz, results, slots, space.steps, out)
        for t, o in results.items():
            if lz.ended.get(t) is not None:
                done[keys[t]] = o
        if stage == "core":
            fixed = lz.fp32_results()
        for env, o in lz.outcomes().items():
            out.notes += sum(1 for r in o.rows if r.note and not r.note.startswith("not needed"))
            _advance(env, o, space, picks, out.picks)
    return out


def full_grid(sel: spec.Selection, outcome) -> dict:
    """The full grid's picks, straight from stages.pick over every outcome: the reference."""
    picks: dict[str, tuple[int, int]] = {}
    chosen: dict = {}
    fp32: dict[str, Stats] = {}
    for stage in spec.STAGES:
        if stage != "core" and not picks:
            break
        space = stage_space(sel, stage, picks)
        for env in sorted({c.env_id for c in space.configurations}):
            confs = [c for c in space.configurations if c.env_id == env]
            got = {c.key: _stats(space, c, outcome) for c in confs}
            if stage == "core":
                fp32[env] = next(got[c.key] for c in confs if c.policy.quant is None)
            cands = [(stages.VALUE[stage](c), c.key, got[c.key]) for c in confs if c.policy.quant is not None]
            _advance(env, stages.pick(stage, env, cands, fp32[env], sel.rule, sel.min_seeds), space, picks, chosen)
    return chosen


def _advance(env, o: stages.StageOutcome, space, picks: dict, chosen: dict) -> None:
    """Carry a stage's pick for `env` into the next stage, as selection.py does."""
    if o.chosen is None:
        picks.pop(env, None)
        chosen.setdefault(env, None)
        return
    q = next(c for c in space.configurations if c.key == o.chosen.configuration).policy
    picks[env] = (q.quant.bits_weight, q.width)
    chosen[env] = (q.quant.bits_weight, q.width, q.quant.bits_in)


def _stats(space, conf, outcome) -> Stats:
    got = [(seed, outcome(space, conf, seed).final) for seed in space.seeds]
    got = [(s, r) for s, r in got if r is not None]
    return Stats(tuple(r for _, r in got), tuple(s for s, _ in got))


def _key(space, conf, seed) -> str:
    from qsearch.trial_record import trial_key

    return trial_key(space.trial_params(conf, seed))


def _simulate(lz: lazy.Stage, results: dict, slots: int, steps: int, out: Replay) -> None:
    """Run one stage on the simulated cluster from time out.wall; adds its steps, trials and time."""
    t = out.wall
    running: dict = {}  # (key, seed) -> start time
    events: list = []  # (time, order, kind, trial, step)
    order = 0

    def push(when, kind, trial, step):
        nonlocal order
        order += 1
        heapq.heappush(events, (when, order, kind, trial, step))

    while True:
        while len(running) < slots:
            nxt = lz.next_trial()
            if nxt is None or nxt == lazy.FINISHED:
                break
            lz.start(*nxt)
            running[nxt] = t
            out.trials += 1
            if lz.strategy.early_reject is not None:  # checkpoints: FP32's feed early rejection
                for step in sorted(results[nxt].curve):
                    push(t + step / steps, "report", nxt, step)
            push(t + 1.0, "end", nxt, steps)
        if not events:
            break
        t, _, kind, trial, step = heapq.heappop(events)
        if trial not in running:
            continue  # stopped before
        o = results[trial]
        if kind == "end":
            lz.end(*trial, o.final, o.curve)
        elif kind == "stop" or lz.result(*trial, step, o.curve[step]) is not None:
            lz.end(*trial, None)
        else:
            continue
        out.steps += step
        del running[trial]
        for other, start in running.items():  # a decision may have made running trials unnecessary
            if lz.not_needed(other[0]) is not None:
                at = start + math.ceil((t - start) * REPORTS + 1e-9) / REPORTS
                push(at, "stop", other, min(steps, round((at - start) * steps)))
    out.wall = t

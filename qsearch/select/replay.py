"""Replay a selection on known trial outcomes, without training: what a strategy would train, on a
simulated cluster, and what it would select (bench/selection_cost.py, the tests).

The cluster has `slots` slots; every trial takes one unit of time (FP32 and quantized alike, a
simplification) and reports every 1% of its budget. A replay walks the same stages (walk.py) with
the same lazy.Stage the Tune searcher and stopper drive: a trial starts when a slot is free and the
stage wants it, a trial that is no longer needed stops at its next report, early rejection looks at
the curve's checkpoints.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from qsearch.search.space import SearchSpace
from qsearch.select import lazy, spec
from qsearch.select import selection_record as rec
from qsearch.select.walk import walk
from qsearch.trial_record import trial_key

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
    record: rec.SelectionRecord | None = None


class Grid:
    """Every outcome, fed to each stage whole: the full grid."""

    def __init__(self, outcome):
        self.outcome = outcome

    def run(self, stage: str, space: SearchSpace, lz: lazy.Stage) -> bool:
        for conf in space.configurations:
            for seed in space.seeds:
                o = self.outcome(space, conf, seed)
                lz.end(conf.key, seed, o.final, o.curve)
        return True

    def trial(self, space, conf, seed) -> rec.TrialRef | None:
        final = self.outcome(space, conf, seed).final
        return None if final is None else rec.TrialRef(seed, None, final)


class Simulation:
    """Outcomes as a simulated cluster of `slots` slots trains them, stage after stage; a trial
    trained in an earlier stage (the earlier pick) is reused, as the tracking store does."""

    def __init__(self, outcome, slots: int):
        self.outcome, self.slots = outcome, slots
        self.done: dict[str, Outcome] = {}  # trial key -> outcome of a finished trial
        self.stopped: dict[str, rec.TrialRef] = {}  # trial key -> the trial as it was stopped
        self.result = Replay()

    def run(self, stage: str, space: SearchSpace, lz: lazy.Stage) -> bool:
        trials = {(c.key, seed): (c, seed) for c in space.configurations for seed in space.seeds}
        keys = {t: trial_key(space.trial_params(*trials[t])) for t in trials}
        for t, k in keys.items():
            if k in self.done:
                lz.end(*t, self.done[k].final, self.done[k].curve)
        results = {t: self.outcome(space, *trials[t]) for t in trials if keys[t] not in self.done}
        stopped = _simulate(lz, results, self.slots, space.steps, self.result)
        for t, o in results.items():
            if lz.ended.get(t) is not None:
                self.done[keys[t]] = o
        for t, (why, step) in stopped.items():
            curve = {s: r for s, r in results[t].curve.items() if s <= step}
            self.stopped[keys[t]] = rec.TrialRef(t[1], None, None, why, curve)
        return True

    def trial(self, space, conf, seed) -> rec.TrialRef | None:
        k = trial_key(space.trial_params(conf, seed))
        if k in self.done:
            return rec.TrialRef(seed, None, self.done[k].final)
        return self.stopped.get(k)


def replay(sel: spec.Selection, outcome, strategy: lazy.Strategy, slots: int) -> Replay:
    """outcome(space, configuration, seed) -> Outcome. Stages run one after another, as in select."""
    sim = Simulation(outcome, slots)
    record = walk(sel, sim, strategy)
    out = sim.result
    out.record = record
    out.picks = picks(record)
    out.notes = sum(v.decided_early for s in record.stages for e in s.envs for v in e.values)
    return out


def full_grid(sel: spec.Selection, outcome) -> dict:
    """The full grid's picks: every outcome known, every value decided on all of them."""
    return picks(walk(sel, Grid(outcome), lazy.Strategy(speculation=None)))


def picks(record: rec.SelectionRecord) -> dict:
    """env -> (core bits, width, input bits) selected; None: nothing matched."""
    chosen = record.selected
    return {env: (chosen[env].core_bits, chosen[env].width, chosen[env].input_bits) if env in chosen else None
            for env in record.envs}


def _simulate(lz: lazy.Stage, results: dict, slots: int, steps: int, out: Replay) -> dict:
    """Run one stage on the simulated cluster from time out.wall; adds its steps, trials and time.
    Returns the trials it stopped: (key, seed) -> (why, step)."""
    t = out.wall
    running: dict = {}  # (key, seed) -> start time
    events: list = []  # (time, order, kind, trial, step)
    stopped: dict = {}
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
        elif kind == "stop":
            stopped[trial] = (lz.not_needed(trial[0]), step)
            lz.end(*trial, None)
        elif (detail := lz.result(*trial, step, o.curve[step])) is not None:
            stopped[trial] = (f"early rejection: {detail}", step)
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
    return stopped

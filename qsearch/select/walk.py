"""The selection's stages, walked in one place (paper Section 3.2): core bits, then width, then
input bits, and with lut_sizes the logic circuits; each network stage's pick carried into the next;
stage 1's FP32 fixed as the later stages' baseline; each stage decided by a lazy.Stage; the outcome written as a SelectionRecord.

Where the trials' results come from is a Source:

    selection.Training   the tracking store, then Ray Tune for what it still wants (`qsearch select`)
    store.Store          the tracking store alone (`qsearch select --plan`): the walk stops at the
                         first stage the store cannot decide
    replay.Simulation    known outcomes on a simulated cluster (bench/selection_cost.py, the tests)
    replay.Grid          known outcomes, every one of them (the full grid's reference)

A source's `run` feeds one stage's lazy.Stage and says whether the stage is decided; its `trial`
names the trial behind one configuration x seed, for the record.
"""
from __future__ import annotations

from typing import Protocol

from qsearch.errors import QsearchError
from qsearch.search.space import Configuration, SearchSpace
from qsearch.select import lazy
from qsearch.select import selection_record as rec
from qsearch.select.parity import verdict
from qsearch.select.spec import Selection
from qsearch.select.stages import LABEL


class Source(Protocol):
    def run(self, stage: str, space: SearchSpace, lz: lazy.Stage) -> bool:
        """Feed `lz` what this source knows (and train what it wants, if the source trains); True
        when the stage is decided."""

    def trial(self, space: SearchSpace, conf: Configuration, seed: int) -> rec.TrialRef | None:
        """The trial behind (conf, seed): finished, or started and stopped; None: none."""


def walk(sel: Selection, source: Source, strategy: lazy.Strategy | None = None,
         on_stage=None) -> rec.SelectionRecord:
    """The selection's stages on `source`, under `strategy` (the selection's own unless given);
    on_stage(StageRecord) is called as each stage is decided."""
    picks: dict[str, tuple[int, int]] = {}  # env -> (core bits, width) picked so far
    fixed: dict[str, list] = {}  # env -> [(final return, curve)]: stage 1's FP32, the later stages' baseline
    fp32: dict[str, tuple] = {}
    stages, configurations = [], {}
    for name in sel.stages:
        if name in ("width", "input") and not picks:
            continue  # no environment got past stage 1: no network left to narrow (stage lut needs FP32 only)
        space = sel.stage_space(name, picks)
        lz = lazy.stage_of(sel, name, space, strategy)
        lz.fixed_fp32.update(fixed)
        if not source.run(name, space, lz):
            break
        if name == "core":
            fixed = lz.fp32_results()
            fp32 = {e.env_id: tuple(t for t in _refs(source, space, _conf(space, e.fp32), lz.seeds)
                                    if t.final_return is not None) for e in lz.envs}
        configurations.update({c.key: _bits(c) for c in space.configurations if c.policy.quant is not None})
        stage = stage_record(sel, name, space, lz, source)
        stages.append(stage)
        if on_stage is not None:
            on_stage(stage)
        if name != "lut":  # a logic circuit's pick stands beside the network's, it narrows nothing
            picks = {e.env_id: configurations[e.pick.configuration][:2] for e in stage.envs if e.pick is not None}
    return rec.SelectionRecord(sel.name, sel.rule.describe(), tuple(stages), fp32, configurations)


def stage_record(sel: Selection, name: str, space: SearchSpace, lz: lazy.Stage, source: Source) -> rec.StageRecord:
    """A decided stage as the record has it: every value's state (see selection_record.py)."""
    envs = []
    for env in lz.envs:
        fp32 = lz.fp32(env)
        if fp32 is None or fp32.n < lz.min_seeds:
            n = 0 if fp32 is None else fp32.n
            raise QsearchError(f"{env.env_id}: no FP32 baseline to compare with: {n} of {len(lz.seeds)} FP32 seeds "
                               f"finished (need {lz.min_seeds}); see the failed trials in the tracking store")
        _, chosen = lz.decision(env)
        values = tuple(_value(lz, env, v, key, chosen, _refs(source, space, _conf(space, key), lz.seeds), fp32)
                       for v, key in sorted(env.values))
        envs.append(rec.EnvStage(env.env_id, fp32, values, chosen))
    return rec.StageRecord(name, tuple(envs))


def _value(lz: lazy.Stage, env: lazy.Env, value: int, key: str, chosen: int | None, trials: tuple,
           fp32) -> rec.Value:
    st = lz.value_state(env, value, key)
    if st.decided and st.rejection is not None:
        return rec.Value(value, key, rec.EARLY_REJECTED, trials, detail=st.note, rejection=st.rejection,
                         decided_early=True)
    finished = [t for t in trials if t.final_return is not None]
    if chosen is not None and value > chosen and len(finished) < len(lz.seeds):
        # Above the pick and not fully trained: it was never evaluated, so it neither matched nor failed.
        # Sources name only finished and stopped trials: any trial at all means it was started.
        return rec.Value(value, key, rec.STOPPED if trials else rec.NOT_NEEDED, trials,
                         detail=f"{LABEL[lz.stage]} {chosen} matches FP32")
    if st.decided and st.note:  # adaptive seeds: "no match" on the first seeds
        return rec.Value(value, key, rec.FAILED, trials, detail=st.note, decided_early=True)
    stats = rec.Value(value, key, rec.FAILED, trials).stats
    if stats.n < lz.min_seeds:
        return rec.Value(value, key, rec.FAILED_TO_TRAIN, trials,
                         detail=f"{stats.n} of {len(lz.seeds)} seeds finished (needs {lz.min_seeds})")
    v = verdict(stats, fp32, lz.rule)
    return rec.Value(value, key, rec.MATCHED if v.match else rec.FAILED, trials, v.margin, v.detail)


def _refs(source: Source, space: SearchSpace, conf: Configuration, seeds) -> tuple:
    return tuple(t for t in (source.trial(space, conf, s) for s in seeds) if t is not None)


def _conf(space: SearchSpace, key: str) -> Configuration:
    return next(c for c in space.configurations if c.key == key)


def _bits(c: Configuration) -> tuple:
    """(core bits, width, input bits, output bits); a logic circuit's ("lut", thermometer bits, layer
    sizes, inputs per table) (selection_record.describe names both)."""
    p, q = c.policy, c.policy.quant
    if p.lut:
        return "lut", p.thermometer_bits, "-".join(map(str, p.luts)), p.lut_inputs
    return q.bits_weight, p.width, q.bits_in, q.bits_out


"""Lazy stages: a stage's values are trained from the smallest up, and once one matches FP32 the
larger ones are not trained (unstarted trials never start, running ones are stopped).

Why the selection is exactly the full grid's (for the sigma, welch and bootstrap rules alike): a
stage picks

    v* = min { v : eligible(v) and match(v) }        (stages.pick)

where eligible(v) (min_seeds finished seeds) and match(v) (the rule's verdict against FP32) depend on
v's own returns and FP32's, never on another value's. A lazy stage decides a value only once every
seed of it has ended, so it sees the returns the grid would see and gives every value the grid's
(eligible, match). It walks the values in ascending order and stops at the first with both true:
that is v*, with every smaller value decided false, as in the grid. What it skips or stops are
values above v*, which the minimum never looks at. Speculation (K values trained ahead of the
smallest undecided one) only changes when values start, not how they are decided.

Two options decide some values on less evidence, and so may change the answer (off by default;
bench/selection_cost.py counts how often): early rejection stops a trial whose evaluation return at a
checkpoint, and at the checkpoint before, lies `early_reject` band half-widths below FP32's mean at
the same step (from half the budget on), and decides its value "no match"; adaptive seeds start a
value with `adaptive_seeds` seeds and add as many again, batch after batch, unless the finished
seeds' mean lies `adaptive_margin` half-widths below the parity bound (then "no match" on fewer
seeds). FP32 and every value decided as a match always have all their seeds, and the rule decides on
all of them. Both use the sigma band (Rule.half_width) as the yardstick, whatever the rule.

Everything here is pure: `Stage` is told what ended and asked what to run or stop next. The Tune
searcher and stopper (qsearch/select/searcher.py) and the replay drive the same object, each stage
of the one walk (qsearch/select/walk.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from qsearch.select.parity import Rule
from qsearch.select.results import Stats
from qsearch.select.selection_record import RejectionSettings
from qsearch.select.stages import LABEL, VALUE, pick

EARLY_REJECT_FROM = 0.5  # early rejection looks at checkpoints from half the budget on: earlier curves are noise
FINISHED = "FINISHED"  # `next_trial`: nothing more to train in this stage


@dataclass(frozen=True)
class Strategy:
    """How a stage spends its trials: the `selection:` keys of the same names (qsearch/select/spec.py)."""

    speculation: int | None = 1
    """values trained ahead of the smallest undecided one (None: all, the full grid)"""
    early_reject: float | None = None
    """band half-widths below FP32's curve that stop a trial (None: off)"""
    adaptive_seeds: int | None = None
    """seeds a value starts with, and adds at a time while it could match (None: all seeds at once)"""
    adaptive_margin: float = 1.0
    """half-widths below the bound that decide "no match" on the first seeds"""


@dataclass(frozen=True)
class Env:
    """One environment's part of a stage."""

    env_id: str
    values: tuple[tuple[int, str], ...]
    """(value, configuration key) of the candidates"""
    fp32: str | None = None
    """the FP32 configuration when the stage trains it (stage 1); later stages get FP32's results"""


@dataclass(frozen=True)
class ValueState:
    """Where one candidate value stands."""

    decided: bool
    match: bool = False
    note: str = ""
    """why it was decided without the full evidence (early rejection, adaptive seeds)"""
    wanted: tuple[int, ...] = ()
    """the seeds it needs now"""
    rejection: RejectionSettings | None = None
    """decided by early rejection, under these settings"""


@dataclass
class Stage:
    """The lazy decision of one stage over its environments."""

    stage: str
    envs: list[Env]
    seeds: tuple[int, ...]
    steps: int
    rule: Rule
    min_seeds: int
    strategy: Strategy = field(default_factory=Strategy)
    ended: dict = field(default_factory=dict)  # (key, seed) -> final return, None: ended without one
    rejected: dict = field(default_factory=dict)  # (key, seed) -> early rejection detail
    curves: dict = field(default_factory=dict)  # (key, seed) -> {step: evaluation return}
    running: set = field(default_factory=set)  # (key, seed)
    fixed_fp32: dict = field(default_factory=dict)  # env -> [(final return, curve)] from an earlier stage

    def __post_init__(self):
        self._memo = {}  # env -> what value_state, decision and fp32 answered since its last trial ended
        self._where = {}  # configuration key -> (Env, value); value None for FP32
        for e in self.envs:
            self._where.update({key: (e, v) for v, key in e.values})
            if e.fp32:
                self._where[e.fp32] = (e, None)

    # What happened

    def start(self, key: str, seed: int) -> None:
        self.running.add((key, seed))

    def end(self, key: str, seed: int, final_return: float | None, curve: dict | None = None) -> None:
        """A trial ended: finished (its final return), or failed or stopped (None)."""
        self.running.discard((key, seed))
        self.ended[(key, seed)] = final_return
        self._memo.pop(self._where[key][0].env_id, None)
        if curve:
            self.curves[(key, seed)] = dict(curve)

    def rejection_settings(self) -> RejectionSettings | None:
        """What this stage's early rejections are decided under (None: early rejection is off)."""
        if self.strategy.early_reject is None:
            return None
        return RejectionSettings(float(self.strategy.early_reject), self.rule.describe(), tuple(self.seeds))

    def reject(self, key: str, seed: int, detail: str) -> None:
        """An early rejection recorded in the store by an earlier run under this stage's settings (the
        caller checks them): the value stays decided."""
        self.rejected[(key, seed)] = detail
        self.end(key, seed, None)

    def result(self, key: str, seed: int, step: int, eval_return: float | None) -> str | None:
        """An intermediate result of a running trial. Returns the early rejection's detail when it
        rejects the trial (the caller stops it), else None."""
        if eval_return is None or not math.isfinite(eval_return):
            return None
        curve = self.curves.setdefault((key, seed), {})
        curve[step] = eval_return
        env, value = self._where[key]
        if value is None or self.strategy.early_reject is None:
            return None
        # Two checkpoints in a row below the threshold, not one: a single evaluation is noisy, and a
        # value has many seeds x checkpoints to be unlucky on.
        earlier = [s for s in curve if EARLY_REJECT_FROM * self.steps <= s < step]
        if not earlier or self._threshold(env, max(earlier), curve[max(earlier)]) is None:
            return None
        threshold = self._threshold(env, step, eval_return)
        if threshold is None:
            return None
        detail = (f"step {step}: evaluation return {eval_return:.1f} below FP32's - {self.strategy.early_reject:g} "
                  f"half-widths ({threshold:.1f}), as at the checkpoint before")
        self.rejected[(key, seed)] = detail
        self._memo.pop(env.env_id, None)
        return detail

    # What it means

    def fp32(self, env: Env) -> Stats | None:
        """FP32's stats once every FP32 seed has ended; None until then."""
        return self._remember(env, "fp32", lambda: self._fp32(env))

    def _fp32(self, env: Env) -> Stats | None:
        if not env.fp32:
            return Stats(tuple(r for r, _ in self.fixed_fp32[env.env_id]))
        if any((env.fp32, s) not in self.ended for s in self.seeds):
            return None
        return self._stats(env.fp32, self.seeds)

    def fp32_results(self) -> dict[str, list[tuple[float, dict]]]:
        """env -> [(final return, evaluation curve)] of the finished FP32 seeds: what the later
        stages get as `fixed_fp32`."""
        return {e.env_id: [(self.ended[(e.fp32, s)], self.curves.get((e.fp32, s), {})) for s in self.seeds
                           if self.ended.get((e.fp32, s)) is not None] for e in self.envs if e.fp32}

    def value_state(self, env: Env, value: int, key: str) -> ValueState:
        return self._remember(env, key, lambda: self._value_state(env, value, key))

    def _value_state(self, env: Env, value: int, key: str) -> ValueState:
        everything = tuple(self.seeds)
        if self.strategy.early_reject is not None:
            hit = next((self.rejected[(key, s)] for s in everything if (key, s) in self.rejected), None)
            if hit is not None:
                return ValueState(True, False, f"early rejection at {hit}", rejection=self.rejection_settings())
        fp32 = self.fp32(env)
        batch = self.strategy.adaptive_seeds or len(everything)
        first = everything[:batch]
        # Adaptive seeds: batch after batch while the first seeds' mean could still match.
        while not self._all_ended(key, everything):
            if fp32 is None or not self._all_ended(key, first):
                return ValueState(False, wanted=first)
            s = self._stats(key, first)
            if s.n and s.mean < fp32.mean - (1 + self.strategy.adaptive_margin) * self.rule.half_width(fp32):
                return ValueState(True, False, f"adaptive seeds: no match on {s.n} of {len(everything)} seeds")
            first = everything[:len(first) + batch]
        if fp32 is None:
            return ValueState(False)
        row = pick(self.stage, env.env_id, [(value, key, self._stats(key, everything))], fp32, self.rule,
                   self.min_seeds).rows[0]
        return ValueState(True, row.eligible and row.verdict.match)

    def decision(self, env: Env) -> tuple[bool, int | None]:
        """(decided, the chosen value or None) for one environment."""
        return self._remember(env, "decision", lambda: self._decision(env))

    def _decision(self, env: Env) -> tuple[bool, int | None]:
        fp32 = self.fp32(env)
        if fp32 is None:
            return False, None
        if fp32.n < self.min_seeds:
            return True, None  # no baseline: selection.py says so in one line
        for value, key in sorted(env.values):
            st = self.value_state(env, value, key)
            if not st.decided:
                return False, None
            if st.match:
                return True, value
        return True, None

    def decided(self) -> bool:
        return all(self.decision(e)[0] for e in self.envs)

    def not_needed(self, key: str) -> str | None:
        """Why the trials of configuration `key` are no longer needed (the caller stops them), or None."""
        env, value = self._where[key]
        if value is None:
            return None
        st = self.value_state(env, value, key)
        if st.decided and st.note:
            return f"not needed: {LABEL[self.stage]} {value} already decided ({st.note})"
        decided, chosen = self.decision(env)
        if self.strategy.speculation is not None and decided and chosen is not None and value > chosen:
            return f"not needed: {LABEL[self.stage]} {chosen} matches FP32"
        return None

    def wanted(self) -> list[tuple[str, int]]:
        """The trials to run now, in order: FP32 first, then by value from the smallest up, seeds in
        order; environments interleaved, so that each moves on at the same pace."""
        ranked = []
        for i, env in enumerate(self.envs):
            if env.fp32:
                ranked += [((-1, s, i), (env.fp32, s)) for s in self.seeds]
            for pos, (value, key) in enumerate(self._window(env)):
                ranked += [((pos, s, i), (key, s)) for s in self.value_state(env, value, key).wanted]
        return [t for _, t in sorted(ranked) if t not in self.ended and t not in self.running]

    def next_trial(self):
        """(configuration key, seed) to start; None: wait for a running trial; FINISHED: the stage is done."""
        if self.strategy.speculation is not None and self.decided():
            return FINISHED
        todo = self.wanted()
        if todo:
            return todo[0]
        return None if self.running else FINISHED

    # Helpers

    def _remember(self, env: Env, what: str, answer):
        memo = self._memo.setdefault(env.env_id, {})
        if what not in memo:
            memo[what] = answer()
        return memo[what]

    def _window(self, env: Env) -> list[tuple[int, str]]:
        """The values that may train now: the smallest undecided one and the next `speculation`
        undecided ones; none past a value decided as a match."""
        open_values = []
        for value, key in sorted(env.values):
            st = self.value_state(env, value, key)
            if st.decided and st.match and self.strategy.speculation is not None:
                break
            if not st.decided:
                open_values.append((value, key))
        k = self.strategy.speculation
        return open_values if k is None else open_values[:k + 1]

    def _all_ended(self, key: str, seeds) -> bool:
        return all((key, s) in self.ended for s in seeds)

    def _stats(self, key: str, seeds) -> Stats:
        done = [(s, self.ended[(key, s)]) for s in seeds if self.ended.get((key, s)) is not None]
        return Stats(tuple(r for _, r in done), tuple(s for s, _ in done))

    def _threshold(self, env: Env, step: int, eval_return: float) -> float | None:
        """The early rejection threshold at `step` when `eval_return` lies below it, else None."""
        band = self._fp32_at(env, step)
        if band is None:
            return None
        threshold = band.mean - self.strategy.early_reject * self.rule.half_width(band)
        return threshold if eval_return < threshold else None

    def _fp32_at(self, env: Env, step: int) -> Stats | None:
        """FP32's evaluation returns at `step` over its seeds, once every FP32 seed has ended."""
        if env.fp32:
            if self.fp32(env) is None:
                return None
            curves = [self.curves.get((env.fp32, s), {}) for s in self.seeds if self.ended.get((env.fp32, s)) is not None]
        else:
            curves = [c for _, c in self.fixed_fp32[env.env_id]]
        values = [c[step] for c in curves if step in c]
        return Stats(tuple(values)) if values and len(values) == len(curves) else None


def stage_of(sel, stage: str, space, strategy: Strategy | None = None) -> Stage:
    """The lazy Stage of a selection's stage search space (nothing ended yet). sel: a spec.Selection;
    strategy: its own unless given (the benchmark replays others)."""
    envs = []
    for env_id in sorted({c.env_id for c in space.configurations}):
        confs = [c for c in space.configurations if c.env_id == env_id]
        fp32 = next((c.key for c in confs if c.policy.quant is None), None)
        values = tuple(sorted((VALUE[stage](c), c.key) for c in confs if c.policy.quant is not None))
        envs.append(Env(env_id, values, fp32))
    strategy = strategy or Strategy(sel.speculation, sel.early_reject, sel.adaptive_seeds, sel.adaptive_margin)
    return Stage(stage, envs, tuple(space.seeds), space.steps, sel.rule, sel.min_seeds, strategy)

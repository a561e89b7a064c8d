"""One selection stage: the smallest candidate value whose configuration matches FP32 (paper 3.2).

Pure functions over finished trials: the stage's search space says which configurations x seeds
belong to it, the index of finished trials says which of them exist, and `pick` decides.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from qsearch.errors import QsearchError
from qsearch.search.space import Configuration, SearchSpace
from qsearch.select.parity import Rule, Verdict, verdict
from qsearch.select.results import Stats, stats
from qsearch.trial_record import Index, Trial

# The value a stage varies, read off a configuration.
VALUE = {"core": lambda c: c.policy.quant.bits_weight, "width": lambda c: c.policy.width,
         "input": lambda c: c.policy.quant.bits_in}
LABEL = {"core": "core bits", "width": "width", "input": "input bits"}


@dataclass(frozen=True)
class Candidate:
    value: int
    configuration: str
    stats: Stats
    verdict: Verdict
    eligible: bool  # enough finished seeds to be picked
    note: str = ""  # a lazy stage's word: decided early (early rejection, adaptive seeds), or not needed


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    env_id: str
    fp32: Stats
    rows: tuple[Candidate, ...]
    chosen: Candidate | None  # None: no configuration matches FP32, and the stage says so


def pick(stage: str, env_id: str, candidates: list[tuple[int, str, Stats]], fp32: Stats, rule: Rule,
         min_seeds: int, forced: dict[int, str] | None = None) -> StageOutcome:
    """The smallest value whose configuration has min_seeds finished seeds and matches FP32.

    Smallest wins even when a larger one has the higher return: the point is the cheapest
    configuration that is good enough. A candidate short of seeds is never picked on partial evidence.
    forced: value -> why a lazy stage decided it "no match" early (qsearch/select/lazy.py)."""
    forced = forced or {}
    rows = []
    for value, key, s in sorted(candidates, key=lambda c: c[0]):
        v = Verdict(False, "decided early") if value in forced else verdict(s, fp32, rule)
        rows.append(Candidate(value, key, s, v, s.n >= min_seeds, forced.get(value, "")))
    chosen = next((r for r in rows if r.eligible and r.verdict.match), None)
    return StageOutcome(stage, env_id, fp32, tuple(rows), chosen)


def skip(o: StageOutcome, values: list[int], note: str) -> StageOutcome:
    """`o` with `values` marked as not needed (a lazy stage did not train them, or not all their seeds)."""
    rows = tuple(dataclasses.replace(r, note=note) if r.value in values else r for r in o.rows)
    chosen = next((r for r in rows if o.chosen is not None and r.value == o.chosen.value), None)
    return dataclasses.replace(o, rows=rows, chosen=chosen)


def trials_of(space: SearchSpace, conf: Configuration, index: Index) -> list[Trial]:
    found = (index.find(space.trial_params(conf, seed)) for seed in space.seeds)
    return [t for t in found if t is not None]


def missing(space: SearchSpace, index: Index) -> list[tuple[str, int]]:
    """(configuration key, seed) pairs of `space` with no identical finished trial in the store."""
    return [(c.key, seed) for c in space.configurations for seed in space.seeds
            if index.find(space.trial_params(c, seed)) is None]


def fp32_baseline(space: SearchSpace, env_id: str, index: Index, min_seeds: int) -> list[Trial]:
    confs = [c for c in space.configurations if c.env_id == env_id and c.policy.quant is None]
    found = trials_of(space, confs[0], index) if confs else []
    if len(found) < min_seeds:
        raise QsearchError(f"{env_id}: no FP32 baseline to compare with: {len(found)} of {len(space.seeds)} "
                           f"FP32 seeds finished (need {min_seeds}); see the failed trials in the tracking store")
    return found


def evaluate(stage: str, space: SearchSpace, fp32: dict[str, list[Trial]], index: Index, rule: Rule,
             min_seeds: int) -> dict[str, StageOutcome]:
    """Each environment's outcome of `stage` over the quantized configurations of its space."""
    out = {}
    for env_id, baseline in sorted(fp32.items()):
        candidates = [(VALUE[stage](c), c.key, stats(trials_of(space, c, index)))
                      for c in space.configurations if c.env_id == env_id and c.policy.quant is not None]
        out[env_id] = pick(stage, env_id, candidates, stats(baseline), rule, min_seeds)
    return out


def table(outcomes: list[StageOutcome], rule: Rule) -> str:
    """A stage's candidates per environment with their verdicts, the chosen one marked."""
    lines = [f"rule: {rule.describe()}"]
    for o in outcomes:
        lines.append(f"{o.env_id} ({LABEL[o.stage]}), FP32 {o.fp32} over {o.fp32.n} seeds:")
        for r in o.rows:
            mark = "<- selected" if r is o.chosen else ""
            seeds = f"{r.stats.n} seeds" + ("" if r.eligible else " (too few)")
            ret = str(r.stats) if r.stats.n else "-"
            if r.note.startswith("not needed") and not r.stats.n:
                lines.append(f"  {LABEL[o.stage]} {r.value:>4}  {'not trained':>20}  {r.note}")
                continue
            note = f"({r.note})" if r.note else ""
            lines.append(f"  {LABEL[o.stage]} {r.value:>4}  {ret:>20}  {seeds:<18} "
                         f"{'match' if r.verdict.match else 'no match':<9} {r.verdict.detail:<22} "
                         f"{mark or note}".rstrip())
        if o.chosen is None:
            lines.append("  no configuration matches FP32 in this stage")
    return "\n".join(lines)


def selection_table(outcome: dict) -> str:
    """The paper's Table 1: the selected configuration per environment beside FP32."""
    head = ("environment", "width", "core bits", "input bits", "return mean +- std", "FP32 mean +- std")
    rows = []
    for env, s in sorted(outcome["selected"].items()):
        rows.append((env, str(s["width"]), str(s["core_bits"]), str(s["input_bits"]),
                     f"{s['mean']:.1f} +- {s['std']:.1f}", f"{s['fp32_mean']:.1f} +- {s['fp32_std']:.1f}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [f"Selection {outcome['space']} (parity rule {outcome['rule']})",
             "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    for env, why in sorted(outcome["unmatched"].items()):
        lines.append(f"{env}: {why}; nothing selected")
    for stage, by_env in outcome["stages"].items():  # said plainly: decisions on less than the full evidence
        for env, o in sorted(by_env.items()):
            lines += [f"{env}: {LABEL[stage]} {r['value']} decided no match by {r['note']}" for r in o["rows"]
                      if r.get("note") and not r["note"].startswith("not needed")]
    return "\n".join(lines)


def cost_line(cost: dict) -> str:
    """What a selection trained, beside the full grid of its stages (selection.json's "cost")."""
    grid = cost["grid"]
    share = f" ({cost['spent'] / grid:.0%} of it)" if grid else ""
    return (f"environment steps: {cost['spent']:,} trained by this selection ({cost['trained']} trials, "
            f"{cost['stopped']} of them stopped early), {cost['reused']:,} reused from the tracking store; "
            f"the full grid of these stages: {grid:,}{share}")

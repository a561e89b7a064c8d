"""One selection stage's rule: the smallest candidate value whose configuration matches FP32
(paper 3.2). `pick` decides over the candidates' returns; lazy.Stage asks it value by value, and
walk.py walks the stages."""
from __future__ import annotations

from dataclasses import dataclass

from qsearch.select.parity import Rule, Verdict, verdict
from qsearch.select.results import Stats

# The value a stage varies, read off a configuration.
VALUE = {"core": lambda c: c.policy.quant.bits_weight, "width": lambda c: c.policy.width,
         "input": lambda c: c.policy.quant.bits_in, "lut": lambda c: sum(c.policy.luts)}
LABEL = {"core": "core bits", "width": "width", "input": "input bits", "lut": "LUT nodes"}


@dataclass(frozen=True)
class Candidate:
    value: int
    configuration: str
    stats: Stats
    verdict: Verdict
    eligible: bool  # enough finished seeds to be picked


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    env_id: str
    fp32: Stats
    rows: tuple[Candidate, ...]
    chosen: Candidate | None  # None: no configuration matches FP32, and the stage says so


def pick(stage: str, env_id: str, candidates: list[tuple[int, str, Stats]], fp32: Stats, rule: Rule,
         min_seeds: int) -> StageOutcome:
    """The smallest value whose configuration has min_seeds finished seeds and matches FP32.

    Smallest wins even when a larger one has the higher return: the point is the cheapest
    configuration that is good enough. A candidate short of seeds is never picked on partial evidence."""
    rows = [Candidate(value, key, s, verdict(s, fp32, rule), s.n >= min_seeds)
            for value, key, s in sorted(candidates, key=lambda c: c[0])]
    chosen = next((r for r in rows if r.eligible and r.verdict.match), None)
    return StageOutcome(stage, env_id, fp32, tuple(rows), chosen)

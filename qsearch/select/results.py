"""Statistics of finished trials over seeds: per configuration, the returns of its trained models.

The trials themselves are read from the tracking store by qsearch/trial_record.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from qsearch.trial_record import Trial


@dataclass(frozen=True)
class Stats:
    """Returns of one configuration over its seeds (one final return per trained model)."""

    returns: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.returns)

    @cached_property  # a lazy stage asks again and again (qsearch/select/lazy.py)
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @cached_property
    def std(self) -> float:
        # Population std over seeds, as the search's summary table prints it.
        return float(np.std(self.returns)) if self.returns else math.nan

    def __str__(self) -> str:
        return f"{self.mean:.1f} +- {self.std:.1f}"


def stats(trials: list[Trial]) -> Stats:
    ordered = sorted(trials, key=lambda t: t.seed)
    return Stats(tuple(t.final_return for t in ordered), tuple(t.seed for t in ordered))


def by_configuration(trials: list[Trial]) -> dict[str, Stats]:
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        groups.setdefault(t.configuration, []).append(t)
    return {k: stats(v) for k, v in groups.items()}


def groups(trials: list[Trial]) -> list[tuple[Trial, Stats]]:
    """(a trial standing for its configuration, the configuration's stats) per configuration."""
    first: dict[str, Trial] = {}
    for t in trials:
        first.setdefault(t.configuration, t)
    return [(first[k], s) for k, s in by_configuration(trials).items()]

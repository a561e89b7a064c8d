"""Finished trials read back from an MLflow tracking store, and their statistics over seeds.

A trial run (qsearch/search/trainable.py) carries its whole training configuration as params and
its final return as the metric `final_return`; these are the only things selection and reports
read. Two trials are the same experiment exactly when all their params agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qsearch.locate import store_error
from qsearch.search import tracking


@dataclass(frozen=True)
class Trial:
    run_id: str
    params: dict  # as MLflow stores them: strings
    final_return: float

    @property
    def env_id(self) -> str:
        return self.params["env_id"]

    @property
    def configuration(self) -> str:
        return self.params["configuration"]

    @property
    def seed(self) -> int:
        return int(self.params["seed"])

    @property
    def fp32(self) -> bool:
        return self.params["fp32"] == "True"

    @property
    def width(self) -> int:
        return int(self.params["width"])

    def bits(self, part: str) -> int | None:
        """bits of `part` (in, weight, act, out); None for FP32."""
        v = self.params[f"bits_{part}"]
        return None if v == "fp32" else int(v)


@dataclass(frozen=True)
class Stats:
    """Returns of one configuration over its seeds (one final return per trained model)."""

    returns: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.returns)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
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


FINISHED_TRIALS = "tags.`qsearch.kind` = 'trial' and attributes.status = 'FINISHED'"


def load(uri: str, experiment_ids: list[str] | None = None) -> list[Trial]:
    """The finished trial runs with a final return, in the given experiments (default: all)."""
    c = tracking.client(uri)
    try:
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in c.search_experiments()]
        if not experiment_ids:
            return []
        runs = c.search_runs(experiment_ids, filter_string=FINISHED_TRIALS, max_results=50_000)
    except Exception as e:
        raise store_error(uri, e) from None
    return [Trial(r.info.run_id, dict(r.data.params), float(r.data.metrics["final_return"]))
            for r in runs if "final_return" in r.data.metrics and "configuration" in r.data.params]


@dataclass
class Index:
    """Finished trials by their full params, to find the one that an identical request would repeat."""

    trials: list[Trial]
    _by_params: dict = field(default_factory=dict)

    def __post_init__(self):
        for t in sorted(self.trials, key=lambda t: t.run_id):  # several identical runs: a stable pick
            self._by_params.setdefault(_frozen(t.params), t)

    def find(self, params: dict) -> Trial | None:
        return self._by_params.get(_frozen({k: str(v)[:6000] for k, v in params.items()}))


def _frozen(params: dict) -> frozenset:
    return frozenset(params.items())

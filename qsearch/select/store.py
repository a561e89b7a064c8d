"""The tracking store as a source of a selection's results (walk.Source): every configuration x seed
that an identical finished trial answers (same params, from any search) is fed to the stage, and an
early rejection recorded there is fed only when it was decided under the stage's own settings
(threshold, parity rule, seeds); otherwise that value is trained again.

`qsearch select --plan` walks the store alone; `qsearch select` (selection.Training) trains what it
leaves open.
"""
from __future__ import annotations

from dataclasses import dataclass

from qsearch import tracking
from qsearch import trial_record as record
from qsearch.search.space import SearchSpace
from qsearch.select import lazy
from qsearch.select import selection_record as rec


@dataclass(frozen=True)
class Fed:
    """What the store gave one stage: trials in all, those it answered, and, counting each trial
    once over the stages (the earlier pick is a candidate of the next stage too), the new ones it
    answered and the new ones it left open."""

    total: int
    found: int
    new_found: int
    new_missing: int


class Store:
    def __init__(self, uri: str | None):
        self.uri = uri
        self.seen: set[str] = set()  # trial keys of the stages fed so far
        self.fed: dict[str, Fed] = {}  # stage -> what it was fed
        self._curves: dict[str, dict] = {}
        self.reload()

    def reload(self) -> None:
        """Read the store again (after a stage trained)."""
        self.index = record.Index(record.read_trials(self.uri) if self.uri else [])
        self.stopped = {s.key: s for s in (record.stopped_trials(self.uri) if self.uri else [])}

    def feed(self, stage: str, space: SearchSpace, lz: lazy.Stage) -> Fed:
        settings = lz.rejection_settings()
        total = found = new_found = new_missing = 0
        for conf in space.configurations:
            for seed in space.seeds:
                params = space.trial_params(conf, seed)
                key = record.trial_key(params)
                new = key not in self.seen
                self.seen.add(key)
                t = self.index.find(params)
                total += 1
                if t is not None:
                    found += 1
                    new_found += new
                    # FP32's curve is early rejection's yardstick; the values' curves are not needed.
                    fp32_curve = settings is not None and conf.policy.quant is None
                    lz.end(conf.key, seed, t.final_return, self._curve(t.run_id) if fp32_curve else None)
                    continue
                new_missing += new
                s = self.stopped.get(key)
                if s is not None and s.rejection is not None and settings is not None \
                        and s.settings == settings.to_json():
                    lz.reject(conf.key, seed, s.rejection)
        self.fed[stage] = Fed(total, found, new_found, new_missing)
        return self.fed[stage]

    def run(self, stage: str, space: SearchSpace, lz: lazy.Stage) -> bool:
        self.feed(stage, space, lz)
        return lz.next_trial() == lazy.FINISHED

    def trial(self, space: SearchSpace, conf, seed: int) -> rec.TrialRef | None:
        params = space.trial_params(conf, seed)
        t = self.index.find(params)
        if t is not None:
            return rec.TrialRef(seed, t.run_id, t.final_return)
        s = self.stopped.get(record.trial_key(params))
        if s is None:
            return None
        return rec.TrialRef(seed, s.run_id, None, s.why, self._curve(s.run_id))

    def _curve(self, run_id: str) -> dict:
        if run_id not in self._curves:
            self._curves[run_id] = record.eval_history(tracking.client(self.uri), run_id)
        return self._curves[run_id]

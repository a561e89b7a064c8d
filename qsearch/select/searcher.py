"""A lazy stage on Ray Tune: a Searcher that suggests its trials one at a time, and a Stopper that
stops the running trials it no longer needs. Both drive one qsearch/select/lazy.py Stage.

Tune asks a custom searcher for one pending trial at a time (ray 2.60: `max_pending_trials` is 1
unless max_concurrent_trials is set), so a trial is suggested when a slot frees up, and a value
that a smaller one made unnecessary is never suggested: its trials never start. Once the stage is
decided, `suggest` returns Searcher.FINISHED. Running trials of values that became unnecessary, and
trials that early rejection rejects, are stopped at their next report (every 1,000 steps) through
Tune's own stop machinery: the trainable records them KILLED, and the selection tags the reason
(qsearch/trial_record.py mark_stopped).
"""
from __future__ import annotations

import pickle

from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from qsearch import trial_record as record
from qsearch.select import lazy


class LazySearcher(Searcher):
    """Suggests the trials a lazy stage wants, in its order; learns from every trial that ends."""

    def __init__(self, stage: lazy.Stage):
        super().__init__()
        self.stage = stage
        self.trials: dict[str, tuple[str, int]] = {}  # Tune trial id -> (configuration key, seed)
        # trial id -> (why, early rejection detail, the settings it was decided under), for mark_stopped
        self.stopped: dict[str, tuple[str, str | None, dict | None]] = {}
        self.steps_spent = 0  # environment steps of the trials this search ran, stopped ones to their stop
        self.borrowed = 0  # trials that took the result of another search's run of them (trial_record.claim)
        self.stopper = LazyStopper(self)

    def suggest(self, trial_id: str):
        nxt = self.stage.next_trial()
        if nxt is None:
            return None
        if nxt == lazy.FINISHED:
            return Searcher.FINISHED
        self.stage.start(*nxt)
        self.trials[trial_id] = nxt
        return {"configuration": nxt[0], "seed": nxt[1]}

    # Tune saves its searcher with the experiment; a selection carries on from the tracking store
    # instead, but the state is saved whole (and Tune warns about a searcher that cannot save).
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump((self.stage, self.trials, self.stopped, self.steps_spent, self.borrowed), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.stage, self.trials, self.stopped, self.steps_spent, self.borrowed = pickle.load(f)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key, seed = self.trials[trial_id]
        result = result or {}
        if result.get(record.REUSED_RESULT):
            self.borrowed += 1  # trained by another search at the same time: reused, not spent
        else:
            self.steps_spent += int(result.get("step", 0))
        self.stage.end(key, seed, None if error else result.get(record.FINAL_RETURN))


class LazyStopper(Stopper):
    """Stops a running trial once its value is not needed, or when early rejection rejects it."""

    def __init__(self, searcher: LazySearcher):
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict) -> bool:
        if record.FINAL_RETURN in result or trial_id not in self.searcher.trials:
            return False  # the trial's closing report: it finished
        key, seed = self.searcher.trials[trial_id]
        stage = self.searcher.stage
        why = stage.not_needed(key)
        detail = None
        if why is None:
            detail = stage.result(key, seed, int(result.get("step", 0)), result.get(record.EVAL_RETURN))
            why = None if detail is None else f"early rejection: {detail}"
        if why is None:
            return False
        settings = None if detail is None else stage.rejection_settings().to_json()
        self.searcher.stopped[trial_id] = (why, detail, settings)
        return True

    def stop_all(self) -> bool:
        return False

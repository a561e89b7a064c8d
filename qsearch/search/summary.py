"""The live view of a search (a Tune callback printing one line per change) and the final table."""
from __future__ import annotations

import math
import sys
import time
from collections import defaultdict

from ray.tune import Callback

from qsearch.trial_record import FINAL_RETURN


class LiveView(Callback):
    """One line whenever a trial reports a new best return, ends or fails, with the counts of running,
    done, failed and pending trials. Not on a trial's start: the next trial starts as soon as one
    ends, and a line for each would double the output without news.

    Tune's own table reporter is switched off (verbose=0): it prints every few seconds whether or
    not anything changed, which buries the news on a long search."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream
        self.best = None  # (return, trial label)
        self.last_line = None

    def _label(self, trial) -> str:
        c = trial.config
        return f"{c.get('configuration')} seed {c.get('seed')}"

    def _print(self, trials) -> None:
        counts = defaultdict(int)
        for t in trials:
            counts[t.status] += 1
        best = "-" if self.best is None else f"{self.best[0]:.1f} ({self.best[1]})"
        line = (f"trials {self.total}: running {counts['RUNNING']}, done {counts['TERMINATED']}, "
                f"failed {counts['ERROR']}, pending {counts['PENDING']}; best return {best}")
        if line != self.last_line:
            self.last_line = line
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=self.stream or sys.stdout, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        r = result.get("eval_return")
        if r is not None and math.isfinite(r) and (self.best is None or r > self.best[0]):
            self.best = (r, self._label(trial))
        self._print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials)

    def print_results(self, results) -> None:
        """The closing line, from the final results (Tune calls no callback after the last trial ends)."""
        r = rows(results)
        done = [x["final_return"] for x in r if x["status"] == "done"]
        best = f"{max(done):.1f}" if done else "-"
        print(f"[{time.strftime('%H:%M:%S')}] trials {len(r)}: done {len(done)}, "
              f"failed {sum(x['status'] == 'failed' for x in r)}, stopped {sum(x['status'] == 'stopped' for x in r)}; "
              f"best final return {best}", file=self.stream or sys.stdout, flush=True)

    def __getstate__(self):  # pickled with the experiment for resume: never a stream
        d = dict(self.__dict__)
        d["stream"] = None
        return d


def rows(results) -> list[dict]:
    """One row per trial from a Tune ResultGrid."""
    out = []
    for r in results:
        cfg = r.config or {}
        m = r.metrics or {}
        out.append({"configuration": cfg.get("configuration"), "seed": cfg.get("seed"),
                    "status": "failed" if r.error else ("done" if FINAL_RETURN in m else "stopped"),
                    "final_return": m.get(FINAL_RETURN), "cost": m.get("cost"),
                    "train_seconds": m.get("train_seconds"), "work_seconds": m.get("work_seconds"),
                    "trial_seconds": m.get("trial_seconds"),
                    "error": None if r.error is None else str(r.error).strip().splitlines()[-1][:200]})
    return out


def table(trial_rows: list[dict]) -> str:
    """Configurations with mean +- std of the final return over their finished seeds."""
    groups = defaultdict(list)
    failed, stopped = defaultdict(int), defaultdict(int)  # stopped: by the scheduler (ASHA), early
    for r in trial_rows:
        if r["status"] == "done":
            groups[r["configuration"]].append(r["final_return"])
        elif r["status"] == "failed":
            failed[r["configuration"]] += 1
        else:
            stopped[r["configuration"]] += 1
    keys = sorted(set(groups) | set(failed) | set(stopped), key=str)
    width = max([len("configuration")] + [len(str(k)) for k in keys])
    lines = [f"{'configuration':<{width}}  {'seeds':>5}  {'failed':>6}  {'stopped':>7}  {'return mean +- std':>22}"]
    for k in keys:
        v = groups.get(k, [])
        if v:
            mean = sum(v) / len(v)
            std = math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))
            stat = f"{mean:10.1f} +- {std:8.1f}"
        else:
            stat = "-"
        lines.append(f"{str(k):<{width}}  {len(v):>5}  {failed[k]:>6}  {stopped[k]:>7}  {stat:>22}")
    return "\n".join(lines)

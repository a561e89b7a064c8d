"""What qsearch records in MLflow, and how it reads it back: the one definition of a trial's record.

A search is a parent run; each trial (one configuration x one seed) is a nested child run; a
selection is a run of its own. Every param, metric, tag and filter string that qsearch writes or
reads is named here, and nowhere else:

    trial run   params   the trial's whole training configuration (`trial_params`), as strings
                metrics  progress over environment steps (PROGRESS_METRICS), then the summary
                         (`trial_summary`: FINAL_RETURN, ...) at the last step
                tags     KIND_TAG=trial, PARENT_TAG, TRIAL_ID_TAG (Tune's id), KEY_TAG (`trial_key`),
                         VERSION_TAG, MACHINE_TAGS (CPU, torch's kernel level, library versions); STOPPED_TAG / ERROR_TAG when it did not finish, and STOP_REASON_TAG
                         (+ REJECTED_TAG, REJECTION_SETTINGS_TAG) when a lazy selection stopped it; SELECTED_TAG when a
                         selection picked it; HW_SOURCE_TAG and hw_* metrics after `qsearch hw`
                artifacts bundle/ (the policy bundle), hw/ (the hardware report), policy/ (a registered
                         MLflow model, after `qsearch export --format mlflow`)
    selection run metrics  STEPS_SPENT, STEPS_REUSED and STEPS_GRID: what the selection cost

A trial's identity is its key: SHA-256 over the canonical JSON (sorted keys, no spaces) of its
identity params, as MLflow stores them (strings). The identity params are all params except
NOT_IDENTITY, and except a param whose value is the one it was INTRODUCED with. So adding a
parameter later does not orphan finished trials: register it in INTRODUCED with the value that
reproduces what qsearch did before it existed, and every earlier trial keeps its key.

Two runs of one trial: several FINISHED runs can share a key (two selections sharing a store that
both trained it, a search repeated by hand). They hold the same trial, so every reader counts it once:
`read_trials` and `selected_trials` keep, per key, the run that finished first (then the smallest run
id), a choice that later runs of the key never change. While a trial trains, its RUNNING run (with
KEY_TAG) is the trial's claim: a selection's trial that finds an older live claim on its key waits
for it and reuses its result instead of training the same trial at the same time (`claim`).

Record versions: RECORD_VERSION is written as a tag. Runs without it were written before the tag
existed, with the same params, and are read as version 1; a run of a newer version is refused in
one line rather than misread.

A tracking server that stops for a while (restarted, moved, overloaded) loses nothing: a trial's
progress metrics wait in a buffer (ProgressLog) while training goes on, and the writes that must
arrive (a run's start and end, the summary and the bundle, the search's counts) are retried with
capped exponential backoff for up to PATIENCE seconds, after which they fail in one line naming the
store. Every retried write is idempotent: metrics keep the step and time they were logged with (MLflow's
SQL store ignores an identical row sent twice), params, tags, statuses and artifacts overwrite
themselves, and a trial's run created before a lost answer is closed as KILLED by the retry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from qsearch import machine, tracking
from qsearch.config import TrainConfig
from qsearch.errors import QsearchError

RECORD_VERSION = 1

# Tags
KIND_TAG = "qsearch.kind"  # SEARCH, TRIAL or SELECTION
SEARCH, TRIAL, SELECTION = "search", "trial", "selection"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI folds trials under their search
TRIAL_ID_TAG = "qsearch.trial_id"  # Ray Tune's trial id: a retry of a trial finds its stale run
KEY_TAG = "qsearch.trial_key"
VERSION_TAG = "qsearch.record_version"
SELECTED_TAG = "qsearch.selected"  # "true" on the seeds of each selected configuration
SELECTION_TAG = "qsearch.selection"  # the name of the selection that selected them
STOPPED_TAG = "qsearch.stopped"  # why a trial was stopped early (status KILLED)
HEARTBEAT_TAG = "qsearch.heartbeat"  # unix time a training trial last said it is alive (see `claim`)
REUSED_TAG = "qsearch.reused"  # the run whose result a trial took instead of training (status KILLED; see `claim`)
ERROR_TAG = "qsearch.error"  # the exception of a failed trial (status FAILED)
CONTINUED_TAG = "qsearch.continued_from_step"  # this attempt continued an earlier one's checkpoint
STOP_REASON_TAG = "qsearch.stop_reason"  # why a lazy selection stopped it: not needed, or early rejection
REJECTED_TAG = "qsearch.early_rejection"  # the checkpoint that rejected it: its value stays "no match"
REJECTION_SETTINGS_TAG = "qsearch.early_rejection_settings"  # JSON: what it was decided under (reused only under the same)
MACHINE_TAGS = {"cpu": "qsearch.machine.cpu", "cpu_capability": "qsearch.machine.cpu_capability",
                "python": "qsearch.machine.python", "versions": "qsearch.machine.versions"}  # where it ran
DEVICE_TAG = "qsearch.machine.device"  # where the learner trained: cpu or cuda (a tag: not part of the trial's key)
DEVICE_NOTE_TAG = "qsearch.machine.device_note"  # why a trial that asked for a GPU trained on the CPU
HW_SOURCE_TAG = "qsearch.hw.source"  # where the hw_* figures come from (FINN estimate, synthesis)

# Metrics
PROGRESS_METRICS = ("steps_per_s", "eval_return_mean", "eval_return_std", "qf_loss", "actor_loss", "alpha",
                    "vf_loss", "entropy")  # the last two: PPO
EVAL_RETURN = "eval_return_mean"  # over environment steps: the training curve
FINAL_RETURN = "final_return"  # the final evaluation of the trained policy: what selection compares
SUMMARY_METRICS = (FINAL_RETURN, "final_return_std", "final_return_int", "train_seconds", "work_seconds", "cost")
HW_METRIC_PREFIX = "hw_"
REUSED_RESULT = "reused"  # in a trial's last Tune result: 1 when it took another run's result (see `claim`)
STEPS_SPENT = "env_steps_spent"  # a selection's: environment steps of the trials it trained (stopped: to the stop)
STEPS_REUSED = "env_steps_reused"  # of the trials it took from the store
STEPS_GRID = "env_steps_full_grid"  # of the full grid of its stages: every value x seed

# Artifacts
BUNDLE_ARTIFACT = "bundle"
MODEL_ARTIFACT = "policy"  # the pyfunc model `qsearch export --format mlflow` logs to a trial's run
HW_ARTIFACT = "hw"
REPORT_ARTIFACT = "report"

# Params
PARAM_VALUE_MAX = 6_000  # MLflow's cap on a param value; ours are short, but never fail a trial on it
NOT_IDENTITY = ("configuration",)  # a readable label derived from the others
INTRODUCED: dict[str, str] = {"observe": "all", "encoder": "none", "policy": "mlp"}  # param -> the value that reproduces trials recorded before it existed

RECURRENT_ONLY = ("sequence_length", "burn_in", "critic_encoder_width")  # algo_config fields only a recurrent policy reads

FINISHED_TRIALS = f"tags.`{KIND_TAG}` = '{TRIAL}' and attributes.status = 'FINISHED'"

# Writing through an outage of the tracking server (see the module's docstring).
PATIENCE = 600.0  # seconds a write that must arrive is retried before the trial or search fails: a server
#                   restarted or moved is back in tens of seconds; one gone for longer needs a person
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0  # seconds: the wait after a first failed write, doubling up to this

_log = logging.getLogger(__name__)


class StoreUnreachable(QsearchError):
    """The tracking store did not take a write for PATIENCE seconds."""


def _patiently(uri: str, what: str, write, patience: float | None = None):
    """write(), tried again with capped exponential backoff while the store does not answer (see
    tracking.transient), for up to `patience` seconds (PATIENCE); then a StoreUnreachable in one line.
    A refusal (a bad value, a missing run) raises at once. `write` must be safe to repeat."""
    patience = PATIENCE if patience is None else patience
    deadline, wait = time.monotonic() + patience, BACKOFF_FIRST
    while True:
        try:
            with tracking.one_attempt():
                return write()
        except Exception as e:
            if not tracking.transient(e):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                first = str(e).splitlines()[0] if str(e) else ""
                raise StoreUnreachable(f"MLflow tracking store {uri} did not answer for {patience:.0f} s while "
                                       f"{what}: {type(e).__name__}: {first}") from None
            _log.warning("MLflow tracking store %s did not answer while %s; trying again in %.0f s", uri, what,
                         min(wait, left))
            time.sleep(min(wait, left))
            wait = min(2 * wait, BACKOFF_MAX)


def encode(params: dict) -> dict[str, str]:
    """Params as MLflow stores them: strings, capped."""
    return {str(k): str(v)[:PARAM_VALUE_MAX] for k, v in params.items()}


def trial_params(cfg: TrainConfig, configuration: str, final_episodes: int) -> dict[str, str]:
    """A trial's params: its whole training configuration, plus its configuration's label."""
    p, q = cfg.policy, cfg.policy.quant
    bits = {f"bits_{b}": "fp32" if q is None else getattr(q, f"bits_{b}") for b in ("in", "weight", "act", "out")}
    # A stateless policy records none of the recurrent settings: they change nothing it does.
    encoder = {"encoder": p.encoder, **({"encoder_width": p.encoder_width} if p.recurrent else {})}
    # An mlp policy records none of the lut settings, likewise.
    lut = {"thermometer_bits": p.thermometer_bits, "luts": ",".join(map(str, p.luts)), "lut_inputs": p.lut_inputs,
           "mapping": p.mapping} if p.lut else {}
    algo = {k: v for k, v in vars(cfg.algo_config).items() if p.recurrent or k not in RECURRENT_ONLY}
    return encode({"env_id": cfg.env_id, "algo": cfg.algo, "fp32": q is None, **bits,
                   "policy": p.kind, **lut, "width": p.width, "depth": p.depth, **encoder, "seed": cfg.seed, "steps": cfg.total_steps,
                   "eval_every": cfg.eval_every, "eval_episodes": cfg.eval_episodes,
                   "final_episodes": final_episodes, "configuration": configuration, "observe": cfg.observe,
                   **{f"algo_config.{k}": v for k, v in algo.items()}})


def trial_key(params: dict[str, str]) -> str:
    """The trial's identity (see the module's docstring), e.g. 'v1-3f9a...'."""
    ident = {k: v for k, v in params.items() if k not in NOT_IDENTITY and INTRODUCED.get(k) != v}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"v{RECORD_VERSION}-{digest[:24]}"


@dataclass(frozen=True)
class Trial:
    """A finished trial read back from the store."""

    run_id: str
    params: dict  # as MLflow stores them: strings
    final_return: float
    summary: dict = field(default_factory=dict, compare=False)  # SUMMARY_METRICS and hw_* metrics it has
    ended: int = field(default=0, compare=False)  # MLflow's end time (ms): of several runs of a key, the first wins

    @property
    def key(self) -> str:
        return trial_key(self.params)

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
    def family(self) -> str:
        """mlp (a network) or lut (a logic circuit); trials recorded before the lut family: mlp."""
        return self.params.get("policy", INTRODUCED["policy"])

    @property
    def width(self) -> int:
        return int(self.params["width"])

    def bits(self, part: str) -> int | None:
        """bits of `part` (in, weight, act, out); None for FP32."""
        v = self.params[f"bits_{part}"]
        return None if v == "fp32" else int(v)


def _trial(run) -> Trial | None:
    """The Trial of a finished trial run; None for a run without a final return (never a trial's)."""
    version = run.data.tags.get(VERSION_TAG, "1")
    if not version.isdigit() or int(version) > RECORD_VERSION:
        raise QsearchError(f"run {run.info.run_id} was recorded by a newer qsearch (record version {version}, "
                           f"this one reads up to {RECORD_VERSION}): upgrade qsearch to read this store")
    if FINAL_RETURN not in run.data.metrics or "configuration" not in run.data.params:
        return None
    m = run.data.metrics
    summary = {k: v for k, v in m.items() if k in SUMMARY_METRICS or k.startswith(HW_METRIC_PREFIX)}
    return Trial(run.info.run_id, dict(run.data.params), float(m[FINAL_RETURN]), summary, run.info.end_time or 0)


def _runs(uri: str, filter_string: str, experiment_ids: list[str] | None = None) -> list:
    c = tracking.client(uri)
    try:
        ids = tracking.all_experiments(c) if experiment_ids is None else experiment_ids
        return tracking.search_all(c, ids, filter_string)
    except QsearchError:
        raise
    except Exception as e:
        raise tracking.store_error(uri, e) from None


def _read(uri: str, experiment_ids: list[str] | None, filter_string: str) -> list[Trial]:
    return one_per_key([t for t in map(_trial, _runs(uri, filter_string, experiment_ids)) if t is not None])


def _first(t: Trial) -> tuple:
    """Of several finished runs of one key, the one that finished first (then the smallest run id): a
    run finishing later never displaces it, so a selection record's run ids stay what readers pick."""
    return t.ended, t.run_id


def one_per_key(trials: list[Trial]) -> list[Trial]:
    """One run per trial key (the first finished, `_first`), in the order given: so that two runs of
    one trial never count twice."""
    first: dict[str, Trial] = {}
    for t in trials:
        if t.key not in first or _first(t) < _first(first[t.key]):
            first[t.key] = t
    return [t for t in trials if first[t.key] is t]


def read_trials(uri: str, experiment_ids: list[str] | None = None) -> list[Trial]:
    """Every finished trial with a final return, in the given experiments (default: all), once per key."""
    return _read(uri, experiment_ids, FINISHED_TRIALS)


def selected_trials(uri: str) -> list[Trial]:
    """The finished trials a selection tagged, in every experiment, by environment and seed, once per key."""
    found = _read(uri, None, f"{FINISHED_TRIALS} and tags.`{SELECTED_TAG}` = 'true'")
    return sorted(found, key=lambda t: (t.env_id, t.seed, t.run_id))


@dataclass
class Index:
    """Finished trials by key, to find the one that an identical request would repeat."""

    trials: list[Trial]
    _by_key: dict = field(default_factory=dict)

    def __post_init__(self):
        for t in sorted(self.trials, key=_first):  # several runs of one trial: the one every reader picks
            self._by_key.setdefault(t.key, t)

    def find(self, params: dict[str, str]) -> Trial | None:
        return self._by_key.get(trial_key(params))


# Writing. Each function is one step of a run's life as the search, the trainable and the
# selection go through it.

def start_search(uri: str, experiment_id: str, name: str, params: dict) -> str:
    c = tracking.client(uri)
    # Not idempotent: an answer lost after the server created the run leaves a second, empty parent
    # RUNNING (a server stopped with SIGTERM answers what it has taken before it exits).
    run_id = _patiently(uri, f"starting search {name}",
                        lambda: c.create_run(experiment_id, run_name=name, tags={KIND_TAG: SEARCH}).info.run_id)
    _patiently(uri, f"starting search {name}", lambda: tracking.log_params(c, run_id, encode(params)))
    return run_id


def start_trial(uri: str, experiment_id: str, parent_run_id: str, trial_id: str, name: str,
                params: dict[str, str]):
    """A fresh child run for a trial. A run left RUNNING by an earlier attempt of the same trial (a
    retry, or a driver killed mid-search) is marked KILLED, so the finished children are exactly
    the finished trials. Returns (client, run id)."""
    c = tracking.client(uri)
    where = machine.describe()
    tags = {PARENT_TAG: parent_run_id, TRIAL_ID_TAG: trial_id, KIND_TAG: TRIAL, KEY_TAG: trial_key(params),
            VERSION_TAG: str(RECORD_VERSION),
            **{tag: where[k] if isinstance(where[k], str) else json.dumps(where[k], sort_keys=True)
               for k, tag in MACHINE_TAGS.items()}}

    def create() -> str:  # tried again as a whole: a run created before a lost answer is closed as stale
        _close_stale(c, experiment_id, trial_id, "KILLED")
        return c.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    run_id = _patiently(uri, f"starting trial {trial_id}", create)
    _patiently(uri, f"starting trial {trial_id}", lambda: tracking.log_params(c, run_id, params))
    return c, run_id


def close_stale(uri: str, experiment_id: str, trial_id: str, status: str):
    """End the runs of a trial that an earlier attempt left RUNNING with `status`. Returns the client."""
    c = tracking.client(uri)
    _patiently(uri, f"closing the stale runs of trial {trial_id}",
               lambda: _close_stale(c, experiment_id, trial_id, status))
    return c


def _close_stale(c, experiment_id: str, trial_id: str, status: str) -> None:
    stale = tracking.search_all(c, [experiment_id], f"tags.`{TRIAL_ID_TAG}` = '{trial_id}' and "
                                                    "attributes.status = 'RUNNING'")
    for r in stale:
        c.set_terminated(r.info.run_id, status)


class ProgressLog:
    """A trial's progress metrics on their way to its run, never holding training up for long.

    Each `log` makes one attempt (at most tracking.REQUEST_TIMEOUT) to send what is waiting, in the
    order it was logged; what the store does not take stays in the buffer, and `log` returns. After a
    failed send, the next ones wait out a capped exponential backoff (BACKOFF_FIRST doubling up to
    BACKOFF_MAX; `log` calls in between only buffer), so a trial reporting every 1,000 steps tries a
    stopped server at most every BACKOFF_MAX seconds. `flush` (before the trial's summary) sends the
    rest, patiently. No thread: the trial's next report, or its end, is the next chance to send.
    The buffer has no cap: a trial reports about 8 numbers per 1,000 steps, ~8,000 over 1M steps."""

    def __init__(self, uri: str, c, run_id: str):
        self.uri, self.c, self.run_id = uri, c, run_id
        self.pending: list = []  # MLflow Metrics not yet taken, oldest first
        self.wait = 0.0  # the backoff after the last failed send; 0 after a send that went through
        self.next_try = 0.0  # time.monotonic() before which `log` only buffers

    def log(self, metrics: dict, step: int) -> None:
        """Buffer `metrics` at `step`, stamped now, and send what is waiting unless backing off."""
        self.pending += tracking.metric_items(metrics, step)
        if time.monotonic() < self.next_try:
            return
        try:
            with tracking.one_attempt():
                self._send()
            self.wait = 0.0
        except Exception as e:
            if not tracking.transient(e):
                raise
            self.wait = min(max(2 * self.wait, BACKOFF_FIRST), BACKOFF_MAX)
            self.next_try = time.monotonic() + self.wait
            _log.warning("MLflow tracking store %s did not take trial metrics at step %d (%d waiting); "
                         "trying again after %.0f s", self.uri, step, len(self.pending), self.wait)

    def flush(self) -> None:
        """Send every waiting metric, retried up to PATIENCE; then StoreUnreachable."""
        if self.pending:
            _patiently(self.uri, f"writing the metrics of run {self.run_id}", self._send)

    def _send(self) -> None:
        while self.pending:  # a batch at a time, dropped from the buffer once taken: nothing sent twice
            batch = self.pending[:tracking.METRICS_PER_CALL]
            tracking.log_metric_items(self.c, self.run_id, batch)
            del self.pending[:len(batch)]


def trial_summary(evaluation: dict, work_seconds: float, cost: int) -> dict[str, float]:
    """A finished trial's summary metrics, from its bundle's evaluation."""
    out = {FINAL_RETURN: evaluation["torch"]["mean"], "final_return_std": evaluation["torch"]["std"],
           "train_seconds": evaluation["train_seconds"], "work_seconds": work_seconds, "cost": cost}
    if "int" in evaluation:
        out["final_return_int"] = evaluation["int"]["mean"]
    return out


def finish_trial(c, run_id: str, summary: dict, step: int, bundle_dir: str) -> None:
    """The summary metrics and the bundle, each retried up to PATIENCE; the run stays RUNNING until
    `end_trial`."""
    items = tracking.metric_items(summary, step)  # stamped once: a retry sends the same rows
    _patiently(c.tracking_uri, f"writing the summary of run {run_id}",
               lambda: tracking.log_metric_items(c, run_id, items))
    _patiently(c.tracking_uri, f"uploading the bundle of run {run_id}",
               lambda: c.log_artifacts(run_id, bundle_dir, artifact_path=BUNDLE_ARTIFACT))


def end_trial(c, run_id: str, stopped: str | None = None, error: str | None = None,
              patience: float | None = None) -> None:
    """FINISHED; KILLED with the reason when a scheduler stopped it; FAILED with the error. Retried up
    to `patience` seconds (PATIENCE)."""
    def end():
        if stopped is not None:
            c.set_tag(run_id, STOPPED_TAG, stopped)
            c.set_terminated(run_id, "KILLED")
        elif error is not None:
            c.set_tag(run_id, ERROR_TAG, error[:5000])
            c.set_terminated(run_id, "FAILED")
        else:
            c.set_terminated(run_id, "FINISHED")

    _patiently(c.tracking_uri, f"ending run {run_id}", end, patience)


def finish_search(uri: str, experiment_id: str, parent_run_id: str, done_returns: list[float], failed: int,
                  files: list[str]) -> None:
    """Close what died unclosed, log the search's counts and files, and end the parent run: FAILED when
    a trial failed (trials stopped early by a scheduler did what it asked)."""
    c = tracking.client(uri)
    counts = {"trials_done": len(done_returns), "trials_failed": failed}
    if done_returns:
        counts["best_final_return"] = max(done_returns)
    items = tracking.metric_items(counts, 0)  # stamped once: a retry sends the same rows

    def finish():  # every step overwrites itself: tried again as a whole
        # A trial whose worker died before it could close its child run (killed, or out of memory) left it RUNNING.
        running = tracking.search_all(c, [experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}' and "
                                                          "attributes.status = 'RUNNING'")
        for r in running:
            c.set_terminated(r.info.run_id, "KILLED")
        tracking.log_metric_items(c, parent_run_id, items)
        for f in files:
            c.log_artifact(parent_run_id, f)
        c.set_terminated(parent_run_id, "FAILED" if failed else "FINISHED")

    _patiently(uri, f"ending search run {parent_run_id}", finish)


def start_selection(uri: str, experiment_id: str, name: str, params: dict) -> str:
    c = tracking.client(uri)
    # Patient as start_search is, and not idempotent in the same way.
    run_id = _patiently(uri, f"starting selection {name}",
                        lambda: c.create_run(experiment_id, run_name=name, tags={KIND_TAG: SELECTION}).info.run_id)
    _patiently(uri, f"starting selection {name}", lambda: tracking.log_params(c, run_id, encode(params)))
    return run_id


def mark_stopped(uri: str, stopped: dict[str, tuple[str, str | None, dict | None]]) -> None:
    """Tag the runs of trials a lazy selection stopped: trial id -> (why, early rejection detail or
    None, the settings it was decided under or None)."""
    c = tracking.client(uri)

    def tag_all():  # reads and tags only: safe to repeat after an outage
        for trial_id, (why, rejected, settings) in stopped.items():
            for r in _runs(uri, f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'"):
                c.set_tag(r.info.run_id, STOP_REASON_TAG, why)
                if rejected is not None:
                    c.set_tag(r.info.run_id, REJECTED_TAG, rejected)
                    c.set_tag(r.info.run_id, REJECTION_SETTINGS_TAG, json.dumps(settings, sort_keys=True))

    _patiently(uri, "tagging the stopped trials", tag_all)


@dataclass(frozen=True)
class Stopped:
    """A trial a lazy selection stopped (status KILLED, with its reason)."""

    run_id: str
    key: str
    seed: int
    why: str
    rejection: str | None
    """the early rejection's detail; None: stopped as not needed"""
    settings: dict | None
    """what the early rejection was decided under; None for a rejection recorded before they were kept"""


def stopped_trials(uri: str) -> list[Stopped]:
    """Every trial a lazy selection stopped, in every experiment."""
    killed = _runs(uri, f"tags.`{KIND_TAG}` = '{TRIAL}' and attributes.status = 'KILLED'")
    out = []
    for r in killed:
        tags = r.data.tags
        if STOP_REASON_TAG not in tags:
            continue
        settings = tags.get(REJECTION_SETTINGS_TAG)
        out.append(Stopped(r.info.run_id, trial_key(dict(r.data.params)), int(r.data.params["seed"]),
                           tags[STOP_REASON_TAG], tags.get(REJECTED_TAG), json.loads(settings) if settings else None))
    return out


def log_selection_cost(uri: str, run_id: str, spent: int, reused: int, grid: int) -> None:
    c, items = tracking.client(uri), tracking.metric_items({STEPS_SPENT: spent, STEPS_REUSED: reused, STEPS_GRID: grid}, 0)
    _patiently(uri, f"writing the cost of selection run {run_id}", lambda: tracking.log_metric_items(c, run_id, items))


def set_selected(uri: str, envs: list[str], run_ids: list[str], selection: str | None = None) -> None:
    """Tag `run_ids` as selected (by the selection named `selection`); the tag an earlier selection
    left on these environments is cleared."""
    c = tracking.client(uri)

    def tag_all():  # reads and tags only: safe to repeat after an outage
        # Every tagged run, not one per key: a second run of a trial tagged by another selection is cleared too.
        for r in _runs(uri, f"{FINISHED_TRIALS} and tags.`{SELECTED_TAG}` = 'true'"):
            if r.data.params.get("env_id") in envs:
                c.set_tag(r.info.run_id, SELECTED_TAG, "false")
        for run_id in run_ids:
            c.set_tag(run_id, SELECTED_TAG, "true")
            if selection:
                c.set_tag(run_id, SELECTION_TAG, selection)

    _patiently(uri, "tagging the selected trials", tag_all)


def eval_history(c, run_id: str) -> dict[int, float]:
    """The training curve of a trial: environment step -> mean evaluation return."""
    return {m.step: m.value for m in c.get_metric_history(run_id, EVAL_RETURN)}


def log_report(uri: str, run_id: str, report_dir: str) -> None:
    tracking.client(uri).log_artifacts(run_id, report_dir, artifact_path=REPORT_ARTIFACT)


def registered_model_name(uri: str, run_id: str) -> str:
    """One registered model per search or selection and task: `<space name>-<env id>`. A selected run
    is named by its selection, not by the stage search (`<name>.core`, ...) that trained it."""
    c = tracking.client(uri)
    run = c.get_run(run_id)
    space = run.data.tags.get(SELECTION_TAG) or c.get_experiment(run.info.experiment_id).name
    return f"{space}-{run.data.params['env_id']}"


def log_hardware(uri: str, run_id: str, figures: dict[str, float], source: str, report_dir: str) -> None:
    """The chosen hardware design's figures (as hw_<name> metrics), their source and the report."""
    c = tracking.client(uri)
    tracking.log_metrics(c, run_id, {HW_METRIC_PREFIX + k: v for k, v in figures.items()}, step=0)
    c.set_tag(run_id, HW_SOURCE_TAG, source)
    c.log_artifacts(run_id, report_dir, artifact_path=HW_ARTIFACT)


# Claims: a RUNNING trial run is its trial's claim (it carries KEY_TAG from its start). A trial that has
# gone quiet this long is taken for dead (its worker killed, its run never closed) and its claim is
# ignored. A live trial beats every HEARTBEAT_SECONDS; it reports every 1,000 environment steps (seconds
# on these machines), and an evaluation takes well under a minute, so ten minutes of silence is not a
# live trial. The cost of a wrong guess either way is only compute: a claim taken for dead lets its
# trial train twice (readers still count it once); a dead claim taken for live delays a trial by this.
CLAIM_STALE_SECONDS = 600.0
HEARTBEAT_SECONDS = 60.0
CLAIM_POLL_SECONDS = 5.0  # one small store query per waiting trial
_beats: dict[str, float] = {}  # run id -> when this process last set its heartbeat


def heartbeat(c, run_id: str, now: float | None = None) -> None:
    """Say that a trial's run is alive (its claim), at most once a HEARTBEAT_SECONDS."""
    now = time.time() if now is None else now
    if now - _beats.get(run_id, 0.0) >= HEARTBEAT_SECONDS:
        try:
            with tracking.one_attempt():  # best effort, like the progress metrics: a stopped server holds nothing up
                c.set_tag(run_id, HEARTBEAT_TAG, f"{now:.0f}")
        except Exception as e:
            if not tracking.transient(e):
                raise
            return  # tried again at the next report
        _beats[run_id] = now


def continued(c, run_id: str, step: int) -> None:
    """Mark a trial's run as the attempt that continued an earlier one's checkpoint at `step`."""
    _patiently(c.tracking_uri, f"tagging run {run_id}", lambda: c.set_tag(run_id, CONTINUED_TAG, str(step)))


def trained_on(c, run_id: str, device: str, note: str | None = None) -> None:
    """Tag a trial's run with the device its learner trains on, and the note of a GPU asked for but not used."""
    def tag():
        c.set_tag(run_id, DEVICE_TAG, device)
        if note is not None:
            c.set_tag(run_id, DEVICE_NOTE_TAG, note)

    _patiently(c.tracking_uri, f"tagging run {run_id}", tag)


def live_claims(uri: str, key: str, run_id: str, stale_after: float = CLAIM_STALE_SECONDS) -> list[str]:
    """Run ids of the live claims on trial `key` older than run `run_id`'s (by start time, then run id):
    RUNNING trial runs of the key that were heard from within `stale_after` seconds."""
    runs = _runs(uri, f"tags.`{KIND_TAG}` = '{TRIAL}' and tags.`{KEY_TAG}` = '{key}' and "
                      "attributes.status = 'RUNNING'")
    mine = tracking.client(uri).get_run(run_id).info
    now = time.time()
    out = []
    for r in runs:
        heard = max(r.info.start_time / 1000, float(r.data.tags.get(HEARTBEAT_TAG, 0)))
        if (r.info.start_time, r.info.run_id) < (mine.start_time, run_id) and now - heard < stale_after:
            out.append(r.info.run_id)
    return out


def claim(uri: str, key: str, run_id: str, waiting=None, stale_after: float = CLAIM_STALE_SECONDS,
          poll: float = CLAIM_POLL_SECONDS) -> Trial | None:
    """Called by a selection's trial once its run (`run_id`, its own claim) has started, before it
    trains: waits while an older live claim on its key trains, calling waiting() at each poll; then
    returns the finished trial of the key to reuse, or None: train it.

    Why this excludes two trainings of one trial at a time: each trial's run exists before it looks,
    so of two trials of one key the later one to look sees the other's run, and the younger of the two
    always yields to the older. Claims are looked at before finished runs, so a claim that finishes
    between the two reads is found finished. Limits: clocks of the machines must agree (start times and
    heartbeats are theirs; a skew of minutes can let both train); a claim's trial stopped or failed
    leaves the waiting one to train it itself."""
    c = tracking.client(uri)
    while True:
        waiting_for = live_claims(uri, key, run_id, stale_after)
        if not waiting_for:
            done = _read(uri, None, f"{FINISHED_TRIALS} and tags.`{KEY_TAG}` = '{key}'")
            return done[0] if done else None
        heartbeat(c, run_id)  # waiting is alive too: a younger trial waits behind it rather than training
        if waiting is not None:
            waiting()
        time.sleep(poll)


def end_reused(c, run_id: str, reused: Trial) -> None:
    """A trial that took `reused`'s result instead of training: KILLED, naming the run it reused."""
    c.set_tag(run_id, REUSED_TAG, reused.run_id)
    c.set_tag(run_id, STOPPED_TAG, f"trained at the same time by run {reused.run_id}: its result reused")
    c.set_terminated(run_id, "KILLED")

"""What a selection decided, as one typed, versioned record: the selection, each stage, each
candidate value with its state, JSON to and from. It is selection.json, and the report, the
figures, the demo and selection.md read it (trial_record.py is the same for one trial).

Every candidate value is in exactly one state:

    matched             its seeds finished and the parity rule says it matches FP32 (margin >= 0)
    failed              its seeds finished and the rule says it does not (margin < 0); or adaptive
                        seeds decided "no match" on its first seeds (the detail says so)
    not needed          never started: a smaller value matched first
    stopped: not needed started, then stopped when a smaller value matched; its partial results and
                        curves are kept, but it was never evaluated
    early-rejected      stopped because its evaluation curve lay far below FP32's; the settings it
                        was decided under are kept (a later selection reuses it only under the same)
    failed to train     fewer than min_seeds seeds finished (their trials failed)

`margin` is the rule's figure against its threshold: sigma, mean - bound; welch, p - alpha;
bootstrap, the upper bound of (mean - FP32 mean). It is >= 0 exactly when the rule matches.

Versions: a record states the lowest version that describes it as "version": 2, or 3 when it has
a lut stage (logic-circuit candidates, whose configurations are ("lut", thermometer bits, layer
sizes, inputs per table) rather than bits and width). A selection.json without a version was
written before this record existed (version 1: a nested dict of rows with notes) and is read by
`_from_v1`; a version above RECORD_VERSION is refused in one line.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from qsearch.errors import QsearchError
from qsearch.select.results import Stats

RECORD_VERSION = 3
LUT_STAGE = "lut"  # the stage of logic circuits: its pick stands beside the selected network
MATCHED = "matched"
FAILED = "failed"
NOT_NEEDED = "not needed"
STOPPED = "stopped: not needed"
EARLY_REJECTED = "early-rejected"
FAILED_TO_TRAIN = "failed to train"
STATES = (MATCHED, FAILED, NOT_NEEDED, STOPPED, EARLY_REJECTED, FAILED_TO_TRAIN)
UNEVALUATED = (NOT_NEEDED, STOPPED)  # no verdict: never shown as a failure, left out of the figures


@dataclass(frozen=True)
class TrialRef:
    """One seed's trial of a value: a run in the tracking store (run_id None in a replay)."""

    seed: int
    run_id: str | None
    final_return: float | None
    """None: the trial did not finish (stopped or failed)"""
    stopped: str = ""
    """why a selection stopped it ("" unless it was stopped)"""
    curve: dict = field(default_factory=dict)
    """{step: evaluation return}: kept for the trials that were stopped (their partial curve)"""

    def to_json(self) -> dict:
        out = {"seed": self.seed, "run_id": self.run_id, "final_return": self.final_return}
        if self.stopped:
            out["stopped"] = self.stopped
        if self.curve:
            out["curve"] = {str(k): v for k, v in sorted(self.curve.items())}
        return out

    @classmethod
    def from_json(cls, d: dict) -> "TrialRef":
        return cls(int(d["seed"]), d.get("run_id"), d.get("final_return"), d.get("stopped", ""),
                   {int(k): float(v) for k, v in d.get("curve", {}).items()})


@dataclass(frozen=True)
class RejectionSettings:
    """What an early rejection was decided under: it stands only while all three are the same."""

    early_reject: float
    """band half-widths below FP32's curve"""
    rule: str
    """the rule whose band is the yardstick, as Rule.describe() gives it (name, alpha, band floor)"""
    seeds: tuple[int, ...]
    """the seeds FP32's curve was averaged over"""

    def to_json(self) -> dict:
        return {"early_reject": self.early_reject, "rule": self.rule, "seeds": list(self.seeds)}

    @classmethod
    def from_json(cls, d: dict) -> "RejectionSettings":
        return cls(float(d["early_reject"]), str(d["rule"]), tuple(int(s) for s in d["seeds"]))


@dataclass(frozen=True)
class Value:
    """One candidate value of one stage for one environment."""

    value: int
    configuration: str
    state: str
    trials: tuple[TrialRef, ...] = ()
    margin: float | None = None
    """the rule's margin (matched and failed only); see the module's docstring"""
    detail: str = ""
    """the rule's figure (e.g. "bound 990.0"), or why the value was decided or stopped"""
    rejection: RejectionSettings | None = None
    """early-rejected: the settings it was decided under"""
    decided_early: bool = False
    """decided "no match" on less than the full evidence (early rejection, adaptive seeds): the one
    way a lazy selection can differ from the full grid's"""

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}")

    @property
    def stats(self) -> Stats:
        """The finished seeds' final returns."""
        done = sorted((t.seed, t.final_return) for t in self.trials if t.final_return is not None)
        return Stats(tuple(r for _, r in done), tuple(s for s, _ in done))

    def to_json(self) -> dict:
        s = self.stats
        out = {"value": self.value, "configuration": self.configuration, "state": self.state,
               "margin": self.margin, "detail": self.detail, "decided_early": self.decided_early,
               "mean": s.mean if s.n else None, "std": s.std if s.n else None, "seeds": list(s.seeds),
               "trials": [t.to_json() for t in self.trials]}
        if self.rejection is not None:
            out["rejection"] = self.rejection.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Value":
        rej = d.get("rejection")
        return cls(int(d["value"]), d["configuration"], d["state"], tuple(TrialRef.from_json(t) for t in d["trials"]),
                   d.get("margin"), d.get("detail", ""), None if rej is None else RejectionSettings.from_json(rej),
                   bool(d.get("decided_early", False)))


@dataclass(frozen=True)
class EnvStage:
    """One environment's part of a stage: FP32's returns, the candidates, the pick."""

    env_id: str
    fp32: Stats
    values: tuple[Value, ...]
    chosen: int | None
    """the picked value; None: no value matches FP32"""

    @property
    def pick(self) -> Value | None:
        return next((v for v in self.values if v.value == self.chosen), None)

    def to_json(self) -> dict:
        return {"env_id": self.env_id, "fp32_returns": list(self.fp32.returns), "fp32_seeds": list(self.fp32.seeds),
                "fp32_mean": self.fp32.mean, "fp32_std": self.fp32.std, "chosen": self.chosen,
                "values": [v.to_json() for v in self.values]}

    @classmethod
    def from_json(cls, d: dict) -> "EnvStage":
        return cls(d["env_id"], Stats(tuple(d["fp32_returns"]), tuple(d["fp32_seeds"])),
                   tuple(Value.from_json(v) for v in d["values"]), d["chosen"])


@dataclass(frozen=True)
class StageRecord:
    stage: str
    """core, width or input"""
    envs: tuple[EnvStage, ...]

    def to_json(self) -> dict:
        return {"stage": self.stage, "envs": [e.to_json() for e in self.envs]}

    @classmethod
    def from_json(cls, d: dict) -> "StageRecord":
        return cls(d["stage"], tuple(EnvStage.from_json(e) for e in d["envs"]))


@dataclass(frozen=True)
class Cost:
    """Environment steps: trained by this selection (stopped trials to their stop), reused from the
    store, and the full grid of its stages; trials started and stopped."""

    spent: int = 0
    reused: int = 0
    grid: int = 0
    trained: int = 0
    stopped: int = 0


@dataclass(frozen=True)
class Selected:
    """The configuration a selection picked for one environment (paper Table 1's row)."""

    env_id: str
    configuration: str
    core_bits: int
    width: int
    input_bits: int
    output_bits: int
    stats: Stats
    fp32: Stats
    trials: tuple[TrialRef, ...]


@dataclass(frozen=True)
class Pick:
    """A configuration some stages picked for one environment."""

    configuration: str
    stages: tuple[str, ...]
    """the stages that picked it, in order (stage 2 keeps stage 1's width when no narrower one
    matches, so one configuration can be several stages' pick)"""
    trials: tuple[TrialRef, ...]
    """its finished trials"""


def describe(core_bits, width, input_bits, output_bits=8) -> str:
    """A configuration as figures' legends and tables name it: 'core 2b, width 32, input 4b'
    (the output bits only when they are not the selection's 8); a logic circuit's ("lut", B, sizes,
    k) as 'LUT 64-64 of 6 inputs, thermometer 8b'."""
    if core_bits == "lut":
        return f"LUT {input_bits} of {output_bits} inputs, thermometer {width}b"
    out = f"core {core_bits}b, width {width}, input {input_bits}b"
    return out if output_bits == 8 else f"{out}, output {output_bits}b"


@dataclass(frozen=True)
class SelectionRecord:
    name: str
    rule: str
    """the parity rule, described"""
    stages: tuple[StageRecord, ...]
    fp32: dict
    """env -> (TrialRef, ...): the FP32 baseline's finished trials (stage 1's)"""
    configurations: dict
    """configuration key -> (core bits, width, input bits, output bits) of every candidate"""
    cost: Cost = Cost()
    version: int = 0
    """the version it was read as; 0 when made here: the lowest that describes it (module docstring)"""

    def __post_init__(self):
        if not self.version:
            object.__setattr__(self, "version", 3 if self.stage(LUT_STAGE) else 2)

    @property
    def envs(self) -> list[str]:
        return sorted({e.env_id for s in self.stages for e in s.envs})

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.stage == name), None)

    @property
    def network_stages(self) -> tuple[StageRecord, ...]:
        return tuple(s for s in self.stages if s.stage != LUT_STAGE)

    @property
    def selected(self) -> dict[str, Selected]:
        """env -> its pick: the last network stage it reached chose it (stage 1's no match ends an environment)."""
        out = {}
        for env in self.envs:
            last = [e for s in self.network_stages for e in s.envs if e.env_id == env][-1]
            v = last.pick
            if v is not None:
                core, width, inp, outb = self.configurations[v.configuration]
                out[env] = Selected(env, v.configuration, core, width, inp, outb, v.stats, last.fp32,
                                    tuple(t for t in v.trials if t.final_return is not None))
        return out

    def picks(self, env: str) -> list[Pick]:
        """Each stage's pick for env, in stage order, one entry per configuration; the last is the
        selected one when env has a selection."""
        out: dict[str, Pick] = {}
        for s in self.network_stages:
            for e in s.envs:
                v = e.pick if e.env_id == env else None
                if v is None:
                    continue
                p = out.get(v.configuration)
                out[v.configuration] = Pick(v.configuration, (p.stages if p else ()) + (s.stage,),
                                            tuple(t for t in v.trials if t.final_return is not None))
        # An entry moves to the end when a later stage picks it again, so the selected one comes last.
        return sorted(out.values(), key=lambda p: [s.stage for s in self.network_stages].index(p.stages[-1]))

    @property
    def lut_picks(self) -> dict[str, Value]:
        """env -> the smallest logic circuit that matches FP32 (stage lut's pick), where one does."""
        st = self.stage(LUT_STAGE)
        return {e.env_id: e.pick for e in (st.envs if st else ()) if e.pick is not None}

    def describe(self, configuration: str) -> str:
        """A candidate configuration's name in legends and tables (see `describe`)."""
        return describe(*self.configurations[configuration])

    @property
    def unmatched(self) -> dict[str, str]:
        """env -> why nothing was selected."""
        first = self.stages[0] if self.stages else None
        values = {e.env_id: [v.value for v in e.values] for e in first.envs} if first else {}
        return {env: f"no configuration matches FP32 (core bits {values[env]})"
                for env in self.envs if env not in self.selected}

    def run_ids(self) -> set[str]:
        """Every run the record names: candidates' trials (stopped ones included) and FP32's."""
        ids = {t.run_id for s in self.stages for e in s.envs for v in e.values for t in v.trials}
        ids |= {t.run_id for ts in self.fp32.values() for t in ts}
        return ids - {None}

    def to_json(self) -> dict:
        return {"version": self.version, "space": self.name, "rule": self.rule,
                "stages": [s.to_json() for s in self.stages],
                "fp32": {env: [t.to_json() for t in ts] for env, ts in sorted(self.fp32.items())},
                "configurations": {k: list(v) for k, v in sorted(self.configurations.items())},
                "cost": asdict(self.cost),
                # Derived, for a reader of the file; from_json recomputes it.
                "selected": {env: {"configuration": s.configuration, "core_bits": s.core_bits, "width": s.width,
                                   "input_bits": s.input_bits, "output_bits": s.output_bits, "mean": s.stats.mean,
                                   "std": s.stats.std, "seeds": list(s.stats.seeds), "fp32_mean": s.fp32.mean,
                                   "fp32_std": s.fp32.std, "trials": [t.to_json() for t in s.trials]}
                             for env, s in sorted(self.selected.items())},
                "lut_picks": {env: {"configuration": v.configuration, "mean": v.stats.mean, "std": v.stats.std}
                              for env, v in sorted(self.lut_picks.items())},
                "unmatched": self.unmatched}

    @classmethod
    def from_json(cls, d: dict, source: str = "selection.json") -> "SelectionRecord":
        version = d.get("version", 1) if isinstance(d, dict) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise QsearchError(f"{source} is damaged: no valid version")
        if version > RECORD_VERSION:
            raise QsearchError(f"{source} was written by a newer qsearch (selection record version {version}, "
                               f"this one reads up to {RECORD_VERSION}): upgrade qsearch to read it")
        try:
            if version == 1:
                return _from_v1(d)
            return cls(d["space"], d["rule"], tuple(StageRecord.from_json(s) for s in d["stages"]),
                       {env: tuple(TrialRef.from_json(t) for t in ts) for env, ts in d["fp32"].items()},
                       {k: tuple(v) for k, v in d["configurations"].items()}, Cost(**d["cost"]), version)
        except (KeyError, TypeError, ValueError) as e:
            raise QsearchError(f"{source} is damaged: {type(e).__name__}: {e}") from None


def _from_v1(d: dict) -> SelectionRecord:
    """A selection.json of version 1: rows with notes. Its states are read off the notes; a row with
    no finished seed and no note is "failed to train", since version 1 did not tell such a value from
    one stopped as not needed (it showed both as "0 seeds, no match")."""
    configurations = {}
    for s in d.get("selected", {}).values():
        configurations[s["configuration"]] = (s["core_bits"], s["width"], s["input_bits"], s["output_bits"])
    stages = []
    for name, by_env in d["stages"].items():
        envs = []
        for env, o in sorted(by_env.items()):
            values = []
            for r in o["rows"]:
                note, seeds = r.get("note") or "", r["seeds"]
                if note.startswith("not needed"):
                    state = NOT_NEEDED if not seeds else STOPPED
                elif note.startswith("early rejection"):
                    state = EARLY_REJECTED
                elif note:
                    state = FAILED
                elif r["eligible"]:
                    state = MATCHED if r["match"] else FAILED
                else:
                    state = FAILED_TO_TRAIN
                values.append(Value(r["value"], r["configuration"], state,
                                    tuple(TrialRef.from_json(t) for t in r["trials"]),
                                    None, note or r.get("detail", ""),
                                    decided_early=state == EARLY_REJECTED or note.startswith("adaptive")))
            fp32 = d["fp32"].get(env, [])
            fp32_stats = Stats(tuple(t["final_return"] for t in fp32), tuple(t["seed"] for t in fp32))
            envs.append(EnvStage(env, fp32_stats, tuple(values), _v1_chosen(o)))
        stages.append(StageRecord(name, tuple(envs)))
    for st in stages:  # a version-1 file names only the picked configurations' bits: the rest from the keys
        for e in st.envs:
            for v in e.values:
                configurations.setdefault(v.configuration, _bits_of_key(v.configuration))
    return SelectionRecord(d["space"], d["rule"], tuple(stages),
                           {env: tuple(TrialRef.from_json(t) for t in ts) for env, ts in d["fp32"].items()},
                           configurations, Cost(**d["cost"]) if "cost" in d else Cost(), 1)


def _v1_chosen(o: dict) -> int | None:
    return next((r["value"] for r in o["rows"] if r["configuration"] == o["chosen"]), None)


def _bits_of_key(key: str) -> tuple[int, int, int, int]:
    """(core bits, width, input bits, output bits) from a configuration key like
    'Hopper-v5/i8w2a2o8/h64x2' (qsearch/search/space.py Configuration.key)."""
    _, bits, shape = key.split("/")[:3]
    i, rest = bits[1:].split("w")
    w, rest = rest.split("a")
    _, o = rest.split("o")
    return int(w), int(shape[1:].split("x")[0]), int(i), int(o)


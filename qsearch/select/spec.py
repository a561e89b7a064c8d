"""A selection space: a search space whose sweep is generated stage by stage (paper Section 3.2).

It is a search space file (qsearch/search/space.py) without `sweep:` and with a `selection:` section:

    name: selection_pendulum
    envs: [InvertedPendulum-v5]
    steps: 2500
    seeds: [0, 1, 2]
    policy: {width: 64, depth: 2}   # stage 1's width, and the FP32 baseline's
    selection:
      core_bits: [2, 3, 4]          # stage 1: weights and activations, input and output at 8 bits
      widths: [32, 16]              # stage 2: hidden widths under the stage-1 core bits
      input_bits: [2, 4]            # stage 3: input bits under the stage-1 core bits and stage-2 width
      rule: sigma                   # FP32 parity: sigma (the paper's), welch or bootstrap
      alpha: 0.05                   # welch / bootstrap only
      min_seeds: 3                  # a configuration with fewer finished seeds is not picked (default: all)
      min_band: 0.01                # sigma: floor the band's half-width at 1% of |FP32 mean| (default 0: none)
      speculation: 1                # lazy stages: values trained ahead of the smallest undecided one; all: the grid
      early_reject: 3               # stop a trial this many band half-widths below FP32's curve (default: off)
      adaptive_seeds: 3             # start each value with 3 seeds, 3 more while it could match (default: off)
      adaptive_margin: 1            # "clearly no match": this many band half-widths below the bound
      noise_sigmas: [0, 0.1, 0.2, 0.3, 0.4, 0.5]   # paper Section 3.3
      noise_episodes: 10
      noise_models: final           # final: FP32 and the selected configuration; stages: each stage's pick too
      lut_sizes:                    # optional stage lut: logic-circuit policies, picked by node count
        - {thermometer_bits: 8, luts: [64, 64], lut_inputs: 6}
        - {thermometer_bits: 16, luts: [256, 256], lut_inputs: 6, mapping: random}

Stage 2 always also holds the stage-1 width and stage 3 the 8-bit input: those configurations are
the previous stage's pick (already trained, so reused), so a stage can never end up worse than the
one before it. Every error is one line naming the file, the key and the reason.

With `lut_sizes`, a fourth stage, lut, picks the smallest logic-circuit policy (quant/lut_actor.py;
the sizes ordered by their node count, which must differ) that matches the same FP32 under the same
rule: it needs only stage 1's FP32, so it runs for every environment, and its pick stands beside the
selected network (SelectionRecord.lut_picks), not in its place.

Lazy stages (qsearch/select/lazy.py): a stage asks only for its smallest matching value, so its
values are trained from the smallest up and larger ones are skipped once one matches; the selection
is the full grid's (see lazy.py). `speculation` trades compute for wall time; `early_reject` and
`adaptive_seeds` save more but may change a decision (bench/selection_cost.py counts how often).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path


from qsearch.config import default
from qsearch.errors import QsearchError
from qsearch.search import space as spaces
from qsearch.search.validate import Err, bit_width, integer, mapping, one_or_more
from qsearch.select.parity import RULES, Rule

STAGES = ("core", "width", "input", "lut")  # lut only with selection.lut_sizes
LUT_SIZE_KEYS = ("thermometer_bits", "luts", "lut_inputs", "mapping", "bits_out")
NOISE_MODELS = ("final", "stages")
SELECTION_KEYS = {"core_bits", "widths", "input_bits", "rule", "alpha", "min_seeds", "noise_sigmas",
                  "noise_episodes", "noise_models", "min_band", "speculation", "early_reject", "adaptive_seeds",
                  "adaptive_margin", "lut_sizes"}


@dataclass(frozen=True)
class Selection:
    """A validated selection space."""

    name: str
    """the selection's name: its folder runs/<name> and its MLflow experiment"""
    path: str
    """the file it was read from"""
    data: dict
    """the file without `selection:`: each stage's search space is this plus a sweep"""
    base: spaces.SearchSpace
    """validated, with the FP32 baseline as its only sweep group"""
    core_bits: tuple[int, ...]
    """stage 1's candidates: weight and activation bits (paper: 2 to 8)"""
    widths: tuple[int, ...]
    """stage 2's candidates: hidden widths under the stage-1 pick (paper: 128, 64, 32, 16)"""
    input_bits: tuple[int, ...]
    """stage 3's candidates: input bits under the stage-1 and stage-2 picks (paper: 2 to 7)"""
    min_seeds: int
    """finished seeds a configuration needs to be picked (default: all seeds)"""
    rule: Rule = Rule()
    """FP32 parity (paper: sigma)"""
    noise_sigmas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    """noise levels on the normalized observation (paper Section 3.3)"""
    noise_episodes: int = 10
    """episodes per model and noise level"""
    noise_models: str = "final"
    """which models the noise study evaluates: `final`, FP32 and the selected configuration; `stages`, each
    stage's pick as well (each configuration once, labelled by its bits and width), so a report can show
    what each stage's choice costs in robustness (up to three times the evaluations of `final`)"""
    speculation: int | None = 1
    """values trained ahead of the smallest undecided one (0: strictly lazy; None, `all` in the file: the grid)"""
    early_reject: float | None = None
    """stop a trial this many band half-widths below FP32's curve at two checkpoints in a row (None: off)"""
    adaptive_seeds: int | None = None
    """seeds a value starts with, and adds at a time while it could match (None: off, all seeds at once)"""
    adaptive_margin: float = 1.0
    """adaptive seeds: no match on the first seeds when their mean is this many half-widths below the bound"""
    lut_sizes: tuple[dict, ...] = ()
    """stage lut's candidates: logic-circuit policies as `policy: lut` sweep groups (thermometer_bits,
    luts, lut_inputs, mapping, bits_out), in order of node count; (): no stage lut"""

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES if self.lut_sizes else STAGES[:3]

    @property
    def envs(self) -> list[str]:
        return sorted({c.env_id for c in self.base.configurations})

    @property
    def width(self) -> int:
        return self.base.configurations[0].policy.width

    def stage_data(self, stage: str, picks: dict) -> dict:
        """The search space of `stage`; picks: env -> (core bits, width) chosen by the stages before."""
        data = copy.deepcopy(self.data)
        data["name"] = f"{self.name}.{stage}"
        if stage == "core":
            data["sweep"] = [{"fp32": True}, {"bits_core": list(self.core_bits), "bits_in": 8, "bits_out": 8}]
        elif stage == "width":
            widths = sorted(set(self.widths) | {self.width}, reverse=True)
            data["sweep"] = [{"envs": [env], "bits_core": b, "width": widths} for env, (b, _) in sorted(picks.items())]
        elif stage == "lut":  # independent of the network's picks: every environment, against stage 1's FP32
            data["sweep"] = [{"policy": "lut", **size} for size in self.lut_sizes]
        else:
            bits = sorted(set(self.input_bits) | {8}, reverse=True)
            data["sweep"] = [{"envs": [env], "bits_core": b, "width": w, "bits_in": bits}
                             for env, (b, w) in sorted(picks.items())]
        return data

    def stage_space(self, stage: str, picks: dict) -> spaces.SearchSpace:
        """The validated search space of `stage` (see stage_data)."""
        return spaces.parse(self.stage_data(stage, picks), f"{self.path} ({stage})")


def load(path: str | Path) -> Selection:
    return parse(spaces.read_yaml(Path(path)), str(path))


def parse(data, path: str = "<selection>") -> Selection:
    err = Err(path)
    if not isinstance(data, dict):
        raise err("", f"must be a mapping, got {type(data).__name__}")
    data = dict(data)
    if "selection" not in data:
        raise err("selection", "missing: this is a search space, not a selection space (run it with `qsearch search`)")
    if "sweep" in data:
        raise err("sweep", "a selection space has no sweep: the stages generate it from `selection:`")
    sel = mapping(err, "selection", data.pop("selection"), SELECTION_KEYS)
    base = spaces.parse({**data, "sweep": [{"fp32": True}]}, path)
    _own_search(err, data.get("search") or {})

    def bits_list(key):
        if key not in sel:
            raise err(f"selection.{key}", "missing (required)")
        return tuple(sorted(set(one_or_more(err, f"selection.{key}", sel[key], lambda k, v: bit_width(err, k, v)))))

    core_bits, input_bits = bits_list("core_bits"), bits_list("input_bits")
    if "widths" not in sel:
        raise err("selection.widths", "missing (required)")
    widths = tuple(sorted(set(one_or_more(err, "selection.widths", sel["widths"], lambda k, v: integer(err, k, v, lo=1)))))
    rule_name = sel.get("rule", default(Selection, "rule").name)
    if rule_name not in RULES:
        raise err("selection.rule", f"unknown rule {rule_name!r}; choose one of {', '.join(RULES)}")
    alpha = sel.get("alpha", default(Selection, "rule").alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise err("selection.alpha", f"must be a number strictly between 0 and 1, got {alpha!r}")
    min_seeds = integer(err, "selection.min_seeds", sel.get("min_seeds", len(base.seeds)), lo=1, hi=len(base.seeds))
    sigmas = tuple(one_or_more(err, "selection.noise_sigmas", sel.get("noise_sigmas", list(default(Selection, "noise_sigmas"))),
                         lambda k, v: _sigma(err, k, v)))
    episodes = integer(err, "selection.noise_episodes", sel.get("noise_episodes", default(Selection, "noise_episodes")), lo=1)
    noise_models = sel.get("noise_models", default(Selection, "noise_models"))
    if noise_models not in NOISE_MODELS:
        raise err("selection.noise_models", f"must be one of {', '.join(NOISE_MODELS)}, got {noise_models!r}")
    min_band = _fraction(err, "selection.min_band", sel.get("min_band", default(Selection, "rule").min_band))
    if min_band and rule_name != "sigma":
        raise err("selection.min_band", f"floors the sigma rule's band; the {rule_name} rule has no band")
    speculation = sel.get("speculation", default(Selection, "speculation"))
    if speculation != "all" and (not isinstance(speculation, int) or isinstance(speculation, bool) or speculation < 0):
        raise err("selection.speculation", f"must be a number of values (0: strictly lazy) or all, got {speculation!r}")
    early = sel.get("early_reject", default(Selection, "early_reject"))
    if early is not None and (isinstance(early, bool) or not isinstance(early, (int, float)) or early <= 0):
        raise err("selection.early_reject", f"must be a positive number of band half-widths (or null: off), got {early!r}")
    adaptive = sel.get("adaptive_seeds", default(Selection, "adaptive_seeds"))
    if adaptive is not None:
        adaptive = integer(err, "selection.adaptive_seeds", adaptive, lo=1, hi=len(base.seeds))
    margin = sel.get("adaptive_margin", default(Selection, "adaptive_margin"))
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise err("selection.adaptive_margin", f"must be a non-negative number, got {margin!r}")
    lut_sizes = _lut_sizes(err, sel.get("lut_sizes", []), data, path)
    return Selection(name=base.name, path=path, data=data, base=base, core_bits=core_bits, widths=widths,
                     input_bits=input_bits, rule=Rule(rule_name, float(alpha), min_band), min_seeds=min_seeds,
                     noise_sigmas=sigmas, noise_episodes=episodes, noise_models=noise_models,
                     speculation=None if speculation == "all" else speculation,
                     early_reject=None if early is None else float(early), adaptive_seeds=adaptive,
                     adaptive_margin=float(margin), lut_sizes=lut_sizes)


def _lut_sizes(err, sizes, data: dict, path: str) -> tuple[dict, ...]:
    """stage lut's sizes, each checked as a search space's `policy: lut` group, by node count."""
    if not isinstance(sizes, list):
        raise err("selection.lut_sizes", f"must be a list of sizes, got {type(sizes).__name__}")
    nodes = []
    for i, size in enumerate(sizes):
        key = f"selection.lut_sizes[{i}]"
        mapping(err, key, size, set(LUT_SIZE_KEYS))
        if any(isinstance(v, list) and k != "luts" for k, v in size.items()) or \
                (isinstance(size.get("luts"), list) and any(isinstance(n, list) for n in size["luts"])):
            raise err(key, "is one size: give one value per key (a list of layer sizes for luts)")
        try:
            conf, = spaces.parse({**data, "sweep": [{"policy": "lut", **size}]}, path).configurations
        except QsearchError as e:  # "<path>: sweep[0].<field>: <reason>", renamed to this size's key
            where, reason = str(e).removeprefix(f"{path}: ").split(": ", 1)
            raise err(where.replace("sweep[0]", key), reason) from None
        nodes.append(sum(conf.policy.luts))
    if len(set(nodes)) != len(nodes):
        raise err("selection.lut_sizes", f"sizes must differ in node count (the stage orders them by it), got {nodes}")
    return tuple(size for _, size in sorted(zip(nodes, sizes), key=lambda p: p[0]))


def _own_search(err, search: dict) -> None:
    """A selection's stages choose and stop their own trials (lazy.Stage through its searcher and
    stopper): another searcher or a scheduler would decide which trials run or stop, and ASHA's stops
    (FP32's included) depend on which trials happen to run together, so the selection would no
    longer be the full grid's. Only how many trials run at once is the user's."""
    for key, value in search.items():
        if key == "searcher" and value != "grid":
            raise err("search.searcher", "selection trains every stage with its own lazy searcher: leave it out")
        if key == "scheduler" and value != "none":
            raise err("search.scheduler", "a selection stops trials itself (lazy stages, early_reject); a scheduler "
                                          "would stop trials by timing, FP32's too: leave it out")
        if key not in ("searcher", "scheduler", "max_concurrent"):
            raise err(f"search.{key}", "a selection chooses and stops its own trials: only search.max_concurrent applies")


def _fraction(err, key, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise err(key, f"must be a fraction in [0, 1), got {v!r}")
    return float(v)


def _sigma(err, key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise err(key, f"must be a non-negative number, got {v!r}")
    return float(v)

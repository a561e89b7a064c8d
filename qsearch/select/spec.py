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
      noise_sigmas: [0, 0.1, 0.2, 0.3, 0.4, 0.5]   # paper Section 3.3
      noise_episodes: 10

Stage 2 always also holds the stage-1 width and stage 3 the 8-bit input: those configurations are
the previous stage's pick (already trained, so reused), so a stage can never end up worse than the
one before it. Every error is one line naming the file, the key and the reason.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path


from qsearch.config import default
from qsearch.search import space as spaces
from qsearch.search.space import _bits, _Err, _int, _list, _mapping  # the search spaces' own checks
from qsearch.select.parity import RULES, Rule

STAGES = ("core", "width", "input")
SELECTION_KEYS = {"core_bits", "widths", "input_bits", "rule", "alpha", "min_seeds", "noise_sigmas",
                  "noise_episodes"}


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
        else:
            bits = sorted(set(self.input_bits) | {8}, reverse=True)
            data["sweep"] = [{"envs": [env], "bits_core": b, "width": w, "bits_in": bits}
                             for env, (b, w) in sorted(picks.items())]
        return data


def load(path: str | Path) -> Selection:
    return parse(spaces.read_yaml(Path(path)), str(path))


def parse(data, path: str = "<selection>") -> Selection:
    err = _Err(path)
    if not isinstance(data, dict):
        raise err("", f"must be a mapping, got {type(data).__name__}")
    data = dict(data)
    if "selection" not in data:
        raise err("selection", "missing: this is a search space, not a selection space (run it with `qsearch search`)")
    if "sweep" in data:
        raise err("sweep", "a selection space has no sweep: the stages generate it from `selection:`")
    sel = _mapping(err, "selection", data.pop("selection"), SELECTION_KEYS)
    base = spaces.parse({**data, "sweep": [{"fp32": True}]}, path)
    if base.search.searcher != "grid":
        raise err("search.searcher", "selection trains every configuration x seed: use grid")

    def bits_list(key):
        if key not in sel:
            raise err(f"selection.{key}", "missing (required)")
        return tuple(sorted(set(_list(err, f"selection.{key}", sel[key], lambda k, v: _bits(err, k, v)))))

    core_bits, input_bits = bits_list("core_bits"), bits_list("input_bits")
    if "widths" not in sel:
        raise err("selection.widths", "missing (required)")
    widths = tuple(sorted(set(_list(err, "selection.widths", sel["widths"], lambda k, v: _int(err, k, v, lo=1)))))
    rule_name = sel.get("rule", default(Selection, "rule").name)
    if rule_name not in RULES:
        raise err("selection.rule", f"unknown rule {rule_name!r}; choose one of {', '.join(RULES)}")
    alpha = sel.get("alpha", default(Selection, "rule").alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise err("selection.alpha", f"must be a number strictly between 0 and 1, got {alpha!r}")
    min_seeds = _int(err, "selection.min_seeds", sel.get("min_seeds", len(base.seeds)), lo=1, hi=len(base.seeds))
    sigmas = tuple(_list(err, "selection.noise_sigmas", sel.get("noise_sigmas", list(default(Selection, "noise_sigmas"))),
                         lambda k, v: _sigma(err, k, v)))
    episodes = _int(err, "selection.noise_episodes", sel.get("noise_episodes", default(Selection, "noise_episodes")), lo=1)
    return Selection(name=base.name, path=path, data=data, base=base, core_bits=core_bits, widths=widths,
                     input_bits=input_bits, rule=Rule(rule_name, float(alpha)), min_seeds=min_seeds,
                     noise_sigmas=sigmas, noise_episodes=episodes)


def _sigma(err, key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise err(key, f"must be a non-negative number, got {v!r}")
    return float(v)

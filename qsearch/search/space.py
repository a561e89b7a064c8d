"""Search spaces: a YAML file -> a typed, validated SearchSpace, refused before Ray starts.

A space names the environments, the algorithm and its hyperparameters, the budget, the seeds, and
one or more sweep groups. Each group is a cartesian product of its axes (a scalar is a one-value
axis); the configurations of a space are the union of its groups. One trial = one configuration x
one seed. Example (see search_spaces/quickstart.yaml):

    name: quickstart
    envs: [InvertedPendulum-v5]
    algo: sac
    algo_config: {learning_starts: 500, batch_size: 64}
    steps: 4000
    seeds: [0, 1]
    policy: {width: 64, depth: 2}
    sweep:
      - {fp32: true}
      - {scope: core, bits: [2, 4]}

A group with `policy: lut` sweeps logic-circuit policies (quant/lut_actor.py) instead: axes
thermometer_bits, luts, lut_inputs, mapping and bits_out (the head's output), e.g.
`{policy: lut, thermometer_bits: [8, 16], luts: [[64, 64], [256, 256]], lut_inputs: 6}`. A value of
luts is a list of layer sizes, so a list of such lists is an axis and a flat list one value.

Every error is one line naming the file, the key and the reason (QsearchError; the checks are
qsearch/search/validate.py's, and a config field's bounds are its config's).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qsearch import trial_record
from qsearch.config import (ALGO_CONFIGS, ALGOS, CHECKPOINT_EVERY, OBSERVE, SCOPES, PolicyConfig, QuantBits,
                            TrainConfig, default)
from qsearch.errors import QsearchError
from qsearch.search.validate import Err, bit_width, config_of, field_value, integer, mapping, one_or_more

SEARCHERS = ("grid", "optuna")
SCHEDULERS = ("none", "asha")
BIT_AXES = ("bits_in", "bits_weight", "bits_act", "bits_out", "bits_core")


@dataclass(frozen=True)
class Configuration:
    """One point of the space, without its seed."""

    env_id: str
    """the task"""
    policy: PolicyConfig
    """the actor and its bit widths"""
    algo_overrides: tuple = ()
    """(name, value) pairs a sweep group sets over the space's algo_config"""

    @property
    def key(self) -> str:
        """A short, stable, readable name: the same configuration always gets the same key."""
        p, q = self.policy, self.policy.quant
        extra = "".join(f"/{k}={v}" for k, v in self.algo_overrides)
        if p.lut:
            return (f"{self.env_id}/lut/t{p.thermometer_bits}/l{'-'.join(map(str, p.luts))}k{p.lut_inputs}"
                    f"/{p.mapping}/o{q.bits_out}{extra}")
        bits = "fp32" if q is None else f"i{q.bits_in}w{q.bits_weight}a{q.bits_act}o{q.bits_out}"
        encoder = f"/{p.encoder}{p.encoder_width}" if p.recurrent else ""
        return f"{self.env_id}/{bits}/h{p.width}x{p.depth}{encoder}{extra}"


@dataclass(frozen=True)
class SearchConfig:
    """How Ray Tune explores the space (the `search:` section)."""

    searcher: str = "grid"
    """grid: every configuration x every seed (the paper's protocol); optuna: sampled"""
    num_samples: int = 10
    """optuna only: how many trials to sample"""
    objectives: tuple[str, ...] = ("return",)
    """optuna: (return,) or (return, cost), cost being the bits the actor holds (weights, or truth tables)"""
    scheduler: str = "none"
    """none, or asha to stop trials whose evaluation return lags"""
    grace_steps: int = 10_000
    """asha: environment steps before a trial may be stopped (at most the space's steps)"""
    reduction_factor: int = 3
    """asha: the fraction 1/reduction_factor of trials that goes on at each rung"""
    max_concurrent: int = 0
    """trials at once; 0: as many as the cluster has room for"""


@dataclass(frozen=True)
class Resources:
    """What one trial reserves on the cluster (the `resources:` section)."""

    cpu: float = 1.0
    """CPUs per trial (qsearch's learners use one thread; a PPO trial runs one env runner per CPU)"""
    gpu: float = 0.0
    """GPUs per trial, which its learner trains on (untested on a GPU: README, Known limits); a fraction
    shares one GPU between trials"""


@dataclass(frozen=True)
class SearchSpace:
    """A validated space file. The training fields' defaults are TrainConfig's."""

    name: str
    """the search's name: its folder runs/<name> and its MLflow experiment"""
    path: str
    """the file it was read from"""
    algo: str
    """sac, ddpg, td3 or ppo"""
    algo_config: object
    """SACConfig | DDPGConfig | TD3Config | PPOConfig, the algorithm's defaults with the file's overrides
    (PPO's env_runners from resources.cpu)"""
    steps: int
    """environment steps per trial"""
    seeds: tuple[int, ...]
    """every configuration is trained once per seed (paper: 10 seeds)"""
    eval_every: int
    """environment steps between evaluations (default: TrainConfig's, at most steps)"""
    eval_episodes: int
    """episodes per evaluation during training"""
    final_episodes: int
    """episodes of the final evaluation that selection compares (default: eval_episodes)"""
    configurations: tuple[Configuration, ...]
    """the union of the sweep groups' cartesian products"""
    search: SearchConfig = field(default_factory=SearchConfig)
    """how Ray Tune explores the space"""
    resources: Resources = field(default_factory=Resources)
    """what one trial reserves"""
    retries: int = 0
    """times Tune restarts a failed trial (from its latest checkpoint)"""
    observe: str = "all"
    """what of each task's observation the policies see: all, positions or velocities"""
    checkpoint_every: int = CHECKPOINT_EVERY
    """environment steps between two checkpoints of a trial's learner state (0: none); not part of a
    trial's identity"""

    def train_config(self, conf: Configuration, seed: int) -> TrainConfig:
        algo_config = dataclasses.replace(self.algo_config, **dict(conf.algo_overrides))
        return TrainConfig(env_id=conf.env_id, algo=self.algo, policy=conf.policy, total_steps=self.steps,
                           seed=seed, eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                           algo_config=algo_config, observe=self.observe)

    def trial_params(self, conf: Configuration, seed: int) -> dict[str, str]:
        """What a trial of `conf` and `seed` records in MLflow, and is found again by."""
        return trial_record.trial_params(self.train_config(conf, seed), conf.key, self.final_episodes)

    @property
    def trials(self) -> int:
        if self.search.searcher == "grid":
            return len(self.configurations) * len(self.seeds)
        return self.search.num_samples


TOP_KEYS = {"name", "envs", "algo", "algo_config", "steps", "seeds", "eval_every", "eval_episodes",
            "final_episodes", "policy", "sweep", "search", "resources", "retries", "checkpoint_every", "observe"}
REQUIRED = ("name", "envs", "steps", "seeds", "sweep")
LUT_AXES = ("thermometer_bits", "luts", "lut_inputs", "mapping")
GROUP_KEYS = {"envs", "algo_config", "fp32", "scope", "bits", "width", "depth", *BIT_AXES, "policy", *LUT_AXES}


def _observed(err, envs, observe: str) -> None:
    from qsearch.rl.envs import observed

    for env_id in envs:
        try:
            observed(env_id, observe)
        except QsearchError as e:
            raise err("observe", str(e).removeprefix("observe: ")) from None


def _env(err, key, v):
    from qsearch.rl.envs import check_env

    if not isinstance(v, str):
        raise err(key, f"must be an environment id (a string), got {v!r}")
    try:
        check_env(v)
    except QsearchError as e:
        raise err(key, str(e)) from None
    return v


def read_yaml(path: Path):
    """A space file's content, or one line saying why it cannot be read."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise QsearchError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise QsearchError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None


def load(path: str | Path) -> SearchSpace:
    return parse(read_yaml(Path(path)), str(path))


def parse(data, path: str = "<space>") -> SearchSpace:
    err = Err(path)
    if isinstance(data, dict) and "selection" in data:
        raise err("selection", "this is a selection space, not a search space (run it with `qsearch select`)")
    mapping(err, "", data, TOP_KEYS)
    for k in REQUIRED:
        if k not in data:
            raise err(k, "missing (required)")

    name = data["name"]
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise err("name", f"must be a non-empty string of letters, digits, '-', '_' or '.', got {name!r}")
    algo = data.get("algo", default(TrainConfig, "algo"))
    if algo not in ALGOS:
        raise err("algo", f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    algo_config = _algo_config(err, algo, data.get("algo_config", {}))
    steps = field_value(err, "steps", "total_steps", data["steps"])
    seeds = tuple(one_or_more(err, "seeds", data["seeds"], lambda k, v: field_value(err, k, "seed", v)))
    if len(set(seeds)) != len(seeds):
        raise err("seeds", "repeats a seed")
    eval_every = field_value(err, "eval_every", "eval_every",
                             data.get("eval_every", min(default(TrainConfig, "eval_every"), steps)))
    eval_episodes = field_value(err, "eval_episodes", "eval_episodes",
                                data.get("eval_episodes", default(TrainConfig, "eval_episodes")))
    final_episodes = integer(err, "final_episodes", data.get("final_episodes", eval_episodes), lo=1)
    envs = one_or_more(err, "envs", data["envs"], lambda k, v: _env(err, k, v))

    pol = mapping(err, "policy", data.get("policy", {}), {"width", "depth", "encoder", "encoder_width"})
    base_width = field_value(err, "policy.width", "width", pol.get("width", default(PolicyConfig, "width")))
    base_depth = field_value(err, "policy.depth", "depth", pol.get("depth", default(PolicyConfig, "depth")))
    encoder = {k: pol[k] for k in ("encoder", "encoder_width") if k in pol}
    config_of(err, "policy", PolicyConfig, encoder)  # checks the values, named by their key
    if PolicyConfig(**encoder).recurrent and algo == "ppo":
        raise err("policy.encoder", "gru applies to sac, ddpg and td3; ppo trains stateless policies")

    sweep = data["sweep"]
    if not isinstance(sweep, list) or not sweep:
        raise err("sweep", "must be a non-empty list of groups")
    configurations: list[Configuration] = []
    for i, group in enumerate(sweep):
        for c in _group(err, f"sweep[{i}]", group, envs, base_width, base_depth, algo, encoder):
            if c not in configurations:  # groups may overlap (e.g. 8 bits in every scope): train it once
                configurations.append(c)

    search = _search(err, data.get("search", {}), steps)
    res = mapping(err, "resources", data.get("resources", {}), {"cpu", "gpu"})
    resources = Resources(cpu=_positive(err, "resources.cpu", res.get("cpu", default(Resources, "cpu"))),
                          gpu=_positive(err, "resources.gpu", res.get("gpu", default(Resources, "gpu")), zero=True))
    retries = integer(err, "retries", data.get("retries", default(SearchSpace, "retries")), lo=0)
    checkpoint_every = integer(err, "checkpoint_every", data.get("checkpoint_every", CHECKPOINT_EVERY), lo=0)
    observe = data.get("observe", "all")
    if observe not in OBSERVE:
        raise err("observe", f"must be one of {', '.join(OBSERVE)}, got {observe!r}")
    if observe != "all" and algo == "ppo":
        raise err("observe", "applies to sac, ddpg and td3; ppo observes all of a task")
    _observed(err, sorted({c.env_id for c in configurations}), observe)
    if algo == "ppo":  # one env runner per CPU of the trial
        if not resources.cpu.is_integer():
            raise err("resources.cpu", f"a PPO trial runs one env runner per CPU: must be a whole number, got {resources.cpu}")
        algo_config = dataclasses.replace(algo_config, env_runners=int(resources.cpu))
    return SearchSpace(name=name, path=path, algo=algo, algo_config=algo_config, steps=steps, seeds=seeds,
                       eval_every=eval_every, eval_episodes=eval_episodes, final_episodes=final_episodes,
                       configurations=tuple(configurations), search=search, resources=resources, retries=retries,
                       checkpoint_every=checkpoint_every, observe=observe)


def _positive(err, key, v, zero=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not zero):
        raise err(key, f"must be a {'non-negative' if zero else 'positive'} number, got {v!r}")
    return float(v)


def _algo_config(err, algo, overrides, key="algo_config"):
    """The algorithm's config with the file's overrides; the config checks each value."""
    cls = ALGO_CONFIGS[algo]
    mapping(err, key, overrides, {f.name for f in dataclasses.fields(cls)})
    if algo == "ppo" and "env_runners" in overrides:
        raise err(f"{key}.env_runners", "is set by resources.cpu: a PPO trial runs one env runner per CPU")
    return config_of(err, key, cls, overrides)


def _group(err, key, group, envs, width, depth, algo, encoder: dict):
    mapping(err, key, group, GROUP_KEYS)
    # Per-group hyperparameters (e.g. a learning rate for one task); validated like the top level.
    given = group.get("algo_config", {})
    checked = _algo_config(err, algo, given, f"{key}.algo_config")
    overrides = tuple(sorted((k, getattr(checked, k)) for k in given))  # as the config holds them (1 -> 1.0)
    g_envs = one_or_more(err, f"{key}.envs", group["envs"], lambda k, v: _env(err, k, v)) if "envs" in group else envs
    kind = group.get("policy", "mlp")
    if kind == "lut":
        return [Configuration(e, p, overrides) for e in g_envs for p in _lut_policies(err, key, group, algo, encoder)]
    if kind != "mlp":
        raise err(f"{key}.policy", f"must be mlp or lut, got {kind!r}")
    if lut_keys := [k for k in LUT_AXES if k in group]:
        raise err(f"{key}.{lut_keys[0]}", "applies to lut policies: add policy: lut to the group")
    widths = one_or_more(err, f"{key}.width", group.get("width", width), lambda k, v: field_value(err, k, "width", v))
    depths = one_or_more(err, f"{key}.depth", group.get("depth", depth), lambda k, v: field_value(err, k, "depth", v))
    bit_keys = [k for k in ("scope", "bits", *BIT_AXES) if k in group]
    fp32 = group.get("fp32", False)
    if not isinstance(fp32, bool):
        raise err(f"{key}.fp32", f"must be true or false, got {fp32!r}")
    if fp32:
        if bit_keys:
            raise err(f"{key}.fp32", f"an FP32 group has no bit widths, but {bit_keys[0]} is set")
        quants = [None]
    elif "scope" in group or "bits" in group:
        if "scope" not in group or "bits" not in group:
            raise err(f"{key}.{'bits' if 'scope' in group else 'scope'}", "missing: scope and bits go together")
        others = [k for k in BIT_AXES if k in group]
        if others:
            raise err(f"{key}.{others[0]}", "use either scope/bits or bits_* axes in one group, not both")
        scopes = one_or_more(err, f"{key}.scope", group["scope"], lambda k, v: _scope(err, k, v))
        bits = one_or_more(err, f"{key}.bits", group["bits"], lambda k, v: bit_width(err, k, v))
        quants = [QuantBits.from_scope(s, b) for s, b in itertools.product(scopes, bits)]
    else:
        if "bits_core" in group and ("bits_weight" in group or "bits_act" in group):
            raise err(f"{key}.bits_core", "sets bits_weight and bits_act: give one or the other")
        axes = {k: one_or_more(err, f"{key}.{k}", group.get(k, 8), lambda kk, v: bit_width(err, kk, v))
                for k in ("bits_in", "bits_weight", "bits_act", "bits_out", "bits_core") if k != "bits_core" or k in group}
        core = axes.pop("bits_core", None)
        quants = []
        if core is not None:
            axes.pop("bits_weight"), axes.pop("bits_act")
            for c, i, o in itertools.product(core, axes["bits_in"], axes["bits_out"]):
                quants.append(QuantBits(bits_in=i, bits_weight=c, bits_act=c, bits_out=o))
        else:
            for i, w, a, o in itertools.product(*axes.values()):
                quants.append(QuantBits(i, w, a, o))
    return [Configuration(e, PolicyConfig(width=w, depth=d, quant=q, **encoder), overrides)
            for e, q, w, d in itertools.product(g_envs, quants, widths, depths)]


def _lut_policies(err, key, group, algo, encoder: dict) -> list[PolicyConfig]:
    """A `policy: lut` group's policies: the product of its axes, each checked by PolicyConfig."""
    if algo == "ppo":
        raise err(f"{key}.policy", "lut applies to sac, ddpg and td3; ppo trains mlp policies")
    if PolicyConfig(**encoder).recurrent:
        raise err(f"{key}.policy", "a lut policy has no encoder: remove policy.encoder from the space")
    if mlp_keys := [k for k in ("fp32", "scope", "bits", "width", "depth", *BIT_AXES) if k in group and k != "bits_out"]:
        raise err(f"{key}.{mlp_keys[0]}", "applies to mlp policies; a lut group sweeps "
                  f"{', '.join(LUT_AXES)} and bits_out")
    luts = group.get("luts", list(default(PolicyConfig, "luts")))
    luts = luts if isinstance(luts, list) and luts and all(isinstance(v, list) for v in luts) else [luts]
    axes = {k: one_or_more(err, f"{key}.{k}", group.get(k, default(PolicyConfig, k)), lambda kk, v: v)
            for k in ("thermometer_bits", "lut_inputs", "mapping")}
    outs = one_or_more(err, f"{key}.bits_out", group.get("bits_out", default(QuantBits, "bits_out")),
                       lambda k, v: bit_width(err, k, v))
    policies = []
    for layers, b, k, m, o in itertools.product(luts, *axes.values(), outs):
        values = {"kind": "lut", "luts": layers, "thermometer_bits": b, "lut_inputs": k, "mapping": m}
        policies.append(config_of(err, key, PolicyConfig, values | {"quant": QuantBits(bits_out=o)}))
    return policies


def _scope(err, key, v):
    if v not in SCOPES:
        raise err(key, f"unknown scope {v!r}; choose one of {', '.join(SCOPES)}")
    return v


def _search(err, s, steps) -> SearchConfig:
    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    mapping(err, "search", s, fields)
    d = SearchConfig()
    searcher = s.get("searcher", d.searcher)
    if searcher not in SEARCHERS:
        raise err("search.searcher", f"unknown searcher {searcher!r}; choose one of {', '.join(SEARCHERS)}")
    scheduler = s.get("scheduler", d.scheduler)
    if scheduler not in SCHEDULERS:
        raise err("search.scheduler", f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    objectives = tuple(one_or_more(err, "search.objectives", s.get("objectives", list(d.objectives)),
                             lambda k, v: _objective(err, k, v)))
    if objectives[0] != "return" or len(set(objectives)) != len(objectives):
        raise err("search.objectives", "must be [return] or [return, cost]")
    if len(objectives) > 1 and searcher != "optuna":
        raise err("search.objectives", "several objectives need searcher: optuna")
    grace = integer(err, "search.grace_steps", s.get("grace_steps", min(d.grace_steps, steps)), lo=1, hi=steps)
    return SearchConfig(
        searcher=searcher, num_samples=integer(err, "search.num_samples", s.get("num_samples", d.num_samples), lo=1),
        objectives=objectives, scheduler=scheduler, grace_steps=grace,
        reduction_factor=integer(err, "search.reduction_factor", s.get("reduction_factor", d.reduction_factor), lo=2),
        max_concurrent=integer(err, "search.max_concurrent", s.get("max_concurrent", d.max_concurrent), lo=0))


def _objective(err, key, v):
    if v not in ("return", "cost"):
        raise err(key, f"unknown objective {v!r}; choose return or cost")
    return v

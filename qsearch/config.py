"""Typed configurations, validated once at the edge. The one place for defaults (paper, Appendix A):
every field is documented once, in the docstring under it, and the command line and the YAML loaders
read their defaults from here (`default`).

Every bound is checked here too, once, in each config's __post_init__ (`check_fields`): the command
line and the YAML loaders build the configs and only add where a refused value came from, the flag
or the key path (`FieldError`)."""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
from dataclasses import dataclass, field

from qsearch.errors import QsearchError

MIN_BITS, MAX_BITS = 2, 8
SCOPES = ("all", "input", "output", "core")
ALGOS = ("sac", "ddpg", "td3", "ppo")
ENCODERS = ("none", "gru")  # what turns the observation stream into the MLP's input (quant/gru.py)
KINDS = ("mlp", "lut")  # the policy family: a QAT network (quant/actor.py) or a logic circuit (quant/lut_actor.py)
MAPPINGS = ("learnable", "random")  # how a LUT layer's nodes choose their inputs (quant/lut.py)
OBSERVE = ("all", "positions", "velocities")  # what of a task's observation the policy sees (rl/envs.py OBSERVED)
FIXED_BITS = 8  # the paper keeps every non-swept part of the network at 8 bits
# Environment steps between two checkpoints of a trial's learner (rl/checkpoint.py): a run killed
# loses at most this much; see the README's "Preemptible capacity" for the measurement behind it.
CHECKPOINT_EVERY = 20_000
CHECKPOINTS_KEPT = 2  # the latest, and the one before in case the latest is lost with its machine


class FieldError(QsearchError):
    """A config field's value out of bounds. The message is `<field> <reason>`; a front end replaces the
    field by where the value came from: `--learning-starts must be >= 0, got -1` on the command line,
    `file.yaml: algo_config.learning_starts: must be >= 0, got -1` in a YAML file."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field} {reason}")
        self.field, self.reason = field, reason


# An integer field must be positive unless it is named here: (lowest, highest or None). By name, so
# that a name means the same in every config (learning_starts in SAC's and DDPG's).
BITS = (MIN_BITS, MAX_BITS)
INT_BOUNDS = {"seed": (0, None), "learning_starts": (0, None), "burn_in": (0, None), "bits": BITS,
              "bits_in": BITS, "bits_weight": BITS, "bits_act": BITS, "bits_out": BITS,
              # a level travels to the C interface as a signed byte; 6 inputs fill a table's 64-bit word
              "thermometer_bits": (1, 127), "lut_inputs": (1, 6)}


def check_int(name: str, value, lo: int | None = 1, hi: int | None = None) -> int:
    """`value` if it is an integer from `lo` to `hi` (None: unbounded), else a FieldError for `name`."""
    if not isinstance(value, int) or isinstance(value, bool):  # YAML's true is no integer
        raise FieldError(name, f"must be an integer, got {value!r}")
    if lo is not None and value < lo:
        at_least = {0: "must be >= 0", 1: "must be a positive integer"}.get(lo, f"must be at least {lo}")
        raise FieldError(name, f"{at_least}, got {value}")
    if hi is not None and value > hi:
        raise FieldError(name, f"must be at most {hi}, got {value}")
    return value


def check_value(name: str, value, kind: str = "int"):
    """`value` for a config field `name` of type `kind` (int, float, bool or str), or a FieldError: the
    check behind every config's __post_init__ and the YAML loaders' checks of single values (a sweep's
    widths). An int given for a float field becomes a float."""
    if kind == "int":
        return check_int(name, value, *INT_BOUNDS.get(name, (1, None)))
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(name, f"must be a number, got {value!r}")
        return float(value)
    if kind == "bool" and not isinstance(value, bool):
        raise FieldError(name, f"must be true or false, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise FieldError(name, f"must be a string, got {value!r}")
    return value


def scalar_kind(f: dataclasses.Field) -> str | None:
    """int, float, bool or str for a field of one of these types; None for a nested config or a union."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", None)  # a string under `annotations`
    return kind if kind in ("int", "float", "bool", "str") else None


def check_fields(cfg) -> None:
    """Checks every int, float, bool and str field of the dataclass `cfg` (check_value); its __post_init__
    calls it, so every way of building a config (command line, YAML, a bundle, a test) is checked."""
    for f in dataclasses.fields(cfg):
        if (kind := scalar_kind(f)) is not None:
            object.__setattr__(cfg, f.name, check_value(f.name, getattr(cfg, f.name), kind))


@dataclass(frozen=True)
class QuantBits:
    """Bit widths of the four quantized parts of a policy (paper Section 2.2)."""

    bits_in: int = FIXED_BITS
    """bits of the normalized observation (signed)"""
    bits_weight: int = FIXED_BITS
    """bits of every weight matrix (signed, per-tensor scale)"""
    bits_act: int = FIXED_BITS
    """bits of every hidden ReLU output (unsigned)"""
    bits_out: int = FIXED_BITS
    """bits of the pre-tanh output (signed)"""

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def from_scope(cls, scope: str, bits: int) -> "QuantBits":
        """The paper's scopes: one bit width for one part, everything else at 8 bits."""
        check_value("bits", bits)
        if scope == "all":
            return cls(bits, bits, bits, bits)
        if scope == "input":
            return cls(bits_in=bits)
        if scope == "output":
            return cls(bits_out=bits)
        if scope == "core":  # hidden weights and internal activations
            return cls(bits_weight=bits, bits_act=bits)
        raise QsearchError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")


@dataclass(frozen=True)
class PolicyConfig:
    """The actor network: `depth` hidden ReLU layers of `width` units, fed the observation (encoder
    none) or the hidden state of a GRU over the stream of observations (encoder gru)."""

    width: int = 256
    """units per hidden layer (paper: 256 for the FP32 baseline and stage 1)"""
    depth: int = 2
    """hidden layers (paper: 2)"""
    quant: QuantBits | None = field(default_factory=QuantBits)
    """bit widths; None is the FP32 baseline. A GRU encoder's weights take bits_weight, its gates and
    hidden state bits_act: the `core` scope covers the encoder"""
    encoder: str = "none"
    """none: the MLP sees the observation; gru: a recurrent policy whose GRU carries a hidden state
    from step to step of an episode (reset to zero at its start)"""
    encoder_width: int = 64
    """units of the GRU's hidden state (encoder gru)"""
    kind: str = "mlp"
    """the policy family: mlp (a QAT network: width, depth, bits) or lut (a logic circuit of lookup
    tables: thermometer_bits, luts, lut_inputs, mapping, and bits_out for its head)"""
    thermometer_bits: int = 16
    """lut: thresholds per observation feature (at Gaussian quantiles of the normalized value)"""
    luts: tuple[int, ...] = (256, 256)
    """lut: lookup tables per layer, first to last (the last layer's are split evenly among the actions)"""
    lut_inputs: int = 6
    """lut: inputs of each lookup table (a table holds 2^lut_inputs bits)"""
    mapping: str = "learnable"
    """lut: how the first layer's tables choose their inputs: learnable or random (later layers: random)"""

    def __post_init__(self):
        check_fields(self)
        if self.encoder not in ENCODERS:
            raise FieldError("encoder", f"must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.kind not in KINDS:
            raise FieldError("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.mapping not in MAPPINGS:
            raise FieldError("mapping", f"must be one of {', '.join(MAPPINGS)}, got {self.mapping!r}")
        luts = self.luts if isinstance(self.luts, (list, tuple)) else [self.luts]
        object.__setattr__(self, "luts", tuple(check_int("luts", n) for n in luts))
        if not self.luts:
            raise FieldError("luts", "needs at least one layer")
        if self.kind == "lut":
            if self.quant is None:
                raise FieldError("kind", "lut is integer throughout: it has no FP32 form (its head takes bits_out)")
            if self.recurrent:
                raise FieldError("encoder", "gru applies to mlp policies")

    @property
    def fp32(self) -> bool:
        return self.quant is None

    @property
    def recurrent(self) -> bool:
        return self.encoder != "none"

    @property
    def lut(self) -> bool:
        return self.kind == "lut"


@dataclass(frozen=True)
class SACConfig:
    """Soft Actor-Critic: paper Table 4 (CleanRL's defaults)."""

    buffer_size: int = 1_000_000
    """transitions the replay buffer holds (paper: 1e6)"""
    gamma: float = 0.99
    """discount factor (paper: 0.99)"""
    tau: float = 0.005
    """soft target update rate (paper: 0.005)"""
    batch_size: int = 256
    """transitions per update (paper: 256)"""
    learning_starts: int = 5_000
    """environment steps of random actions before learning (paper: 5e3)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor and its log-std branch (paper: 3e-4)"""
    q_lr: float = 1e-3
    """Adam learning rate of the critics and of alpha (paper: 1e-3)"""
    policy_frequency: int = 2
    """critic updates per round of actor updates; the actor then updates that many times (paper: 2)"""
    target_network_frequency: int = 1
    """critic updates between target updates (paper: 1)"""
    alpha: float = 0.2
    """entropy coefficient; the initial value when autotune is on"""
    autotune: bool = True
    """tune alpha online towards an entropy of -action_dim (paper: autotune)"""
    critic_width: int = 256
    """units per hidden layer of each of the two FP32 critics (paper: 256)"""
    sigma_width: int = 64
    """hidden units of the FP32 log-std branch, used only in training (paper Section 2.2)"""
    sequence_length: int = 16
    """recurrent policy: trained steps per sampled window; an update takes batch_size / sequence_length windows"""
    burn_in: int = 8
    """recurrent policy: steps before a window, run only to bring the hidden state up from zero (R2D2)"""
    critic_encoder_width: int = 128
    """recurrent policy: units of the critics' own FP32 GRU (rl/sequences.py)"""

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG: paper Table 5 (CleanRL's defaults). TD3 extends it."""

    buffer_size: int = 1_000_000
    """transitions the replay buffer holds (paper: 1e6)"""
    gamma: float = 0.99
    """discount factor (paper: 0.99)"""
    tau: float = 0.005
    """soft target update rate (paper: 0.005)"""
    batch_size: int = 256
    """transitions per update (paper: 256)"""
    learning_starts: int = 25_000
    """environment steps of random actions before learning (paper: 2.5e4)"""
    learning_rate: float = 3e-4
    """Adam learning rate of actor and critics (paper: 3e-4)"""
    exploration_noise: float = 0.1
    """std of the Gaussian action noise while collecting, a fraction of the action range (paper: 0.1)"""
    policy_frequency: int = 2
    """critic updates per actor update (paper: 2)"""
    critic_width: int = 256
    """units per hidden layer of the FP32 critics (paper: 256)"""
    sequence_length: int = 16
    """recurrent policy: trained steps per sampled window; an update takes batch_size / sequence_length windows"""
    burn_in: int = 8
    """recurrent policy: steps before a window, run only to bring the hidden state up from zero (R2D2)"""
    critic_encoder_width: int = 128
    """recurrent policy: units of the critics' own FP32 GRU (rl/sequences.py)"""

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TD3Config(DDPGConfig):
    """TD3: DDPG's settings (CleanRL's TD3 defaults are the same) plus target policy smoothing; twin
    critics. The paper reports SAC and DDPG only."""

    policy_noise: float = 0.2
    """std of the target policy smoothing noise, a fraction of the action range"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise"""


@dataclass(frozen=True)
class PPOConfig:
    """PPO through RLlib (new API stack): CleanRL's ppo_continuous_action defaults, except the network
    (the QAT actor's shape, a tanh-squashed Gaussian) and where RLlib differs: rewards are not
    normalized (CleanRL scales and clips them), advantages are standardized over the whole batch
    (CleanRL: per minibatch), and the value loss is clipped per squared error (vf_clip)."""

    num_steps: int = 2_048
    """environment steps per policy update, over all env runners (CleanRL: 2048 with one environment)"""
    num_minibatches: int = 32
    """minibatches per epoch: each is num_steps / num_minibatches transitions (CleanRL: 32)"""
    update_epochs: int = 10
    """passes over each batch of rollouts (CleanRL: 10)"""
    learning_rate: float = 3e-4
    """Adam learning rate of actor, log-std and value network (CleanRL: 3e-4)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the budget (CleanRL: on)"""
    gamma: float = 0.99
    """discount factor (CleanRL: 0.99)"""
    gae_lambda: float = 0.95
    """lambda of the generalized advantage estimate (CleanRL: 0.95)"""
    clip_coef: float = 0.2
    """clip of the probability ratio in the surrogate loss (CleanRL: 0.2)"""
    ent_coef: float = 0.0
    """entropy bonus; the entropy is the pre-tanh Gaussian's, an upper bound (CleanRL: 0.0)"""
    vf_coef: float = 0.5
    """weight of the value loss (CleanRL: 0.5)"""
    vf_clip: float = 10.0
    """clip of each squared value error (RLlib's vf_clip_param; CleanRL clips the value change instead)"""
    max_grad_norm: float = 0.5
    """clip of the gradients' global norm (CleanRL: 0.5)"""
    init_log_std: float = 0.0
    """initial value of the FP32 state-independent log-std parameter (CleanRL: 0.0)"""
    obs_clip: float = 10.0
    """clip of the normalized observation while training (CleanRL: 10); the frozen normalization does not clip"""
    critic_width: int = 64
    """units per hidden layer of the FP32 value network, two tanh layers (CleanRL: 64)"""
    env_runners: int = 1
    """parallel RLlib environment runners, one CPU each (a search sets it from resources.cpu)"""

    def __post_init__(self):
        check_fields(self)
        if self.num_steps < self.num_minibatches:
            raise FieldError("num_steps", f"must be at least num_minibatches ({self.num_minibatches}), got {self.num_steps}")


CALIB_STATISTICS = ("max", "percentile")


@dataclass(frozen=True)
class CalibrationConfig:
    """Where post-training quantization's activation ranges come from (`qsearch ptq --calib-*`;
    why these defaults: qsearch/deploy/ptq.py)."""

    episodes: int = 10
    """rollouts of the FP32 policy, seeded with its training seed (apart from the evaluation seeds)"""
    action_noise: float = 0.1
    """std of Gaussian noise added to the rollouts' actions in [-1, 1] (TD3's exploration noise), so that
    the data covers the perturbed states a deployed policy meets and must recover from; 0: deterministic"""
    statistic: str = "max"
    """max: each quantizer's range is the largest |value| over the whole set; percentile: brevitas'
    99.999th percentile (QAT's warm-up statistic), over the whole set as one batch"""

    def __post_init__(self):
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise QsearchError(f"--calib-episodes must be at least 1, got {self.episodes}")
        if not self.action_noise >= 0:
            raise QsearchError(f"--calib-noise must be >= 0, got {self.action_noise}")
        if self.statistic not in CALIB_STATISTICS:
            raise QsearchError(f"--calib-stat must be one of {', '.join(CALIB_STATISTICS)}, got {self.statistic!r}")


ALGO_CONFIGS = {"sac": SACConfig, "ddpg": DDPGConfig, "td3": TD3Config, "ppo": PPOConfig}


def default(cls, name: str):
    """The default of field `name` of dataclass `cls` (for the CLI and the YAML loaders); MISSING if none."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def field_doc(cls, name: str) -> str:
    """The docstring under field `name` of dataclass `cls` (the string literal that follows its annotation,
    in `cls` or a dataclass it extends): the command line's help for it."""
    try:
        return _field_docs(cls)[name]
    except KeyError:
        raise KeyError(f"{cls.__name__}.{name} has no docstring") from None


@functools.cache
def _field_docs(cls) -> dict[str, str]:
    docs = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for stmt, after in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[stmt.target.id] = after.value.value
    return docs


@dataclass(frozen=True)
class TrainConfig:
    """One training run: environment, algorithm, policy, budget and evaluation schedule."""

    env_id: str
    """gymnasium id with a continuous action space, e.g. Hopper-v5"""
    algo: str = "sac"
    """learner: sac, ddpg, td3 or ppo (paper: sac and ddpg)"""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """the actor network and its bit widths"""
    total_steps: int = 1_000_000
    """environment steps of training (paper: 1e6)"""
    seed: int = 0
    """seeds torch, numpy and the environment"""
    eval_every: int = 10_000
    """environment steps between evaluations during training"""
    eval_episodes: int = 10
    """episodes per evaluation, during training and after it (paper: 10)"""
    algo_config: SACConfig | DDPGConfig | TD3Config | PPOConfig | None = None
    """the algorithm's hyperparameters; None: its defaults"""
    observe: str = "all"
    """what the policy observes: all, positions or velocities (a partially observed task; rl/envs.py
    lists the indices kept per task)"""

    def __post_init__(self):
        check_fields(self)
        if self.algo not in ALGOS:
            raise FieldError("algo", f"unknown algorithm {self.algo!r}; choose one of {', '.join(ALGOS)}")
        if self.observe not in OBSERVE:
            raise FieldError("observe", f"must be one of {', '.join(OBSERVE)}, got {self.observe!r}")
        if self.observe != "all" and self.algo == "ppo":
            # RLlib makes its environments from the id alone; a masked task would need a registered id.
            raise FieldError("observe", "applies to sac, ddpg and td3; ppo observes all of a task")
        if self.policy.lut and self.algo == "ppo":
            raise FieldError("kind", "lut applies to sac, ddpg and td3; ppo trains mlp policies")
        if self.policy.recurrent and self.algo == "ppo":
            # RLlib's recurrent path wants its own model interface (state in, state out, max_seq_len
            # padding in the learner); qsearch's PPO module is stateless.
            raise FieldError("encoder", "gru applies to sac, ddpg and td3; ppo trains stateless policies")
        if self.algo_config is None:
            object.__setattr__(self, "algo_config", ALGO_CONFIGS[self.algo]())
        elif type(self.algo_config) is not ALGO_CONFIGS[self.algo]:
            raise QsearchError(f"{type(self.algo_config).__name__} does not configure {self.algo}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        pol = dict(d.pop("policy"))
        quant = pol.pop("quant")
        policy = PolicyConfig(quant=None if quant is None else QuantBits(**quant), **pol)
        algo_cfg = d.pop("algo_config", None)
        algo = d.get("algo", "sac")
        if algo not in ALGOS:
            raise QsearchError(f"unknown algorithm {algo!r}")
        algo_config = None if algo_cfg is None else ALGO_CONFIGS[algo](**algo_cfg)
        return cls(policy=policy, algo_config=algo_config, **d)

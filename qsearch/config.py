"""Typed configurations, validated once at the edge. The one place for defaults (paper, Appendix A):
every field is documented once, in the docstring under it, and the command line and the YAML loaders
read their defaults from here (`default`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from qsearch.errors import QsearchError

MIN_BITS, MAX_BITS = 2, 8
SCOPES = ("all", "input", "output", "core")
ALGOS = ("sac", "ddpg", "td3", "ppo")
FIXED_BITS = 8  # the paper keeps every non-swept part of the network at 8 bits


def _check_bits(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_BITS <= value <= MAX_BITS:
        raise QsearchError(f"{name} must be an integer from {MIN_BITS} to {MAX_BITS}, got {value!r}")


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
        for f in dataclasses.fields(self):
            _check_bits(f.name.replace("_", "-"), getattr(self, f.name))

    @classmethod
    def from_scope(cls, scope: str, bits: int) -> "QuantBits":
        """The paper's scopes: one bit width for one part, everything else at 8 bits."""
        _check_bits("bits", bits)
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
    """The actor network: `depth` hidden ReLU layers of `width` units."""

    width: int = 256
    """units per hidden layer (paper: 256 for the FP32 baseline and stage 1)"""
    depth: int = 2
    """hidden layers (paper: 2)"""
    quant: QuantBits | None = field(default_factory=QuantBits)
    """bit widths; None is the FP32 baseline"""

    def __post_init__(self):
        if not isinstance(self.width, int) or self.width < 1:
            raise QsearchError(f"width must be a positive integer, got {self.width!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise QsearchError(f"depth must be a positive integer, got {self.depth!r}")

    @property
    def fp32(self) -> bool:
        return self.quant is None


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
        if not isinstance(self.env_runners, int) or self.env_runners < 1:
            raise QsearchError(f"env-runners must be a positive integer, got {self.env_runners!r}")
        if self.num_steps < self.num_minibatches:
            raise QsearchError(f"num_steps ({self.num_steps}) must be at least num_minibatches ({self.num_minibatches})")


ALGO_CONFIGS = {"sac": SACConfig, "ddpg": DDPGConfig, "td3": TD3Config, "ppo": PPOConfig}


def default(cls, name: str):
    """The default of field `name` of dataclass `cls` (for the CLI and the YAML loaders)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


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

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise QsearchError(f"unknown algorithm {self.algo!r}; choose one of {', '.join(ALGOS)}")
        if not isinstance(self.total_steps, int) or self.total_steps < 1:
            raise QsearchError(f"steps must be a positive integer, got {self.total_steps!r}")
        if self.eval_every < 1 or self.eval_episodes < 1:
            raise QsearchError("eval-every and eval-episodes must be positive")
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

"""Typed configurations, validated once at the edge. One place for defaults (paper, Appendix A)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from qsearch.errors import QsearchError

MIN_BITS, MAX_BITS = 2, 8
SCOPES = ("all", "input", "output", "core")
ALGOS = ("sac", "ddpg", "td3")
FIXED_BITS = 8  # the paper keeps every non-swept part of the network at 8 bits


def _check_bits(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_BITS <= value <= MAX_BITS:
        raise QsearchError(f"{name} must be an integer from {MIN_BITS} to {MAX_BITS}, got {value!r}")


@dataclass(frozen=True)
class QuantBits:
    """Bit widths of the four quantized parts of a policy (paper Section 2.2).

    bits_in: the normalized observation (signed); bits_weight: every weight matrix (signed);
    bits_act: every hidden ReLU output (unsigned); bits_out: the pre-tanh output (signed).
    """

    bits_in: int = FIXED_BITS
    bits_weight: int = FIXED_BITS
    bits_act: int = FIXED_BITS
    bits_out: int = FIXED_BITS

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
    """The actor network: `depth` hidden ReLU layers of `width` units; quant=None is the FP32 baseline."""

    width: int = 256
    depth: int = 2
    quant: QuantBits | None = field(default_factory=QuantBits)

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
    """Paper Table 4 (CleanRL defaults)."""

    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    learning_starts: int = 5_000
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    policy_frequency: int = 2
    target_network_frequency: int = 1
    alpha: float = 0.2  # initial value; tuned online when autotune is on
    autotune: bool = True
    critic_width: int = 256
    sigma_width: int = 64  # separate FP32 log-std branch, used only in training


@dataclass(frozen=True)
class DDPGConfig:
    """Paper Table 5 (CleanRL defaults)."""

    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    learning_starts: int = 25_000
    learning_rate: float = 3e-4
    exploration_noise: float = 0.1
    policy_frequency: int = 2
    critic_width: int = 256


@dataclass(frozen=True)
class TD3Config:
    """CleanRL's TD3 defaults."""

    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    learning_starts: int = 25_000
    learning_rate: float = 3e-4
    exploration_noise: float = 0.1
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_frequency: int = 2
    critic_width: int = 256


ALGO_CONFIGS = {"sac": SACConfig, "ddpg": DDPGConfig, "td3": TD3Config}


@dataclass(frozen=True)
class TrainConfig:
    """One training run: environment, algorithm, policy, budget and evaluation schedule."""

    env_id: str
    algo: str = "sac"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    total_steps: int = 1_000_000
    seed: int = 0
    eval_every: int = 10_000  # environment steps between evaluations during training
    eval_episodes: int = 10
    algo_config: SACConfig | DDPGConfig | TD3Config | None = None  # None: the algorithm's defaults

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise QsearchError(f"unknown algorithm {self.algo!r}; choose one of {', '.join(ALGOS)}")
        if not isinstance(self.total_steps, int) or self.total_steps < 1:
            raise QsearchError(f"steps must be a positive integer, got {self.total_steps!r}")
        if self.eval_every < 1 or self.eval_episodes < 1:
            raise QsearchError("eval-every and eval-episodes must be positive")
        if self.algo_config is None:
            object.__setattr__(self, "algo_config", ALGO_CONFIGS[self.algo]())
        elif not isinstance(self.algo_config, ALGO_CONFIGS[self.algo]):
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
